"""PIL's bicubic resize of 8-bit RGB images, `Image.fromarray(x).resize(size, Image.BICUBIC)`, as
dgm-eval (`torchvision.transforms.Resize` on a PIL image) and CMMD (`io_util._center_crop_and_resize`)
resize before DINOv2 and CLIP — on the CPU with PIL itself, and bit for bit on any torch device.

PIL resamples uint8 images in fixed point (Pillow `src/libImaging/Resample.c`): the same float64
coefficients as for float images (`resize.pil_bicubic_matrix`), rounded half away from zero to
integers at 22 fractional bits, a horizontal pass then a vertical pass, each output the integer sum
plus 2^21 shifted right by 22 and clipped to [0, 255], so the intermediate image is uint8 too. In
float64 every product and sum here is an integer below 2^53 and therefore exact, so a float64
matrix product reproduces PIL's integer arithmetic on any device.

The order of the passes matters (the intermediate is rounded and clipped). Pillow up to 12 always
runs the horizontal pass first; Pillow 13 runs the vertical pass first when the height shrinks by
more than twice as many pixels as the width (`ImagingResampleInner`). `resize_uint8_torch` follows
the installed Pillow. Square inputs — every generator's output, and CMMD's centre crops — take the
same order in every version.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import PIL
from PIL import Image

from .resize import pil_bicubic_matrix

PRECISION_BITS = 22   # 32 - 8 - 2 in Resample.c
PILLOW_MAJOR = int(PIL.__version__.split(".")[0])


def resize_uint8_pil(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (size, size, 3), PIL bicubic (as the reference implementations call it)."""
    return np.asarray(Image.fromarray(image).resize((size, size), resample=Image.BICUBIC))


@lru_cache(maxsize=64)
def pil_uint8_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) PIL's fixed-point coefficients (`normalize_coeffs_8bpc`), as float64 integers."""
    k = pil_bicubic_matrix(in_size, out_size) * (1 << PRECISION_BITS)
    return np.trunc(np.where(k < 0, k - 0.5, k + 0.5))   # C's (int) truncates toward zero


def _pass(matrix: np.ndarray, x: torch.Tensor, horizontal: bool) -> torch.Tensor:
    m = torch.from_numpy(matrix).to(x.device)
    acc = torch.matmul(x, m.T) if horizontal else torch.matmul(m, x)
    acc += 1 << (PRECISION_BITS - 1)
    return torch.floor_(acc / (1 << PRECISION_BITS)).clamp_(0, 255)   # `>> 22` floors; clip8


def vertical_pass_first(height: int, width: int, size: int, pillow_major: int = PILLOW_MAJOR) -> bool:
    return pillow_major >= 13 and height - size > 0 and height - size > 2 * (width - size)


def resize_uint8_torch(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 3, size, size), equal to `resize_uint8_pil` on each image."""
    h, w = images.shape[-2:]
    x = images.to(torch.float64)
    passes = [(w, True), (h, False)]
    if vertical_pass_first(h, w, size):
        passes.reverse()
    for in_size, horizontal in passes:
        if in_size != size:
            x = _pass(pil_uint8_matrix(in_size, size), x, horizontal)
    return x.to(torch.uint8)
