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
                               (the metrics package, callable; `evalkit.evaluate` is the same function)
    evalkit.write_stats(src, "x.npz", include_features=True)
    evalkit.feature_set(src, label)   features and statistics of one source
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("gan-eval-harness")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

_API = {"fid": "api", "evaluate": "reports.evaluate", "write_stats": "api", "source_stats": "api",
        "feature_set": "extract.featureset", "FeatureSet": "extract.featureset",
        "GenerationOptions": "sources", "compute_metrics": "reports.evaluate"}

__all__ = sorted([*_API, "metrics"])


def __getattr__(name):  # PEP 562: `import evalkit` stays light; torch loads on first use
    if name == "metrics":  # the metrics package, callable as the all-metrics API (see its docstring)
        import importlib

        return importlib.import_module(f"{__name__}.metrics")
    if name in _API:
        import importlib

        module = importlib.import_module(f"{__name__}.{_API[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
