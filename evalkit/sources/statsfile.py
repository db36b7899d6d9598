"""Saved statistics as a source: `evalkit stats SRC -o FILE.npz` (mean, covariance, optionally the
per-image features and a JSON provenance record), or clean-fid's `mu`/`sigma` npz."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SourceError


@dataclass
class StatsSource:
    """Saved statistics (`evalkit stats SRC -o file.npz`, or clean-fid's mu/sigma npz)."""
    path: Path
    mu: np.ndarray
    sigma: np.ndarray
    num_images: int | None
    meta: dict
    features: np.ndarray | None = None

    def describe(self) -> str:
        n = "?" if self.num_images is None else self.num_images
        return f"statistics {self.path} ({n} images)"


def load_stats_file(path: Path) -> StatsSource:
    import zipfile

    if not zipfile.is_zipfile(path):  # np.load would suggest unpickling, which we never do
        raise SourceError(f"{path} is not an .npz statistics file (an .npz is a zip archive of arrays; this file is "
                          "not). Write one with `evalkit stats SRC -o FILE.npz`, or pass the images instead.")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if not {"mu", "sigma"} <= keys:
                raise SourceError(f"{path} is an .npz file without 'mu' and 'sigma' arrays; "
                                  "write one with `evalkit stats SRC -o FILE.npz`.")
            mu = data["mu"].astype(np.float64)
            sigma = data["sigma"].astype(np.float64)
            meta = json.loads(str(data["meta"])) if "meta" in keys else {}
            features = data["features"] if "features" in keys else None
    except SourceError:
        raise
    except Exception as err:
        raise SourceError(f"{path} is not a readable statistics file ({err}).") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise SourceError(f"{path}: mu has shape {mu.shape} and sigma {sigma.shape}; expected (d,) and (d, d).")
    check_covariance(path, mu, sigma)
    num = meta.get("num_images")
    if num is None and features is not None:
        num = int(features.shape[0])
    return StatsSource(path, mu, sigma, num, meta, features)


# A covariance computed in float64 from float32 features is symmetric to rounding and has no
# eigenvalue below about -d·eps·λ_max; anything beyond these tolerances was not produced by a
# covariance estimate (edited, corrupted, or another statistic altogether).
SYMMETRY_TOL = 1e-6
EIGEN_TOL = 1e-8


def check_covariance(path: Path, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Refuse statistics that cannot be a mean and a covariance, naming the file."""
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise SourceError(f"{path} holds NaN or infinite values in its mean or covariance; it is damaged. "
                          "Recompute it with `evalkit stats SRC -o FILE.npz`.")
    scale = max(float(np.abs(sigma).max()), np.finfo(np.float64).tiny)
    asymmetry = float(np.abs(sigma - sigma.T).max()) / scale
    if asymmetry > SYMMETRY_TOL:
        raise SourceError(f"{path}: sigma is not symmetric (largest |sigma - sigma.T| is {asymmetry:.3g} of its "
                          "largest entry), so it is not a covariance matrix. Recompute the file with `evalkit stats`.")
    lowest = float(np.linalg.eigvalsh((sigma + sigma.T) / 2)[0])
    if lowest < -EIGEN_TOL * scale * sigma.shape[0]:
        raise SourceError(f"{path}: sigma has a negative eigenvalue ({lowest:.3g}), so it is not a covariance matrix "
                          "(covariances are positive semi-definite). Recompute the file with `evalkit stats`.")
