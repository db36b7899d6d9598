"""clean-fid's "clean" resize: PIL bicubic on float32, one channel at a time, to 299x299, no
re-quantisation — on the CPU with PIL itself, and on any torch device with the same filter.

PIL resamples separably: a horizontal pass then a vertical pass, each output pixel a weighted
sum (accumulated in double, stored as float32) over an input window whose width grows with the
down-scaling factor (antialiasing). `pil_bicubic_matrix` reproduces PIL's coefficients exactly,
so `resize_torch` is two small matrix products per image — which keeps a GPU fed instead of
waiting for PIL on the CPU.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import Image

TARGET = 299


def resize_pil(image: np.ndarray, size: int = TARGET) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, size, size) in [0, 255], exactly as clean-fid does it."""
    channels = []
    for c in range(3):
        plane = Image.fromarray(image[:, :, c].astype(np.float32), mode="F")
        plane = plane.resize((size, size), resample=Image.BICUBIC)
        channels.append(np.asarray(plane).clip(0, 255))
    return np.stack(channels).astype(np.float32)


def _bicubic(x: float) -> float:
    a = -0.5  # PIL's bicubic constant
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@lru_cache(maxsize=64)
def pil_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64 matrix M with out = M @ in, PIL's coefficients (Resample.c)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)   # int() truncates toward zero, like C
        xmax = min(int(center + support + 0.5), in_size)
        weights = [_bicubic((x - center + 0.5) / filterscale) for x in range(xmin, xmax)]
        total = sum(weights)  # left to right, as PIL sums
        if total != 0.0:
            weights = [w / total for w in weights]
        matrix[xx, xmin:xmax] = weights
    return matrix


def resize_torch(images: torch.Tensor, size: int = TARGET) -> torch.Tensor:
    """uint8 or float (N, 3, H, W) -> float32 (N, 3, size, size) in [0, 255], matching `resize_pil`.

    Each pass accumulates in float64 and rounds to float32, as PIL stores its intermediate image.
    """
    n, c, h, w = images.shape
    x = images.to(torch.float64)
    if (h, w) == (size, size):
        return x.to(torch.float32).clamp_(0, 255)
    dev = images.device
    mw = torch.from_numpy(pil_bicubic_matrix(w, size)).to(dev)
    mh = torch.from_numpy(pil_bicubic_matrix(h, size)).to(dev)
    x = torch.matmul(x, mw.T).to(torch.float32).to(torch.float64)   # horizontal pass
    x = torch.matmul(mh, x).to(torch.float32)                         # vertical pass
    return x.clamp_(0, 255)
