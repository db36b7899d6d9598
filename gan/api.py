"""Public API for other packages (evalkit) and scripts: find snapshots, load G_ema, stream uint8 images.

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

from . import checkpoint as ckpt
from .config import RunConfig
from .nets import build_generator
from .nets.generator import z_for_seeds as _z_for_seeds
from .sample import synthesize

__all__ = ["Snapshot", "LoadedGenerator", "list_snapshots", "read_run_config", "resolve_checkpoint",
           "load_generator"]


@dataclass(frozen=True)
class Snapshot:
    kimg: float
    path: Path


def _require_run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a gan run dir (no config.json; "
                                "run dirs are created by `gan train --out DIR`)")
    return run_dir


def list_snapshots(run_dir: str | Path) -> list[Snapshot]:
    """Complete snapshots of a run, oldest first (temp files of interrupted writes are ignored)."""
    run_dir = _require_run_dir(run_dir)
    folder = run_dir / "checkpoints"
    snaps = []
    for path in folder.iterdir() if folder.is_dir() else []:
        kimg = ckpt.kimg_from_name(path.name)
        if kimg is not None and path.is_file():
            snaps.append(Snapshot(kimg=kimg, path=path))
    return sorted(snaps, key=lambda s: s.kimg)


def read_run_config(run_dir: str | Path) -> dict:
    """The run's config.json: includes 'data' (absolute path), 'resolution' and 'disc'."""
    return json.loads((_require_run_dir(run_dir) / "config.json").read_text())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as is, or a run dir's latest snapshot."""
    path = Path(path)
    if path.is_dir():
        snaps = list_snapshots(path)
        if not snaps:
            raise FileNotFoundError(f"run dir {path} has no complete snapshot yet")
        return snaps[-1].path
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
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
        raise ValueError(f"{path}: its config cannot be read by this version of gan ({exc})") from None
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):  # random init is overwritten; keep the caller's RNG as it was
        G = build_generator(cfg)
    ckpt.load_module(G, path, "G_ema")
    G = G.to(device).eval().requires_grad_(False)
    return LoadedGenerator(G, meta["config"], float(meta["state"]["kimg"]), path, device)
