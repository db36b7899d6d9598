"""Perceptual path length (Karras et al. 2019, "A Style-Based Generator Architecture for GANs", §4.1).

PPL is the expected LPIPS-VGG16 distance between the images at two latents ε apart on a random
interpolation path, divided by ε²: how fast the image changes, perceptually, as the latent moves.
This follows stylegan2-ada-pytorch metrics/perceptual_path_length.py (`ppl_wend`, `ppl_zend`):

- `space="w"`: z0, z1 ~ N(0, I) are mapped to w0, w1 (every ws entry), and the path is the straight
  line w0 → w1 (lerp); `space="z"`: the path is the great circle between z0/|z0| and z1/|z1| (slerp),
  mapped afterwards.
- `sampling="end"`: t = 0 (the path starts at a sample); `"full"`: t ~ U(0, 1).
- Both images of a pair share their per-pixel noise (StyleGAN2-ADA re-draws the constant noise
  buffers per batch and renders both ends with them; here each batch's noise is drawn from one seed
  and replayed for the second end, with noise_mode="random"). `noise_mode="const"` uses the
  generator's fixed buffers instead.
- Optional centre crop (`crop=True`: rows 3/8..7/8, columns 2/8..6/8 of the image, StyleGAN's crop
  for aligned FFHQ faces; the official `ppl_wend` uses it, so pass crop=True to match published FFHQ
  numbers). Images over 256 px are box-downsampled to 256 px as in the official code; images whose
  shorter side is under 64 px are upsampled to 64 px (bilinear) before LPIPS (see
  evalkit.extract.lpips), which the official code never needs at its resolutions.
- The reported value is the mean of the per-path distances after discarding those below the 1st
  percentile (method "lower") and above the 99th (method "higher"), as the official code does.

The interval is a bootstrap over the sampled paths (scipy.stats.bootstrap, basic method): it covers
the trimmed-mean PPL of this generator with this LPIPS network and ε, i.e. the uncertainty from
using N paths instead of infinitely many. It says nothing about other ε or other LPIPS weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import EvalkitError

SPACES = ("w", "z")
SAMPLINGS = ("end", "full")
DEFAULT_NUM = 50_000          # what StyleGAN2-ADA's ppl metrics use
CONFIDENCE = 0.95


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of a and b (rows), at fractions t (N, 1)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    p = t * torch.acos(d)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def trimmed_mean(x, axis: int = -1):
    """Mean of the values between the 1st percentile (lower) and the 99th (higher), inclusive, as
    stylegan2-ada-pytorch's compute_ppl; vectorised over `axis` for the bootstrap."""
    x = np.asarray(x, np.float64)
    lo = np.percentile(x, 1, axis=axis, method="lower", keepdims=True)
    hi = np.percentile(x, 99, axis=axis, method="higher", keepdims=True)
    keep = (x >= lo) & (x <= hi)
    return np.where(keep, x, 0.0).sum(axis=axis) / keep.sum(axis=axis)


@dataclass
class PPLResult:
    ppl: float                 # trimmed mean of the per-path distances
    ci_low: float
    ci_high: float
    interval: str              # what [ci_low, ci_high] covers
    num_samples: int
    epsilon: float
    space: str
    sampling: str
    crop: bool
    seed: int
    noise_mode: str
    resolution: int | None
    lpips_id: str
    notes: list[str] = field(default_factory=list)
    checkpoint: str | None = None
    distances: np.ndarray = field(default=None, repr=False)   # every path's LPIPS / ε², in sampling order

    @property
    def name(self) -> str:
        return f"ppl_{self.space}{self.sampling}"

    def summary(self) -> dict:
        return {"metric": self.name, "ppl": self.ppl, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "interval": self.interval, "num_samples": self.num_samples, "epsilon": self.epsilon,
                "space": self.space, "sampling": self.sampling, "crop": self.crop, "seed": self.seed,
                "noise_mode": self.noise_mode, "resolution": self.resolution, "lpips": self.lpips_id,
                "trim": "mean of distances within [P1 (lower), P99 (higher)], as stylegan2-ada-pytorch",
                "notes": list(self.notes), "checkpoint": self.checkpoint}


