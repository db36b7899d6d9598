"""clean-fid's "clean" resize: PIL bicubic on float32, one channel at a time, to 299x299, no
re-quantisation — on the CPU with PIL itself, and on any torch device with the same filter.

PIL resamples separably: a horizontal pass then a vertical pass, each output pixel a weighted
sum over an input window whose width grows with the down-scaling factor (antialiasing),
accumulated tap by tap from the left in double and stored as float32 (Pillow `Resample.c`,
`ImagingResampleHorizontal_32bpc`). `pil_bicubic_matrix` reproduces PIL's coefficients bit for
bit, and `resize_torch` accumulates the taps in PIL's order with one rounding per multiply and
per add, so it equals `resize_pil` exactly on any device (a matrix product would sum in another
order and differ in the last bit now and then).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import Image

TARGET = 299


def resize_pil(image: np.ndarray, size: int = TARGET) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, size, size) in [0, 255], exactly as clean-fid does it."""
    channels = []
    for c in range(3):
        plane = Image.fromarray(image[:, :, c].astype(np.float32), mode="F")
        plane = plane.resize((size, size), resample=Image.BICUBIC)
        channels.append(np.asarray(plane).clip(0, 255))
    return np.stack(channels).astype(np.float32)


def _bicubic(x: float) -> float:
    a = -0.5  # PIL's bicubic constant
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@lru_cache(maxsize=64)
def pil_bicubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(first input index per output pixel (out_size,), coefficients (out_size, taps)) as PIL's
    `precompute_coeffs` computes them; rows shorter than `taps` are padded with zero weights."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    inverse = 1.0 / filterscale           # PIL multiplies by the reciprocal, which rounds differently
    rows, starts = [], []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)   # int() truncates toward zero, like C
        xmax = min(int(center + support + 0.5), in_size)
        weights = [_bicubic((x - center + 0.5) * inverse) for x in range(xmin, xmax)]
        total = 0.0
        for w in weights:  # left to right, as PIL sums
            total += w
        if total != 0.0:
            weights = [w / total for w in weights]
        rows.append(weights)
        starts.append(xmin)
    taps = max(len(w) for w in rows)
    coefs = np.zeros((out_size, taps), dtype=np.float64)
    for xx, weights in enumerate(rows):
        coefs[xx, :len(weights)] = weights
    return np.asarray(starts, dtype=np.int64), coefs


def pil_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64 matrix M with out = M @ in, PIL's coefficients (Resample.c)."""
    starts, coefs = pil_bicubic_taps(in_size, out_size)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for xx, (start, row) in enumerate(zip(starts, coefs)):
        width = min(len(row), in_size - start)
        matrix[xx, start:start + width] = row[:width]
    return matrix


def _resample_last_axis(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """One PIL pass along the last axis of a float32 tensor: for every output pixel, the sum over
    its taps from the left of float64(input) * coefficient, rounded once to float32 at the end.
    Padding taps have weight 0 and add an exact +0."""
    in_size = x.shape[-1]
    starts, coefs = pil_bicubic_taps(in_size, out_size)
    taps = torch.arange(coefs.shape[1])
    index = (torch.from_numpy(starts)[:, None] + taps[None, :]).clamp_(max=in_size - 1).to(x.device)
    weight = torch.from_numpy(coefs).to(x.device)
    acc = torch.zeros(*x.shape[:-1], out_size, dtype=torch.float64, device=x.device)
    for t in range(coefs.shape[1]):
        term = x.index_select(-1, index[:, t]).to(torch.float64) * weight[:, t]
        acc = acc + term          # two roundings (multiply, then add), as PIL's `ss += in * k`
    return acc.to(torch.float32)


def _horizontal(x: torch.Tensor, size: int) -> torch.Tensor:
    return _resample_last_axis(x, size) if x.shape[-1] != size else x


def _vertical(x: torch.Tensor, size: int) -> torch.Tensor:
    return _resample_last_axis(x.transpose(-1, -2), size).transpose(-1, -2) if x.shape[-2] != size else x


def _shrinks_height_first(h: int, w: int, size: int) -> bool:
    """Pillow's `ImagingResampleInner` (13.0.0) runs the vertical pass first when the height shrinks
    by more than twice as many pixels as the width; older releases always start horizontally, so
    the installed Pillow's rule is read off once."""
    return _pil_has_height_first_rule() and h - size > 0 and h - size > 2 * (w - size)


@lru_cache(maxsize=1)
def _pil_has_height_first_rule() -> bool:
    """Which pass order the installed Pillow uses, read off one small resize whose two orders differ."""
    plane = np.random.default_rng(0).random((80, 40), dtype=np.float32) * 255
    pil = np.asarray(Image.fromarray(plane, mode="F").resize((16, 16), resample=Image.BICUBIC))
    x = torch.from_numpy(plane)
    return np.array_equal(pil, _horizontal(_vertical(x, 16), 16).numpy())


def resize_torch(images: torch.Tensor, size: int = TARGET) -> torch.Tensor:
    """uint8 or float (N, 3, H, W) -> float32 (N, 3, size, size) in [0, 255], equal to `resize_pil`
    bit for bit: the two passes in the installed Pillow's order, each rounded to float32 as PIL
    stores its intermediate image (PIL skips a pass whose size does not change; so does this), then
    the clamp."""
    x = images.to(torch.float32)
    if _shrinks_height_first(x.shape[-2], x.shape[-1], size):
        x = _horizontal(_vertical(x, size), size)
    else:
        x = _vertical(_horizontal(x, size), size)
    return x.contiguous().clamp_(0, 255)
