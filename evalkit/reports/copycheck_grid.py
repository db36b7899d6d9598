"""Nearest-neighbour grid: each generated sample next to its nearest training images, as a PNG.

One row per sample: the sample, then its K nearest training images, each labelled with its
distance (LPIPS, and Inception L2 when given). Rows flagged as copies get a red border around
every image and a red "COPY?" label. A header band names the columns. Small images are
upscaled with nearest-neighbour resampling (integer factor) so pixels stay visible.

The layout is fixed arithmetic (`GridLayout`), so the PNG's size depends only on the number of
rows and columns and the cell size, not on the font.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from harness_base.atomic import atomic_path

FLAG_COLOUR = (220, 0, 0)
FLAG_ROW_BACKGROUND = (255, 232, 232)
BORDER_COLOUR = (190, 190, 190)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (20, 20, 20)
FLAG_TEXT = "COPY?"

MIN_CELL = 96      # images are upscaled (integer factor) until their longer side is at least this
BORDER = 4         # frame around each image, red on flagged rows
PAD = 8            # gap between cells and around the grid
LINE_H = 14        # one text line
LABEL_LINES = 3    # under each image: name, distance, feature distance
HEADER_LINES = 2   # caption, column names
FONT_SIZE = 11


@dataclass(frozen=True)
class GridLayout:
    rows: int
    cols: int
    cell: int   # side of the square box each image is fitted into, in px

    @property
    def col_w(self) -> int:
        return self.cell + 2 * BORDER + PAD

    @property
    def row_h(self) -> int:
        return self.cell + 2 * BORDER + LABEL_LINES * LINE_H + PAD

    @property
    def header_h(self) -> int:
        return PAD + HEADER_LINES * LINE_H

    @property
    def width(self) -> int:
        return PAD + self.cols * self.col_w

    @property
    def height(self) -> int:
        return self.header_h + self.rows * self.row_h + PAD

    def frame_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), inclusive, of the framed image at (row, col): border included."""
        x0 = PAD + col * self.col_w
        y0 = self.header_h + PAD + row * self.row_h
        side = self.cell + 2 * BORDER
        return x0, y0, x0 + side - 1, y0 + side - 1

    def label_xy(self, row: int, col: int, line: int) -> tuple[int, int]:
        x0, _, _, y1 = self.frame_box(row, col)
        return x0, y1 + 2 + line * LINE_H


def cell_size(images: Sequence[np.ndarray], min_cell: int = MIN_CELL) -> int:
    """Longest image side times the smallest integer factor reaching `min_cell` (1 for big images)."""
    side = max(max(np.asarray(im).shape[:2]) for im in images)
    return side * max(1, math.ceil(min_cell / side))


def _to_pil(image) -> Image.Image:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        if arr.shape[2] == 1:
            return Image.fromarray(arr[:, :, 0], "L").convert("RGB")
        return Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB").convert("RGB")
    raise ValueError(f"expected an image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {arr.shape}")


def _fit(image: Image.Image, cell: int) -> Image.Image:
    w, h = image.size
    scale = cell / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS)


def _font(size: int = FONT_SIZE):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


# Characters the default font lacks, spelled with ones it has.
_PLAIN = str.maketrans({"—": "-", "–": "-", "≤": "<=", "≥": ">=", "τ": "tau", "→": "->", "×": "x", "≪": "<<"})


def _plain(text: str) -> str:
    return text.translate(_PLAIN)