def _prepare(img: torch.Tensor, crop: bool) -> torch.Tensor:
    """Generator output (N, C, H, W) in [-1, 1] -> what LPIPS-VGG compares (crop, 256 px cap, 64 px floor)."""
    from ..extract.lpips import upsample_for_lpips

    img = img.float()
    if crop:
        if img.shape[2] != img.shape[3]:
            raise EvalkitError(f"crop=True needs square images; the generator makes {img.shape[3]}x{img.shape[2]}.")
        c = img.shape[2] // 8
        img = img[:, :, c * 3: c * 7, c * 2: c * 6]
    factor = img.shape[2] // 256
    if factor > 1:
        n, ch, h, w = img.shape
        img = img.reshape(n, ch, h // factor, factor, w // factor, factor).mean((3, 5))
    if img.shape[1] == 1:
        img = img.repeat(1, 3, 1, 1)
    return upsample_for_lpips(img)


def _render(generator, ws: torch.Tensor, noise_mode: str, noise_seed: int) -> torch.Tensor:
    devices = [generator_device(generator)] if generator_device(generator).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(noise_seed)   # the same per-pixel noise for both ends of every path
        return generator.synthesis(ws, noise_mode=noise_mode)


def generator_device(generator) -> torch.device:
    return torch.device(getattr(generator, "device", "cpu"))


@torch.inference_mode()
def path_distances(generator, num_samples: int, epsilon: float = 1e-4, space: str = "w", sampling: str = "end",
                   crop: bool = False, seed: int = 0, noise_mode: str = "random", batch_size: int | None = None,
                   device=None, progress: bool = False) -> np.ndarray:
    """LPIPS-VGG(img(t), img(t + ε)) / ε² for `num_samples` random paths, float64 (N,).

    `generator` needs `z_dim`, `mapping(z) -> ws (N, num_ws, w_dim)` and
    `synthesis(ws, noise_mode=...) -> images (N, C, H, W)` in [-1, 1] (gan.api.LoadedGenerator has them).
    Latents come from numpy's default_rng(seed), so a seed gives the same paths on every device."""
    from ..extract.lpips import load_lpips

    if space not in SPACES:
        raise EvalkitError(f"space must be one of {', '.join(SPACES)}, got {space!r}.")
    if sampling not in SAMPLINGS:
        raise EvalkitError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}.")
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise EvalkitError(f"epsilon must be a positive number, got {epsilon!r}.")
    if num_samples < 2:
        raise EvalkitError(f"PPL needs at least 2 paths, got {num_samples}.")
    dev = torch.device(device) if device is not None else generator_device(generator)
    lp = load_lpips(dev, "vgg")
    batch_size = batch_size or (64 if dev.type == "cuda" else 16)
    rng = np.random.default_rng(seed)
    out = np.empty(num_samples, np.float64)
    starts = range(0, num_samples, batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="ppl paths", unit="batch", total=len(starts))
    for start in starts:
        n = min(batch_size, num_samples - start)
        z = torch.from_numpy(rng.standard_normal((2, n, generator.z_dim)).astype(np.float32)).to(dev)
        t = rng.uniform(size=(n, 1)).astype(np.float32) if sampling == "full" else np.zeros((n, 1), np.float32)
        t = torch.from_numpy(t).to(dev)
        noise_seed = int(rng.integers(2 ** 31))
        if space == "w":
            w0, w1 = generator.mapping(torch.cat([z[0], z[1]])).chunk(2)
            wt0 = w0.lerp(w1, t.unsqueeze(2))
            wt1 = w0.lerp(w1, t.unsqueeze(2) + epsilon)
        else:
            zt0, zt1 = slerp(z[0], z[1], t), slerp(z[0], z[1], t + epsilon)
            wt0, wt1 = generator.mapping(torch.cat([zt0, zt1])).chunk(2)
        img0 = _prepare(_render(generator, wt0, noise_mode, noise_seed), crop)
        img1 = _prepare(_render(generator, wt1, noise_mode, noise_seed), crop)
        d = lp(img0.to(dev), img1.to(dev)).reshape(-1).double().cpu().numpy()
        out[start:start + n] = d / epsilon ** 2
    return out


def summarise(distances: np.ndarray, seed: int = 0, n_resamples: int = 1000) -> tuple[float, float, float, str]:
    """Trimmed mean and its bootstrap interval (basic method, over paths)."""
    from scipy.stats import bootstrap

    distances = np.asarray(distances, np.float64)
    value = float(trimmed_mean(distances))
    res = bootstrap((distances,), trimmed_mean, n_resamples=n_resamples, confidence_level=CONFIDENCE,
                    method="basic", vectorized=True, batch=50, random_state=np.random.default_rng(seed))
    label = (f"{CONFIDENCE:.0%} bootstrap interval (basic, {n_resamples} resamples of the {len(distances)} paths): "
             f"the trimmed-mean PPL of this generator with LPIPS-VGG16 v0.1 at this ε, as N → ∞; "
             f"it does not cover other ε, LPIPS weights or crops")
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high), label


def perceptual_path_length(checkpoint, num_samples: int = DEFAULT_NUM, epsilon: float = 1e-4, space: str = "w",
                           sampling: str = "end", crop: bool = False, seed: int = 0, device=None,
                           noise_mode: str = "random", batch_size: int | None = None,
                           progress: bool = False) -> PPLResult:
    """PPL of a checkpoint file or run dir (latest snapshot), loaded through gan.api."""
    from gan import api as gan_api

    from ..extract.lpips import NETS, upsample_note

    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = gan_api.resolve_checkpoint(checkpoint)
    G = gan_api.load_generator(path, dev)
    dist = path_distances(G, num_samples, epsilon, space, sampling, crop, seed, noise_mode, batch_size, dev, progress)
    value, lo, hi, label = summarise(dist, seed)
    notes = []
    res = int(G.resolution)
    side = res // 2 if crop else res
    if side > 256:
        notes.append(f"images box-downsampled by {side // 256} before LPIPS (as stylegan2-ada-pytorch)")
    if (note := upsample_note(side, side)) is not None:
        notes.append(note)
    if Path(checkpoint).is_dir():
        notes.append(f"run dir: the latest snapshot ({path.name}) was measured")
    return PPLResult(value, lo, hi, label, num_samples, epsilon, space, sampling, crop, seed, noise_mode, res,
                     NETS["vgg"].lpips_id, notes, str(path), dist)


def ppl_column(checkpoint, **options) -> dict:
    """PPL for one report row: {'ppl', 'ppl_ci_low', 'ppl_ci_high', 'ppl_interval', 'ppl_metric', 'ppl_num',
    'ppl_notes'}; options as perceptual_path_length."""
    r = perceptual_path_length(checkpoint, **options)
    return {"ppl": r.ppl, "ppl_ci_low": r.ci_low, "ppl_ci_high": r.ci_high, "ppl_interval": r.interval,
            "ppl_metric": r.name, "ppl_num": r.num_samples, "ppl_epsilon": r.epsilon, "ppl_crop": r.crop,
            "ppl_seed": r.seed, "ppl_noise_mode": r.noise_mode, "ppl_notes": r.notes}
