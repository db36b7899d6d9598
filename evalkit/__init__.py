"""Evaluation of generative image models: FID matching clean-fid, KID, precision/recall,
density/coverage, copying checks, truncation sweeps and checkpoint reports."""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("gan-eval-harness")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
