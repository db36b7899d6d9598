"""The small shared base under `gan`, `study_app` and `evalkit`: where the harness keeps its files
(`home`), the one atomic writer (`atomic`), the error every command turns into a message
(`errors`), the command-line convention shared by the three CLIs (`cli`) and the one rule that
turns `--device` into a torch device (`device`).

It imports nothing of the packages above it, and nothing heavy at import time (no torch, numpy or
scipy), so that `--help` stays fast.
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("gan-eval-harness")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0+source"
