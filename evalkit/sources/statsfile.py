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
    num = meta.get("num_images")
    if num is None and features is not None:
        num = int(features.shape[0])
    return StatsSource(path, mu, sigma, num, meta, features)
