"""Built-in demo data set: cartoon faces from python-avatars, rasterised with resvg-py.

Deterministic for a (seed, index) pair, so tests and the demo can rebuild the same images
anywhere without network or committed image files.
"""
from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image

# Avataaars SVGs are 264x280 with the head in the upper part; this box (in SVG units) is a
# square around the head and hair so that the data set is "faces", not busts.
_HEAD_BOX = (22.0, 0.0, 242.0, 220.0)
_SVG_W, _SVG_H = 264.0, 280.0


def _pastel(rng: random.Random) -> tuple[int, int, int]:
    return tuple(int(160 + rng.random() * 95) for _ in range(3))  # type: ignore[return-value]


def render_avatar(index: int, seed: int = 0, res: int = 64) -> Image.Image:
    """Render avatar number `index` of the set for `seed` as an RGB `res`x`res` image."""
    import python_avatars as pa
    import resvg_py

    # python-avatars draws from the global `random` module; keep the caller's state intact.
    saved = random.getstate()
    try:
        random.seed(f"avatar-{seed}-{index}")
        avatar = pa.Avatar.random(style=pa.AvatarStyle.TRANSPARENT)
        svg = avatar.render()
        rng = random.Random(f"background-{seed}-{index}")
        background = _pastel(rng)
    finally:
        random.setstate(saved)

    x0, y0, x1, y1 = _HEAD_BOX
    scale = 2 * res / (x1 - x0)  # rasterise at 2x and downsample: cleaner edges at small sizes
    width, height = round(_SVG_W * scale), round(_SVG_H * scale)
    png = resvg_py.svg_to_bytes(svg_string=svg, width=width, height=height)
    rgba = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, background + (255,))
    canvas.alpha_composite(rgba)
    sx, sy = rgba.size[0] / _SVG_W, rgba.size[1] / _SVG_H
    box = (round(x0 * sx), round(y0 * sy), round(x0 * sx) + 2 * res, round(y0 * sy) + 2 * res)
    face = canvas.crop(box).convert("RGB")
    return face.resize((res, res), Image.LANCZOS)


def avatar_array(n: int, seed: int = 0, res: int = 64, start: int = 0) -> np.ndarray:
    """`n` avatars as a uint8 array of shape (n, res, res, 3)."""
    return np.stack([np.asarray(render_avatar(start + i, seed, res)) for i in range(n)])


def write_avatars(out_dir: str | Path, n: int, seed: int = 0, res: int = 64, start: int = 0,
                  progress: bool = False) -> list[Path]:
    """Write avatars `start`..`start+n-1` as PNG files named by index; return their paths."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in tqdm(range(start, start + n), desc="avatars", unit="img", disable=not progress):
        path = out / f"{i:06d}.png"
        render_avatar(i, seed, res).save(path)
        paths.append(path)
    return paths