def render_neighbour_grid(samples, neighbours, distances, flags, out_path: str | Path,
                   feature_distances=None, titles: Sequence[str] | None = None,
                   neighbour_titles: Sequence[Sequence[str]] | None = None, caption: str | None = None,
                   distance_name: str = "LPIPS", feature_name: str = "L2", cell: int | None = None) -> Path:
    """Write the nearest-neighbour grid to `out_path` (PNG) and return the path.

    samples: R images (H, W[, C]) uint8; neighbours: R rows of K images each (any sizes);
    distances: (R, K) `distance_name` distances (LPIPS); feature_distances: optional (R, K)
    Inception L2; flags: (R,) bool, flagged rows are framed in red and labelled "COPY?";
    titles: R row names (default "sample i"); neighbour_titles: R x K names (default "NN j");
    caption: a line of text at the top (e.g. the verdict); cell: image box size (default: the
    longest image side, upscaled by an integer factor to at least 96 px).
    """
    samples = list(samples)
    neighbours = [list(row) for row in neighbours]
    rows = len(samples)
    if rows == 0:
        raise ValueError("no samples to show")
    if len(neighbours) != rows:
        raise ValueError(f"{rows} samples but {len(neighbours)} rows of neighbours")
    k = len(neighbours[0])
    if any(len(row) != k for row in neighbours):
        raise ValueError("every sample needs the same number of neighbours")
    distances = np.asarray(distances, np.float64)
    if distances.shape != (rows, k):
        raise ValueError(f"distances must be ({rows}, {k}), got {distances.shape}")
    if feature_distances is not None:
        feature_distances = np.asarray(feature_distances, np.float64)
        if feature_distances.shape != (rows, k):
            raise ValueError(f"feature_distances must be ({rows}, {k}), got {feature_distances.shape}")
    flags = np.asarray(flags, bool).reshape(-1)
    if flags.shape != (rows,):
        raise ValueError(f"flags must have one entry per sample ({rows}), got {flags.shape}")
    titles = [f"sample {i}" for i in range(rows)] if titles is None else list(titles)
    if len(titles) != rows:
        raise ValueError(f"{rows} samples but {len(titles)} titles")
    if neighbour_titles is not None and (len(neighbour_titles) != rows
                                         or any(len(t) != k for t in neighbour_titles)):
        raise ValueError(f"neighbour_titles must be {rows} rows of {k} names")

    pil_rows = [[_to_pil(samples[r])] + [_to_pil(im) for im in neighbours[r]] for r in range(rows)]
    if cell is None:
        cell = cell_size([np.asarray(im) for row in pil_rows for im in row])
    layout = GridLayout(rows, 1 + k, int(cell))
    canvas = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()

    if caption:
        draw.text((PAD, PAD), _plain(caption), fill=TEXT_COLOUR, font=font)
    heads = ["generated"] + [f"nearest {j + 1} ({distance_name})" for j in range(k)]
    for col, text in enumerate(heads):
        draw.text((PAD + col * layout.col_w, PAD + LINE_H), _plain(text), fill=TEXT_COLOUR, font=font)

    for r in range(rows):
        flagged = bool(flags[r])
        if flagged:  # tint the whole row band
            _, y0, _, _ = layout.frame_box(r, 0)
            draw.rectangle((0, y0 - PAD // 2, layout.width - 1, y0 - PAD // 2 + layout.row_h - 1),
                           fill=FLAG_ROW_BACKGROUND)
        for col, im in enumerate(pil_rows[r]):
            x0, y0, x1, y1 = layout.frame_box(r, col)
            draw.rectangle((x0, y0, x1, y1), fill=FLAG_COLOUR if flagged else BORDER_COLOUR)
            draw.rectangle((x0 + BORDER, y0 + BORDER, x1 - BORDER, y1 - BORDER), fill=BACKGROUND)
            fitted = _fit(im, layout.cell)
            ox = x0 + BORDER + (layout.cell - fitted.size[0]) // 2
            oy = y0 + BORDER + (layout.cell - fitted.size[1]) // 2
            canvas.paste(fitted, (ox, oy))
            if col == 0:
                lines = [(titles[r], TEXT_COLOUR), (FLAG_TEXT if flagged else "", FLAG_COLOUR)]
            else:
                j = col - 1
                name = neighbour_titles[r][j] if neighbour_titles is not None else f"NN {j + 1}"
                lines = [(name, TEXT_COLOUR), (f"{distance_name} {distances[r, j]:.4f}", TEXT_COLOUR)]
                if feature_distances is not None:
                    lines.append((f"{feature_name} {feature_distances[r, j]:.2f}", TEXT_COLOUR))
            for line, (text, colour) in enumerate(lines):
                if text:
                    draw.text(layout.label_xy(r, col, line), _plain(text), fill=colour, font=font)

    out_path = Path(out_path)
    with atomic_path(out_path, suffix=".png") as tmp:
        canvas.save(tmp, format="PNG")
    return out_path
