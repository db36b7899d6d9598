"""CMMD (Jayasumana et al. 2024): MMD² between CLIP image embeddings with a Gaussian RBF kernel,
σ = 10, times 1000 — the formula of google-research/google-research `cmmd/distance.py` `mmd`:

    k(a, b) = exp(−‖a − b‖² / (2σ²)),   ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b
    CMMD = 1000 · (mean k(x_i, x_j) + mean k(y_i, y_j) − 2 mean k(x_i, y_j)),

every mean over all pairs, i = j included: the biased, minimum-variance estimator (Gretton et al.
2012, Eq. 5), which is what the reference computes (not KID's unbiased form), so it is ≥ 0 and
depends a little on the sample sizes. The reference takes equal-sized sets; different sizes are
allowed here, each mean over its own pairs.

It is only meaningful on the L2-normalised CLIP ViT-L/14@336px embeddings the σ was chosen for
(`--extractor clip`). The reference computes in float32 on full n x n matrices; this computes in
float64, in row blocks, so memory stays at `block` rows times the other set's size.

Devices: numpy input with device=None computes with numpy; a torch tensor computes on its device,
and an explicit `device` runs torch there.
"""
from __future__ import annotations

import numpy as np

from .arrays import feature_pair, tensor_device

__all__ = ["SIGMA", "SCALE", "cmmd"]

SIGMA = 10.0    # `_SIGMA` in cmmd/distance.py
SCALE = 1000.0  # `_SCALE`


def _mean_kernel(a, b, gamma: float, block: int, exp) -> float:
    sq_a = (a * a).sum(1)
    sq_b = (b * b).sum(1)
    total = 0.0
    for start in range(0, a.shape[0], block):
        rows = slice(start, start + block)
        d2 = sq_a[rows, None] + sq_b[None, :] - 2 * (a[rows] @ b.T)
        total += float(exp(-gamma * d2).sum())
    return total / (a.shape[0] * b.shape[0])


def cmmd(features1, features2, sigma: float = SIGMA, scale: float = SCALE, *, block: int = 2048,
         device=None) -> float:
    """CMMD between two embedding sets (N1, D) and (N2, D), as `cmmd/distance.py` `mmd(x, y)`."""
    x, y = feature_pair(features1, features2, "CMMD")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    if device is None:
        device = tensor_device(features1, features2)
    if device is None:
        x, y, exp = x.astype(np.float64), y.astype(np.float64), np.exp
    else:
        import torch

        x = torch.as_tensor(x, dtype=torch.float64, device=device)
        y = torch.as_tensor(y, dtype=torch.float64, device=device)
        exp = torch.exp
    gamma = 1.0 / (2.0 * sigma ** 2)
    k_xx = _mean_kernel(x, x, gamma, block, exp)
    k_yy = _mean_kernel(y, y, gamma, block, exp)
    k_xy = _mean_kernel(x, y, gamma, block, exp)
    return float(scale * (k_xx + k_yy - 2 * k_xy))
