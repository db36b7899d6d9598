"""Metrics as small pure functions over feature arrays (no I/O, no models): `fid`, `kid`, `prdc`,
`bootstrap`, `copying`, on the array back ends of `backend`.

Called, the package is the all-metrics API: `evalkit.metrics(real, fake, ...)` is
`evalkit.api.metrics` (FID, KID, P/R, D/C of two sources from one feature pass). A package and a
function cannot share the name `evalkit.metrics` otherwise, because importing the package binds
that attribute; a module whose class defines `__call__` is Python's documented way to make a
module callable (the data model's "Customizing module attribute access").
"""
import sys
import types


class _CallableMetrics(types.ModuleType):
    def __call__(self, real, fake, *args, **kwargs):
        from ..api import metrics

        return metrics(real, fake, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableMetrics
