"""Public API for other packages (evalkit) and scripts: open a run dir, find its snapshots and
training data, load G_ema, stream uint8 images.

A run dir (written by `gan train --out DIR`) is a folder with `config.json` (the full training
configuration, with the absolute data path), `checkpoints/snapshot-KIMG.safetensors`, `log.jsonl`
and `samples/`. `Run` reads it once; nothing else outside `gan` needs to know that layout.

Loading never executes code: checkpoints are safetensors files whose string header holds the
JSON config the networks are rebuilt from.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness_base.errors import HarnessError

from . import checkpoint as ckpt
from .checkpoint import CheckpointError
from .config import RunConfig
from .nets import build_generator
from .nets.generator import z_for_seeds as _z_for_seeds
from .sample import synthesize

__all__ = ["Run", "RunError", "CheckpointError", "Snapshot", "LoadedGenerator", "is_run_dir", "is_checkpoint",
           "checkpoint_kimg", "checkpoint_config", "checkpoint_record", "network_summary", "list_snapshots",
           "read_run_config", "resolve_checkpoint", "load_generator"]

RUN_CONFIG = "config.json"
CHECKPOINTS = "checkpoints"


class RunError(HarnessError, FileNotFoundError):
    """A run dir or checkpoint path that cannot be used as given (the message says why and what to do)."""


@dataclass(frozen=True)
class Snapshot:
    kimg: float
    path: Path


def is_run_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / RUN_CONFIG).is_file()


def is_checkpoint(path: str | Path) -> bool:
    return Path(path).is_file() and Path(path).name.endswith(ckpt.SNAPSHOT_SUFFIX)


def checkpoint_kimg(path: str | Path) -> float | None:
    """Training progress of a snapshot file, from its name (None for other files)."""
    return ckpt.kimg_from_name(Path(path).name)


def checkpoint_config(path: str | Path) -> dict:
    """The run configuration stored in a checkpoint's header (the file describes itself)."""
    return checkpoint_record(path)["config"]


def checkpoint_record(path: str | Path) -> dict:
    """What a checkpoint says about its run: 'config' (every setting), 'state' (images seen, ADA p,
    ...) and 'resolved' (what the run resolved to on its machine: device, precision of each part,
    and per network its kind, parameter count and learning rate under 'networks')."""
    try:
        meta = ckpt.read_metadata(path)
    except FileNotFoundError as err:
        raise RunError(str(err)) from None
    return {key: meta[key] for key in ("config", "state", "resolved")}


def network_summary(path: str | Path) -> dict:
    """Per network ('G', 'D'): kind, parameter count and learning rate, from a checkpoint."""
    record = checkpoint_record(path)
    networks = record["resolved"].get("networks", {})
    config = record["config"]
    disc = networks.get("D", {})
    return {"G": networks.get("G", {}), "D": {"kind": disc.get("kind", config.get("disc")), **disc}}


@dataclass(frozen=True)
class Run:
    """A training run dir, read once: its configuration and where its snapshots and data are."""
    path: Path
    config: dict

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not is_run_dir(path):
            raise RunError(f"{path} is not a gan run dir (it has no {RUN_CONFIG}; run dirs are created by "
                           "`gan train --out DIR`).")
        try:
            config = json.loads((path / RUN_CONFIG).read_text())
        except ValueError as err:
            raise RunError(f"{path / RUN_CONFIG} is not valid JSON ({err}); the run dir is damaged.") from None
        return cls(path.resolve(), config)

    @property
    def name(self) -> str:
        return self.path.name

    def snapshots(self) -> list[Snapshot]:
        """Complete snapshots, oldest first (temp files of interrupted writes are never listed)."""
        folder = self.path / CHECKPOINTS
        snaps = [Snapshot(kimg=kimg, path=p) for p in (folder.iterdir() if folder.is_dir() else [])
                 if (kimg := ckpt.kimg_from_name(p.name)) is not None and p.is_file()]
        return sorted(snaps, key=lambda s: s.kimg)

    def require_snapshots(self) -> list[Snapshot]:
        snaps = self.snapshots()
        if not snaps:
            raise RunError(f"{self.path} has no complete snapshot in {CHECKPOINTS}/ yet. Train longer (a snapshot "
                           "is written every --snap kimg), or point at a run dir that has one.")
        return snaps

    def latest(self) -> Snapshot:
        return self.require_snapshots()[-1]

    def training_data(self, override: str | Path | None = None) -> Path:
        """The data set the run was trained on, or `override` (the same data at a new place)."""
        if override is not None:
            path = Path(override)
            if not path.exists():
                raise RunError(f"--data {path} does not exist.")
            return path
        data = self.config.get("data")
        if not data:
            raise RunError(f"{self.path / RUN_CONFIG} does not name its training data; pass --data DIR.")
        if not Path(data).exists():
            raise RunError(f"{self.path} was trained on {data}, which no longer exists (moved or deleted). Put the "
                           "data back there, or pass --data NEW_PATH to use it at its new place.")
        return Path(data)


def list_snapshots(run_dir: str | Path) -> list[Snapshot]:
    """Complete snapshots of a run, oldest first (temp files of interrupted writes are ignored)."""
    return Run.open(run_dir).snapshots()


def read_run_config(run_dir: str | Path) -> dict:
    """The run's config.json: includes 'data' (absolute path), 'resolution' and 'disc'."""
    return Run.open(run_dir).config


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as is, or a run dir's latest snapshot."""
    path = Path(path)
    if path.is_dir():
        return Run.open(path).latest().path
    if not path.exists():
        raise RunError(f"checkpoint {path} does not exist")
    return path


class LoadedGenerator:
    """The EMA generator of a checkpoint, ready to sample."""

    def __init__(self, G, config: dict, kimg: float, path: Path, device: torch.device):
        self.G, self.config, self.kimg, self.path, self.device = G, config, kimg, path, device
        self.resolution, self.z_dim, self.num_ws = G.resolution, G.z_dim, G.num_ws
        self.w_dim = G.w_dim

    @property
    def w_avg(self) -> torch.Tensor:
        """[w_dim] for the standard mapping; [levels, w_dim] for the per-resolution mapping."""
        return self.G.mapping.w_avg

    def z_for_seeds(self, seeds: Sequence[int]) -> torch.Tensor:
        return _z_for_seeds(seeds, self.z_dim)

    def mapping(self, z: torch.Tensor, psi: float = 1.0, truncation_cutoff: int | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.G.mapping(z.to(self.device, torch.float32), psi=psi, truncation_cutoff=truncation_cutoff)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        with torch.no_grad():
            return self.G.synthesis(ws.to(self.device, torch.float32), noise_mode=noise_mode)

    def images(self, seeds: Sequence[int] | None = None, z: torch.Tensor | np.ndarray | None = None,
               psi: float = 1.0, noise_mode: str = "const", batch_size: int = 32,
               truncation_cutoff: int | None = None, progress: bool = False) -> Iterator[np.ndarray]:
        """uint8 (B, H, W, 3) batches in seed/latent order; exactly one of seeds or z."""
        if (seeds is None) == (z is None):
            raise ValueError("give exactly one of seeds or z")
        if seeds is not None:
            z = self.z_for_seeds(list(seeds))
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        batches = synthesize(self.G, z, psi=psi, noise_mode=noise_mode, batch_size=batch_size,
                             truncation_cutoff=truncation_cutoff)
        if progress:
            from tqdm import tqdm
            batches = tqdm(batches, total=-(-z.shape[0] // batch_size), desc="generating", unit="batch")
        yield from batches


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    """Load the EMA generator of a checkpoint file or run dir (latest snapshot), in fp32 eval mode."""
    path = resolve_checkpoint(path)
    meta = ckpt.read_metadata(path)
    try:
        cfg = RunConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its config cannot be read by this version of gan ({exc})") from None
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # random init is overwritten; keep the caller's RNG as it was
        G = build_generator(cfg)
    try:
        ckpt.load_module(G, path, "G_ema")
    except CheckpointError:
        raise
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    G = G.to(device).eval().requires_grad_(False)
    return LoadedGenerator(G, meta["config"], float(meta["state"]["kimg"]), path, device)
