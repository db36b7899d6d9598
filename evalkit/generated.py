"""Generated images as a source: a `gan` checkpoint sampled through its public API, streamed
straight into the feature extractor (no image files are written).

Seeds are `seed, seed+1, ..., seed+num_gen-1` (z from `np.random.RandomState(s)`, the
StyleGAN2-ADA convention), so a source is fully described by (checkpoint content, num_gen, ψ,
seed, noise mode, truncation cutoff) — which is also its feature-cache key.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .errors import SourceError
from .sources import memoized_content_hash, stat_listing
from .weights import sha256_file


def is_checkpoint(path: Path) -> bool:
    return path.is_file() and path.name.endswith(".safetensors")


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and (path / "checkpoints").is_dir()


@dataclass
class GeneratorSource:
    checkpoint: Path
    num_gen: int
    psi: float = 1.0
    seed: int = 0
    noise_mode: str = "const"
    truncation_cutoff: int | None = None
    kind: str = "checkpoint"

    def __post_init__(self):
        self.checkpoint = Path(self.checkpoint).resolve()
        if self.num_gen < 1:
            raise SourceError(f"--num-gen must be at least 1, got {self.num_gen}")

    @property
    def path(self) -> Path:
        return self.checkpoint

    @property
    def seeds(self) -> range:
        return range(self.seed, self.seed + self.num_gen)

    def __len__(self) -> int:
        return self.num_gen

    def describe(self) -> str:
        return f"checkpoint {self.checkpoint.name} ({self.num_gen} samples, psi={self.psi:g}, seeds from {self.seed})"

    def params(self) -> dict:
        return {"num_gen": self.num_gen, "psi": float(self.psi), "seed": self.seed, "noise_mode": self.noise_mode,
                "truncation_cutoff": self.truncation_cutoff}

    def fingerprint(self, progress: bool = False) -> str:
        weights = memoized_content_hash(stat_listing([self.checkpoint], [self.checkpoint.name]),
                                        lambda: sha256_file(self.checkpoint))
        return hashlib.sha256(f"checkpoint-v1\0{weights}\0{sorted(self.params().items())}".encode()).hexdigest()

    def load(self, device=None):
        from gan.api import load_generator

        from .features import default_device

        device = device if device is not None else default_device()
        try:
            return load_generator(self.checkpoint, device=device)
        except (ValueError, FileNotFoundError) as err:
            raise SourceError(str(err)) from None

    def batches(self, device, batch_size: int = 32, progress: bool = False, seeds=None):
        """uint8 (B, H, W, 3) batches for this source's seeds (or a subset), generated on `device`."""
        generator = self.load(device)
        return generator.images(seeds=list(self.seeds if seeds is None else seeds), psi=self.psi, noise_mode=self.noise_mode, batch_size=batch_size,
                                truncation_cutoff=self.truncation_cutoff, progress=progress)


def run_snapshots(run_dir: Path) -> list:
    from gan.api import list_snapshots

    try:
        snaps = list_snapshots(run_dir)
    except FileNotFoundError as err:
        raise SourceError(str(err)) from None
    if not snaps:
        raise SourceError(f"{run_dir} has no complete snapshot in checkpoints/ yet. Train longer (snapshots are "
                          "written every --snapshot-kimg), or point at a run dir that has them.")
    return snaps


def run_training_data(run_dir: Path, override: str | Path | None = None) -> Path:
    """The dataset a run was trained on (from its config.json), or a clear error if it moved."""
    from gan.api import read_run_config

    if override is not None:
        path = Path(override)
        if not path.exists():
            raise SourceError(f"--data {path} does not exist.")
        return path
    config = read_run_config(run_dir)
    data = config.get("data")
    if not data:
        raise SourceError(f"{run_dir}/config.json does not name its training data; pass --data DIR.")
    if not Path(data).exists():
        raise SourceError(f"{run_dir} was trained on {data}, which no longer exists (moved or deleted). "
                          "Pass --data NEW_PATH to evaluate against its new location.")
    return Path(data)
