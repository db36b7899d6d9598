"""Fréchet distance between Gaussians fitted to two feature sets, in float64.

FID = ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr √(Σ1 Σ2).

Tr √(Σ1 Σ2) is computed from symmetric eigendecompositions and one SVD (see
`trace_sqrt_product`). Unlike `scipy.linalg.sqrtm(Σ1 Σ2)` this cannot produce complex output or
NaN from the non-symmetric product, does not depend on sqrtm's `disp` argument (removed in
SciPy 1.18), and is several times faster at 2048 dimensions.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import SampleSizeError


class SmallSampleWarning(UserWarning):
    """Fewer samples than feature dimensions: the covariance is rank-deficient."""


# FID's small-sample bias, stated as Chong & Forsyth (CVPR 2020, "Effectively Unbiased FID and Inception
# Score and where to find them") measured it: E[FID_N] ≈ FID∞ + c/N at every N, with c depending on the
# generator, so two models' FIDs at the same N can rank them differently from their FID∞.
BIAS_NOTE = ("FID is biased upward at every sample count: the bias shrinks like 1/N and its size depends on the "
             "generator (Chong & Forsyth 2020), so equal N does not make two models' FIDs comparable and can "
             "reverse their ranking. Compare FID∞ (fid_inf, extrapolated to N → ∞) or a paired bootstrap of "
             "the difference, and report N with every FID.")


def check_sample_size(n: int, dims: int, what: str = "a feature set") -> None:
    if n < 2:
        raise SampleSizeError(f"FID needs at least 2 images per set; {what} has {n}. Add images.")
    if n < dims:
        warnings.warn(
            f"{what} has {n} images, fewer than the {dims} feature dimensions: its covariance is "
            "rank-deficient, which adds to FID's upward bias. That bias is O(1/N) at every N and depends on "
            "the generator (Chong & Forsyth 2020), so equal N does not make FIDs comparable: compare FID∞ or "
            "a paired bootstrap of the difference.", SmallSampleWarning, stacklevel=2)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (N−1)-normalised covariance in float64, as clean-fid/pytorch-fid compute them."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise SampleSizeError(f"a covariance needs at least 2 samples, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinity; the feature extractor or input images are broken")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_factor(matrix: np.ndarray) -> np.ndarray:
    """A with A A^T = matrix, keeping only eigen-directions above numerical noise."""
    vals, vecs = np.linalg.eigh(matrix)
    # numpy's matrix_rank tolerance: eigenvalues below it are rounding noise of a singular matrix
    tol = max(vals.max(initial=0.0), 0.0) * matrix.shape[0] * np.finfo(np.float64).eps
    keep = vals > tol
    return vecs[:, keep] * np.sqrt(vals[keep])


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr √(Σ1 Σ2) for symmetric PSD Σ1, Σ2.

    With Σi = Ai Aiᵀ, Σ1 Σ2 has the same non-zero eigenvalues as BᵀB for B = A1ᵀ A2, so the trace
    of its square root is the sum of B's singular values (its nuclear norm). Taking singular values
    directly, rather than square roots of tiny eigenvalues, keeps rank-deficient covariances
    (fewer samples than dimensions) exact: a set against itself gives 0, not sqrt(rounding noise).
    """
    if not sigma1.any() or not sigma2.any():
        return 0.0
    b = _psd_factor(sigma1).T @ _psd_factor(sigma2)
    if b.size == 0:
        return 0.0
    return float(np.linalg.svd(b, compute_uv=False).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs "
                         f"{sigma2.shape}; were they computed with the same feature extractor?")
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity; recompute the statistics")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    if not np.isfinite(value):  # cannot happen with finite PSD inputs; never return NaN silently
        raise FloatingPointError("the Fréchet distance came out non-finite; the statistics are corrupt")
    return float(value)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    check_sample_size(len(features1), np.shape(features1)[1], "the first set")
    check_sample_size(len(features2), np.shape(features2)[1], "the second set")
    mu1, s1 = feature_stats(features1)
    mu2, s2 = feature_stats(features2)
    return frechet_distance(mu1, s1, mu2, s2)
