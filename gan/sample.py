"""Image grids: snapshot samples, truncation grids (rows = seeds, columns = psi) and style mixing
(rows take chosen style layers from columns, as in Karras et al. 2019, Fig. 3)."""
from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from harness_base.atomic import write_bytes_atomic
from .nets.generator import Generator, ws_indices_by_resolution, z_for_seeds


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW floats -> NHWC uint8, quantised exactly like StyleGAN2-ADA."""
    return (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def synthesize(G: Generator, z: torch.Tensor, psi: float = 1.0, noise_mode: str = "const",
               batch_size: int = 32, truncation_cutoff: int | None = None) -> Iterator[np.ndarray]:
    """uint8 (B, H, W, 3) batches for the latents `z`, in order, in fp32."""
    device = next(G.parameters()).device
    for start in range(0, z.shape[0], batch_size):
        zb = z[start:start + batch_size].to(device=device, dtype=torch.float32)
        ws = G.mapping(zb, psi=psi, truncation_cutoff=truncation_cutoff)
        yield to_uint8(G.synthesis(ws, noise_mode=noise_mode))


def image_grid(images: np.ndarray, cols: int, pad: int = 0) -> Image.Image:
    """Tile (N, H, W, 3) uint8 images row by row; missing cells stay white."""
    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = img
    return Image.fromarray(grid)


def save_png(image: Image.Image, path) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def snapshot_grid(G: Generator, seeds: Sequence[int], cols: int) -> Image.Image:
    z = z_for_seeds(seeds, G.z_dim)
    return image_grid(np.concatenate(list(synthesize(G, z))), cols)


def truncation_grid(G: Generator, seeds: Sequence[int], psis: Sequence[float],
                    noise_mode: str = "const") -> Image.Image:
    """Rows = seeds, columns = psi values."""
    z = z_for_seeds(seeds, G.z_dim)
    per_psi = [np.concatenate(list(synthesize(G, z, psi=psi, noise_mode=noise_mode))) for psi in psis]
    cells = np.stack(per_psi, axis=1)  # [seeds, psis, H, W, 3]: row-major = one row per seed
    return image_grid(cells.reshape(-1, *cells.shape[2:]), cols=len(psis))


STYLE_GROUPS = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, None)}


def parse_style_layers(spec: str, resolution: int) -> list[int]:
    """'coarse' | 'middle' | 'fine' (StyleGAN's 4-8 / 16-32 / 64+ px split) or indices like '0-3' or '0,2,5'."""
    num_ws = 2 * int(np.log2(resolution)) - 2
    if spec in STYLE_GROUPS:
        lo, hi = STYLE_GROUPS[spec]
        by_res = ws_indices_by_resolution(resolution)
        layers = sorted({i for r, idxs in by_res.items() if r >= lo and (hi is None or r <= hi) for i in idxs})
        # A toRGB w is shared with the next block's first conv; it belongs to the lower group.
        if lo > 4:
            layers = [i for i in layers if i not in by_res.get(lo // 2, [])]
        if not layers:
            raise ValueError(f"a {resolution} px generator has no {spec!r} style layers "
                             f"(fine layers start at 64 px); use explicit indices 0-{num_ws - 1}")
        return layers
    layers = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            layers.extend(range(int(a), int(b) + 1))
        elif part:
            layers.append(int(part))
    bad = [i for i in layers if not 0 <= i < num_ws]
    if not layers or bad:
        raise ValueError(f"style layers {spec!r} must be coarse, middle, fine or indices in 0-{num_ws - 1}")
    return sorted(set(layers))


@torch.no_grad()
def style_mix_ws(G: Generator, row_seeds, col_seeds, layers: Sequence[int], psi: float = 1.0):
    """(row ws [R, num_ws, w], col ws [C, num_ws, w], mixed ws [R, C, num_ws, w])."""
    device = next(G.parameters()).device
    row_ws = G.mapping(z_for_seeds(row_seeds, G.z_dim).to(device), psi=psi)
    col_ws = G.mapping(z_for_seeds(col_seeds, G.z_dim).to(device), psi=psi)
    mixed = row_ws.unsqueeze(1).repeat(1, len(col_seeds), 1, 1)
    idx = torch.as_tensor(list(layers), device=device)
    mixed[:, :, idx] = col_ws.unsqueeze(0).expand(len(row_seeds), -1, -1, -1)[:, :, idx]
    return row_ws, col_ws, mixed


@torch.no_grad()
def style_mix_grid(G: Generator, row_seeds, col_seeds, layers: Sequence[int], psi: float = 1.0,
                   noise_mode: str = "const") -> Image.Image:
    """Top row: column sources; left column: row sources; cell (i, j): row i with `layers` from column j."""
    row_ws, col_ws, mixed = style_mix_ws(G, row_seeds, col_seeds, layers, psi)
    render = lambda ws: to_uint8(G.synthesis(ws, noise_mode=noise_mode))  # noqa: E731
    rows_img, cols_img = render(row_ws), render(col_ws)
    cells = render(mixed.flatten(0, 1))
    blank = np.full_like(rows_img[:1], 255)
    tiles = [blank, cols_img]
    for i in range(len(row_seeds)):
        tiles += [rows_img[i:i + 1], cells[i * len(col_seeds):(i + 1) * len(col_seeds)]]
    return image_grid(np.concatenate(tiles), cols=len(col_seeds) + 1)
