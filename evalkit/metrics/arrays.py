"""Input checks shared by the metrics: numpy or torch feature matrices, validated the same way."""
from __future__ import annotations

import sys

import numpy as np

from ..errors import SampleSizeError


def is_tensor(x) -> bool:
    """True for a torch tensor, without importing torch (numpy-only callers never pay for it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def tensor_device(*arrays):
    """The device of the first torch tensor among `arrays`, or None."""
    return next((a.device for a in arrays if is_tensor(a)), None)


def feature_matrix(x, name: str, metric: str) -> np.ndarray:
    """`x` as a finite numeric numpy array (N, D) with N >= 2, or a ValueError/SampleSizeError saying why not."""
    if is_tensor(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a real-valued numeric array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise SampleSizeError(f"{metric} needs at least 2 samples per set; {name} has {x.shape[0]}. Add samples.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or infinity; the feature extractor or input images are broken")
    return x


def feature_pair(features1, features2, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Two checked feature matrices (see `feature_matrix`) of the same dimension."""
    x = feature_matrix(features1, "features1", metric)
    y = feature_matrix(features2, "features2", metric)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"features1 have {x.shape[1]} dimensions and features2 {y.shape[1]}; "
                         "extract both with the same feature extractor")
    return x, y
