"""Where the harness keeps its weights, feature cache and decoded data sets.

Everything lives under one folder, `~/.cache/gan-harness` unless GAN_HARNESS_HOME names another;
GAN_HARNESS_DATASETS moves only the decoded training sets (they can be large) to another disk.
"""
from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "GAN_HARNESS_HOME"
DATASETS_ENV = "GAN_HARNESS_DATASETS"


def harness_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "gan-harness")


def weights_dir() -> Path:
    return harness_home() / "weights"


def features_dir() -> Path:
    return harness_home() / "features"


def datasets_dir() -> Path:
    return Path(os.environ.get(DATASETS_ENV) or harness_home() / "datasets")
