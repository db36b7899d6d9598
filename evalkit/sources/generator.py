"""Generated images as a source: a `gan` checkpoint sampled through `gan.api`, streamed straight
into the feature extractor (no image files are written).

Seeds are `seed, seed+1, ..., seed+num_gen-1` (z from `np.random.RandomState(s)`, the
StyleGAN2-ADA convention), so a source is fully described by the checkpoint's content and its
`GenerationOptions` — which is also its feature-cache key.

Synthesis noise defaults to `random`, as in StyleGAN2-ADA's metrics (`metric_utils.py` samples G
with its default `noise_mode="random"`): FID then scores the generator as it is sampled, not one
frozen noise draw. So that a seed range still names one set of images, the noise of each batch is
drawn from torch's RNG seeded with the batch's first seed (in a forked RNG state, so the caller's
stream is untouched); the images then depend on the batch size as well, which is fixed per device.

Selecting and reporting on the same samples overstates the winner (the minimum of several noisy
FIDs is biased low). `selection_options` and `report_options` give the two disjoint seed ranges
used by `evalkit fid RUN_DIR` and `evalkit report`: selection on seeds seed .. seed+N−1, the
chosen snapshot's numbers on a fresh range starting at REPORT_SEED_OFFSET + seed.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from harness_base.hashing import sha256_file

from gan.api import CheckpointError, Run, RunError, is_checkpoint, is_run_dir, load_generator

from ..errors import SourceError
from .images import memoized_content_hash, stat_listing

NOISE_MODES = ("const", "random", "none")
DEFAULT_NOISE_MODE = "random"
# Report seeds start here: 10^6 keeps them clear of any selection range shorter than a million samples
REPORT_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class GenerationOptions:
    """How a checkpoint is sampled: the one place these five fields are spelled out."""
    num_gen: int = 10_000
    psi: float = 1.0
    seed: int = 0
    noise_mode: str = DEFAULT_NOISE_MODE
    truncation_cutoff: int | None = None

    def __post_init__(self):
        import math

        if isinstance(self.num_gen, bool) or not isinstance(self.num_gen, int) or self.num_gen < 1:
            raise SourceError(f"--num-gen must be a whole number >= 1, got {self.num_gen!r}")
        if not isinstance(self.psi, (int, float)) or not math.isfinite(self.psi):
            raise SourceError(f"--psi must be a finite number (any real value, negative and > 1 included), "
                              f"got {self.psi!r}")
        if self.noise_mode not in NOISE_MODES:
            raise SourceError(f"--noise-mode must be one of {', '.join(NOISE_MODES)}, got {self.noise_mode!r}")
        if self.truncation_cutoff is not None and self.truncation_cutoff < 1:
            raise SourceError(f"--truncation-cutoff must be >= 1 (or absent), got {self.truncation_cutoff!r}")

    def replace(self, **changes) -> "GenerationOptions":
        return dataclasses.replace(self, **changes)

    @property
    def seeds(self) -> range:
        return range(self.seed, self.seed + self.num_gen)

    def seed_range(self) -> list[int]:
        """[first, last] seed, as every table and JSON states it."""
        return [self.seed, self.seed + self.num_gen - 1]

    def params(self) -> dict:
        return {"num_gen": self.num_gen, "psi": float(self.psi), "seed": self.seed, "noise_mode": self.noise_mode,
                "truncation_cutoff": self.truncation_cutoff}


@dataclass
class GeneratorSource:
    checkpoint: Path
    options: GenerationOptions
    kind: str = "checkpoint"

    def __post_init__(self):
        self.checkpoint = Path(self.checkpoint).resolve()

    @property
    def path(self) -> Path:
        return self.checkpoint

    @property
    def seeds(self) -> range:
        return self.options.seeds

    @property
    def psi(self) -> float:
        return self.options.psi

    def __len__(self) -> int:
        return self.options.num_gen

    def describe(self) -> str:
        o = self.options
        return f"checkpoint {self.checkpoint.name} ({o.num_gen} samples, psi={o.psi:g}, seeds from {o.seed})"

    def params(self) -> dict:
        return self.options.params()

    def fingerprint(self, progress: bool = False, remember: bool = True) -> str:
        weights = memoized_content_hash(stat_listing([self.checkpoint], [self.checkpoint.name]),
                                        lambda: sha256_file(self.checkpoint), remember)
        return hashlib.sha256(f"checkpoint-v1\0{weights}\0{sorted(self.params().items())}".encode()).hexdigest()

    def load(self, device):
        try:
            return load_generator(self.checkpoint, device=device)
        except (RunError, CheckpointError) as err:
            raise SourceError(str(err)) from None

    def batches(self, device, batch_size: int = 32, progress: bool = False, seeds=None):
        """uint8 (B, H, W, 3) batches for this source's seeds (or a subset), generated on `device`."""
        o = self.options
        generator = self.load(device)
        seeds = list(self.seeds if seeds is None else seeds)
        images = generator.images(seeds=seeds, psi=o.psi, noise_mode=o.noise_mode, batch_size=batch_size,
                                  truncation_cutoff=o.truncation_cutoff, progress=progress)
        if o.noise_mode != "random":
            return images
        return _seeded_noise(images, seeds, batch_size)


def _seeded_noise(images, seeds: list[int], batch_size: int):
    """Each batch's random noise from torch's RNG seeded with its first seed (module doc)."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    for start in range(0, len(seeds), batch_size):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seeds[start])
            try:
                batch = next(images)
            except StopIteration:
                return
        yield batch


def selection_options(gen: GenerationOptions) -> GenerationOptions:
    """The seeds a snapshot (or ψ) is chosen on: the options as given."""
    return gen


def report_options(gen: GenerationOptions, num_gen: int | None = None) -> GenerationOptions:
    """Fresh seeds, disjoint from `selection_options(gen)`, on which the chosen one is reported."""
    report = gen.replace(seed=REPORT_SEED_OFFSET + gen.seed, num_gen=num_gen or gen.num_gen)
    check_disjoint_seeds(gen, report)
    return report


def check_disjoint_seeds(selection: GenerationOptions, report: GenerationOptions) -> None:
    a, b = selection.seed_range(), report.seed_range()
    if a[0] <= b[1] and b[0] <= a[1]:
        raise SourceError(f"the selection seeds {a[0]}..{a[1]} and the report seeds {b[0]}..{b[1]} overlap, so "
                          "the reported numbers would reuse the samples the choice was made on; use fewer than "
                          f"{REPORT_SEED_OFFSET} samples or a smaller --seed.")


def open_run(path: str | Path) -> Run:
    """A run dir through gan's API, with its problems reported as source errors."""
    try:
        return Run.open(path)
    except RunError as err:
        raise SourceError(str(err)) from None


def run_snapshots(run: Run) -> list:
    try:
        return run.require_snapshots()
    except RunError as err:
        raise SourceError(str(err)) from None


def run_training_data(run: Run, override: str | Path | None = None) -> Path:
    try:
        return run.training_data(override)
    except RunError as err:
        raise SourceError(str(err)) from None


__all__ = ["DEFAULT_NOISE_MODE", "GenerationOptions", "GeneratorSource", "NOISE_MODES", "REPORT_SEED_OFFSET",
           "check_disjoint_seeds", "report_options", "selection_options", "is_checkpoint", "is_run_dir", "open_run",
           "run_snapshots", "run_training_data"]
