"""Feature cache: one .npz per (source content, extractor and its weights hash, resize mode, ...).

Each entry holds the feature matrix of the readable images, their names, the unreadable files
with reasons, and a JSON description. Entries are written atomically, so a killed run leaves no
partial entry; an entry that fails to load is treated as missing and removed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness_base.atomic import atomic_path
from harness_base.home import HOME_ENV, features_dir


class CacheWarning(UserWarning):
    """The feature cache could not be used; results are unaffected."""

CACHE_FORMAT = 1


def cache_key(descriptor: dict) -> str:
    canonical = json.dumps({"format": CACHE_FORMAT, **descriptor}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass
class CachedFeatures:
    features: np.ndarray          # float32 (N, D), readable images only, in source order
    names: list[str]              # the N image names
    bad: list[tuple[str, str]]    # (name, reason) for files that could not be decoded
    meta: dict


class FeatureCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else features_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str) -> CachedFeatures | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                return CachedFeatures(
                    features=data["features"],
                    names=[str(n) for n in data["names"]],
                    bad=[(str(n), str(r)) for n, r in data["bad"].reshape(-1, 2)],
                    meta=meta,
                )
        except Exception:
            try:
                path.unlink(missing_ok=True)  # unreadable entry: recompute rather than fail
            except OSError:
                pass  # a read-only cache keeps it; it is recomputed every time
            return None

    def save(self, key: str, entry: CachedFeatures) -> Path | None:
        """Store an entry; a cache that cannot be written (read-only, full) costs only the reuse:
        one warning, no error, and nothing half-written is left (the write is atomic)."""
        meta = {**entry.meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        bad = np.array(entry.bad, dtype=str).reshape(-1, 2)
        target = self.path(key)
        try:
            with atomic_path(target, suffix=".npz") as tmp:
                np.savez(tmp, features=entry.features.astype(np.float32), names=np.array(entry.names, dtype=str),
                         bad=bad, meta=np.array(json.dumps(meta)))
        except OSError as err:
            warnings.warn(f"the feature cache in {self.root} cannot be written ({err.strerror or err}); continuing "
                          f"without it, so these features will be computed again next time. Set {HOME_ENV} to a "
                          "writable folder with space to keep them.", CacheWarning, stacklevel=2)
            return None
        return target

    def entries(self) -> list[dict]:
        rows = []
        for path in sorted(self.root.glob("*.npz")):
            try:
                with np.load(path, allow_pickle=False) as data:
                    meta = json.loads(str(data["meta"]))
                    n = int(data["features"].shape[0])
            except Exception:
                meta, n = {"source": "(unreadable entry)"}, 0
            rows.append({"key": path.stem, "path": str(path), "bytes": path.stat().st_size,
                         "num_images": n, **meta})
        return rows

    def clear(self) -> int:
        """Remove every entry (and the fingerprint memo); return how many feature entries went."""
        n = len(list(self.root.glob("*.npz")))
        if self.root.exists():
            shutil.rmtree(self.root)
        return n
