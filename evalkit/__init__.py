"""Evaluation of generative image models: FID matching clean-fid, KID, precision/recall,
density/coverage, copy checks, truncation sweeps and checkpoint reports.

The package is layered, each layer importing only those below it:

    errors                     what a person can act on
    metrics/                   pure functions over feature arrays (FID, KID, P/R/D/C, bootstrap, copying)
    sources/                   image folders and zips, statistics files, gan checkpoints and run dirs
    extract/                   feature-extractor registry, networks, weights, cache, feature sets
    reports/                   evaluate, FID over a run, truncation sweep, copy check, report, plots, tables
    api, cli                   the Python API re-exported here, and `evalkit COMMAND`

    evalkit.fid(a, b)          FID between two sources (folder, zip, .npz, checkpoint, run dir)
    evalkit.metrics(real, fake)   FID, KID, precision/recall, density/coverage from one feature pass
                               (the metrics package, made callable; `evalkit.evaluate` is the same)
    evalkit.write_stats(src, "x.npz", include_features=True)
    evalkit.feature_set(src, label)   features and statistics of one source
"""
import types as _types

from harness_base import __version__

from . import metrics as _metrics_package   # metric functions only: imports nothing heavy

_API = {"fid": "api", "evaluate": "reports.evaluate", "write_stats": "api", "source_stats": "api",
        "feature_set": "extract.featureset", "FeatureSet": "extract.featureset",
        "GenerationOptions": "sources", "compute_metrics": "reports.evaluate"}

__all__ = sorted([*_API, "metrics"])


class _CallableMetricsPackage(_types.ModuleType):
    """`evalkit.metrics` is the package of metric functions and, called, the all-metrics API
    (`evalkit.metrics(real, fake)` is `evalkit.api.metrics`). Importing the package binds the
    attribute, so a function of that name could not be reached; a module whose class defines
    `__call__` is the data model's way to make a module callable."""

    def __call__(self, real, fake, *args, **kwargs):
        from .api import metrics

        return metrics(real, fake, *args, **kwargs)


_metrics_package.__class__ = _CallableMetricsPackage


def __getattr__(name):  # PEP 562: `import evalkit` stays light; torch loads on first use
    if name in _API:
        import importlib

        module = importlib.import_module(f"{__name__}.{_API[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
