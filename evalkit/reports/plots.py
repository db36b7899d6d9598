"""Plots and image strips for reports (matplotlib, Agg backend; written atomically as PNG)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from harness_base.atomic import atomic_path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    _figure().close(fig)
    return path


def fid_vs_kimg(series: dict[str, list[tuple[float, float]]], path: Path, title: str = "FID during training") -> Path:
    """One line per run: (kimg, FID) points, the best snapshot of each marked with a star."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, points in series.items():
        if not points:
            continue
        kimg, fid = zip(*sorted(points))
        line, = ax.plot(kimg, fid, marker="o", markersize=3, label=name)
        best = int(np.argmin(fid))
        ax.plot(kimg[best], fid[best], marker="*", markersize=14, color=line.get_color(), markeredgecolor="black",
                label=f"{name} best: {fid[best]:.2f} @ {kimg[best]:g} kimg")
    ax.set_xlabel("training progress (kimg)")
    ax.set_ylabel("FID (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def metric_vs_psi(series: dict[str, list[tuple[float, float]]], path: Path, metric: str = "FID") -> Path:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, points in series.items():
        psi, value = zip(*sorted(points))
        ax.plot(psi, value, marker="o", label=name)
    ax.set_xlabel("truncation ψ")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against truncation ψ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def precision_recall(series: dict[str, list[tuple[float, float, float]]], path: Path) -> Path:
    """(ψ, precision, recall) points per checkpoint, each labelled with its ψ."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, points in series.items():
        points = sorted(points)
        recall = [p[2] for p in points]
        precision = [p[1] for p in points]
        ax.plot(recall, precision, marker="o", label=name)
        for psi, p, r in points:
            ax.annotate(f"ψ={psi:g}", (r, p), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recall (coverage of the real distribution)")
    ax.set_ylabel("precision (realism of samples)")
    ax.set_title("precision against recall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def labelled_strip(columns: list[np.ndarray], labels: list[str], path: Path, scale: int = 1) -> Path:
    """Columns of uint8 images (each (rows, H, W, 3)) side by side, a text label above each column."""
    from PIL import Image, ImageDraw

    rows, h, w, _ = columns[0].shape
    pad, header = 4, 16
    cell_w, cell_h = w * scale, h * scale
    canvas = Image.new("RGB", (len(columns) * (cell_w + pad) + pad, header + rows * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, (images, label) in enumerate(zip(columns, labels)):
        x = pad + c * (cell_w + pad)
        draw.text((x + 2, 2), label, fill="black")
        for r in range(rows):
            tile = Image.fromarray(images[r]).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (x, header + pad + r * (cell_h + pad)))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(buf.getvalue())
    return path
