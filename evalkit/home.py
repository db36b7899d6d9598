"""Where the harness keeps its weights and feature cache (override with GAN_HARNESS_HOME)."""
import os
from pathlib import Path

HOME_ENV = "GAN_HARNESS_HOME"


def harness_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "gan-harness")


def weights_dir() -> Path:
    return harness_home() / "weights"


def features_dir() -> Path:
    return harness_home() / "features"
