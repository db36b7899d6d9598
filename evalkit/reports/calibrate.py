"""A scale for the user's own data: where FID, KID, precision/recall, density/coverage and the copy
check land for stand-ins of known quality, each compared with the training set exactly as a
generator's samples would be.

Stand-ins, all built from the held-out images (never from the training set, except the copies):
- `heldout`: the held-out images themselves — the floor a perfect generator reaches at this N;
- `blur-S`: Gaussian blur with σ = S px (scipy.ndimage.gaussian_filter, per channel, reflect borders);
- `jpeg-Q`: one JPEG re-encode at quality Q (Pillow, its default 4:2:0 chroma subsampling);
- `noise-S`: additive Gaussian noise with σ = S grey levels (of 255), rounded and clipped;
- `colour-S`: a colour cast, red +S and blue −S levels, clipped;
- `half-random`: a random half of the held-out set (what halving N alone does, the control for:)
- `half-modes`: the held-out images in half of the k-means clusters of their features (mode dropping,
  the same size as half-random);
- `copies-P`: P % of the held-out images replaced by training images (exact copies).

Every stand-in is compared with the whole training set by `evalkit.reports.evaluate.compute_metrics`;
values are single estimates at the stated N (no intervals), so read differences smaller than the gap
between the floor and the mildest stand-in as noise. The copy check's flag rate is
`evalkit.metrics.copying.copy_check` with LPIPS re-ranking, as `evalkit copycheck` runs it.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness_base.atomic import write_text_atomic

from ..errors import EvalkitError, SourceError

METRICS = ("fid", "kid", "pr", "dc")
COLUMNS = ("fid", "kid", "precision", "recall", "density", "coverage", "copy_flag_rate")


@dataclass(frozen=True)
class StandIn:
    name: str
    kind: str
    strength: float | None
    description: str


STANDINS: tuple[StandIn, ...] = (
    StandIn("heldout", "floor", None, "held-out real images (the floor)"),
    StandIn("blur-0.5", "blur", 0.5, "Gaussian blur σ = 0.5 px"),
    StandIn("blur-1", "blur", 1.0, "Gaussian blur σ = 1 px"),
    StandIn("blur-2", "blur", 2.0, "Gaussian blur σ = 2 px"),
    StandIn("jpeg-90", "jpeg", 90, "JPEG quality 90"),
    StandIn("jpeg-50", "jpeg", 50, "JPEG quality 50"),
    StandIn("jpeg-20", "jpeg", 20, "JPEG quality 20"),
    StandIn("noise-4", "noise", 4, "Gaussian noise σ = 4 levels"),
    StandIn("noise-16", "noise", 16, "Gaussian noise σ = 16 levels"),
    StandIn("colour-8", "colour", 8, "colour cast R +8, B −8 levels"),
    StandIn("colour-24", "colour", 24, "colour cast R +24, B −24 levels"),
    StandIn("half-random", "half-random", None, "a random half of the held-out images"),
    StandIn("half-modes", "half-modes", None, "held-out images of half the k-means clusters (mode dropping)"),
    StandIn("copies-10", "copies", 10, "10% of held-out images replaced by training images"),
    StandIn("copies-50", "copies", 50, "50% of held-out images replaced by training images"),
)
BY_NAME = {s.name: s for s in STANDINS}


# ---------------------------------------------------------------------------------------------
# Images and degradations (pure functions over uint8 (N, H, W, 3) arrays)


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0), mode="reflect")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return np.stack(out)


def noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(images + rng.normal(0, sigma, images.shape)), 0, 255).astype(np.uint8)


def colour_cast(images: np.ndarray, levels: float) -> np.ndarray:
    shift = np.array([levels, 0, -levels], np.float64)
    return np.clip(images.astype(np.float64) + shift, 0, 255).astype(np.uint8)


def mode_drop_indices(features: np.ndarray, clusters: int = 10, seed: int = 0) -> np.ndarray:
    """Indices of the images in the clusters kept when every other k-means cluster (by size order) is
    dropped: about half the images, missing whole regions of the distribution."""
    from sklearn.cluster import KMeans

    k = int(min(clusters, max(2, len(features) // 5)))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(np.asarray(features, np.float64))
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    keep = set(order[0::2].tolist())
    return np.flatnonzero(np.isin(labels, list(keep)))


def _load_images(source, what: str, skip_bad: bool = False) -> tuple[np.ndarray, list[str], list[str]]:
    """The decoded images, their file names and (with `skip_bad`) the names of the files left out."""
    from PIL import Image

    from ..sources import DecodeError

    images, names, skipped = [], [], []
    for i in range(len(source)):
        try:
            img, _ = source.load(i)
        except DecodeError as err:
            if skip_bad:
                skipped.append(source.names[i])
                continue
            raise SourceError(f"{what} {source.path}: {source.names[i]} cannot be read ({err}). The scale is built "
                              "from every image; remove or replace the file, or pass --skip-bad to leave "
                              "unreadable files out, and run again.") from None
        images.append(img)
        names.append(source.names[i])
    if not images:
        raise SourceError(f"{what} {source.path} holds no images.")
    size = images[0].shape[:2]
    if any(im.shape[:2] != size for im in images):  # one size per set, as the copy check needs
        images = [im if im.shape[:2] == size else np.asarray(Image.fromarray(im).resize(size[::-1], Image.BICUBIC))
                  for im in images]
    return np.stack(images), names, skipped


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if images.shape[1:3] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize(size[::-1], Image.BICUBIC)) for im in images])


def _hashes(images: np.ndarray) -> list[str]:
    return [hashlib.sha256(im.tobytes() + str(im.shape).encode()).hexdigest() for im in images]


# ---------------------------------------------------------------------------------------------
# The copy check: called from this one place


def copy_flag_rate(gen_features, gen_images, train_features, train_images, *, device=None, train_queries=None,
                   seed: int = 0) -> dict:
    """Share of `gen_images` the copy check flags against the training set (copy_check with LPIPS pairs)."""
    from ..extract.lpips import pair_distance_fn
    from ..metrics.copying import copy_check

    check = copy_check(gen_features, train_features, gen_pairs=pair_distance_fn(gen_images, train_images, device),
                       train_pairs=pair_distance_fn(train_images, train_images, device),
                       train_queries=train_queries, seed=seed, device=device)
    return {"copy_flag_rate": check.score, "copy_flagged": check.n_flagged, "copy_threshold": check.tau,
            "copy_rule": check.rule}


# ---------------------------------------------------------------------------------------------
# The scale


def _feature_set_of(label: str, features: np.ndarray, extractor: str):
    from ..extract.featureset import FeatureSet
    from ..metrics.fid import feature_stats

    mu, sigma = feature_stats(features)
    return FeatureSet(label, "stand-in", label, features, mu, sigma, len(features), extractor=extractor)


def calibration_scale(train, heldout, out_dir=None, *, num: int | None = None, standins=None, device=None,
                      seed: int = 0, copy_check: bool = True, train_queries: int | None = 1000,
                      batch_size=None, num_workers=None, use_cache: bool = True, skip_bad: bool = False,
                      progress: bool = True, extractor=None, log=print) -> dict:
    """Metrics of known-quality stand-ins against the training set; writes calibrate.json/.csv/.png in
    `out_dir` when given. `num`: held-out images used (a seeded subset; default all); `standins`: names
    from STANDINS (default all; `heldout` is always included); `skip_bad`: leave unreadable image files
    out of both sets (named in the warnings) instead of stopping."""
    import torch

    from ..extract.featureset import feature_set
    from ..extract.features import features_of_arrays
    from ..sources import ImageSource, resolve_source
    from .evaluate import compute_metrics

    names = list(standins) if standins else [s.name for s in STANDINS]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise EvalkitError(f"unknown stand-in(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}.")
    if "heldout" not in names:
        names.insert(0, "heldout")
    names = [s.name for s in STANDINS if s.name in names]
    device = torch.device(device) if device else None
    train_src, held_src = resolve_source(train), resolve_source(heldout)
    for src, what in ((train_src, "--train"), (held_src, "--heldout")):
        if not isinstance(src, ImageSource):
            raise SourceError(f"{what} must be a folder or zip of images (stand-ins are made from the images); "
                              f"got {src.path}.")
    extraction = dict(device=device, batch_size=batch_size, num_workers=num_workers, use_cache=use_cache,
                      skip_bad=skip_bad, progress=progress, extractor=extractor)
    train_images, train_names, train_skipped = _load_images(train_src, "--train", skip_bad)
    held_images, held_names, held_skipped = _load_images(held_src, "--heldout", skip_bad)
    skipped_notes = [f"{what}: left out {len(names)} unreadable file(s) ({', '.join(names[:5])}"
                     f"{', …' if len(names) > 5 else ''})" for what, names in
                     (("--train", train_skipped), ("--heldout", held_skipped)) if names]
    overlap = set(_hashes(train_images)) & set(_hashes(held_images))
    if overlap:
        raise SourceError(
            f"{len(overlap)} held-out image(s) are pixel-identical to training images; the held-out set must be "
            "images the model never saw, or the floor and the copy rates mean nothing. Remove them and run again.")
    t = feature_set(train_src, "training", **extraction)
    h = feature_set(held_src, "held-out", **extraction)
    for fs, files in ((t, train_names), (h, held_names)):   # copies pair image i with feature row i
        if list(fs.names) != files:
            raise EvalkitError(f"the features of {fs.path} are not in the order of its files; clear the cache "
                               "(`evalkit cache clear`) and run again.")
    rng = np.random.default_rng(seed)
    held_idx = np.arange(len(held_images))
    if num is not None and num < len(held_idx):
        held_idx = np.sort(rng.choice(len(held_idx), size=num, replace=False))
    if len(held_idx) < 4:
        raise SourceError(f"--heldout needs at least 4 images for a scale, got {len(held_idx)}.")
    held_images, held_f = held_images[held_idx], h.features[held_idx]
    train_f = t.features
    size = held_images.shape[1:3]
    train_for_lpips = _resize(train_images, size)
    ex_name = t.extractor

    rows, warned = [], list(skipped_notes)
    for i, name in enumerate(names, 1):
        s = BY_NAME[name]
        log(f"[{i}/{len(names)}] {name}: {s.description}")
        imgs, feats = held_images, held_f
        if s.kind in ("blur", "jpeg", "noise", "colour"):
            imgs = {"blur": lambda x: blur(x, s.strength), "jpeg": lambda x: jpeg(x, s.strength),
                    "noise": lambda x: noise(x, s.strength, seed), "colour": lambda x: colour_cast(x, s.strength)
                    }[s.kind](held_images)
            feats = features_of_arrays([imgs], device=device, batch_size=batch_size, extractor=extractor)
        elif s.kind == "half-random":
            keep = np.sort(np.random.default_rng(seed + 1).choice(len(imgs), size=len(imgs) // 2, replace=False))
            imgs, feats = imgs[keep], feats[keep]
        elif s.kind == "half-modes":
            keep = mode_drop_indices(held_f, seed=seed)
            imgs, feats = imgs[keep], feats[keep]
        elif s.kind == "copies":
            r = np.random.default_rng(seed + 2)
            n_copy = int(round(len(imgs) * s.strength / 100))
            slots = r.choice(len(imgs), size=n_copy, replace=False)
            sources = r.choice(len(train_f), size=n_copy, replace=False)
            imgs, feats = imgs.copy(), feats.copy()
            imgs[slots], feats[slots] = train_for_lpips[sources], train_f[sources]
        standin = _feature_set_of(name, feats, ex_name)
        # P/R/D/C run at equal counts with k up to 5 (compute_metrics' defaults): a stand-in of 5 or fewer
        # images has no 5th neighbour, so it gets FID/KID only, said once.
        small = len(feats) <= 5
        # the scale's columns are single values at the stated N: no FID∞/KID∞ fits
        m = compute_metrics(t, standin, ("fid", "kid") if small else METRICS, seed=seed, device=device,
                            infinity=False)
        if small:
            m.setdefault("warnings", []).append(
                f"{name}: {len(feats)} images are too few for precision/recall/density/coverage (k = 5 needs "
                "at least 6); only FID and KID are given for it.")
        warned += [w for w in m.get("warnings", []) if w not in warned]
        row = {"standin": name, "kind": s.kind, "strength": s.strength, "description": s.description,
               "num": len(feats), **{k: m.get(k) for k in COLUMNS if k in m}}
        if copy_check:
            row.update(copy_flag_rate(feats, imgs, train_f, train_for_lpips, device=device,
                                      train_queries=train_queries, seed=seed))
        rows.append(row)

    result = {
        "train": t.summary(), "heldout": {**h.summary(), "num_used": int(len(held_idx))},
        "num_train": t.num, "num_heldout": int(len(held_idx)), "seed": seed,
        "extractor": ex_name, "metrics": list(METRICS),
        "conventions": ("every stand-in is compared with the whole training set, as generated samples would be; "
                        "single values at the stated N, no intervals; KID/P/R/D/C settings as "
                        "compute_metrics' defaults (KID 100 subsets of up to 1000, k = 3 for P/R, 5 for D/C)"),
        "rows": rows,
        "warnings": warned,
    }
    if rows and copy_check:
        result["copy_rule"] = rows[0]["copy_rule"]
    result["table"] = format_table(result)
    if out_dir is not None:
        result["files"] = write_outputs(result, Path(out_dir))
    return result


def format_table(result: dict) -> str:
    head = f"{'stand-in':<12} {'N':>5} {'FID':>9} {'KID':>8} {'prec':>6} {'recall':>6} {'dens':>6} {'cover':>6}"
    has_copy = any("copy_flag_rate" in r for r in result["rows"])
    if has_copy:
        head += f" {'copy%':>6}"
    lines = [f"against the training set ({result['num_train']} images), {result['extractor']} features", head]

    def fmt(v, spec):
        return format(v, spec) if v is not None else "-"
    for r in result["rows"]:
        line = (f"{r['standin']:<12} {r['num']:>5} {fmt(r.get('fid'), '9.2f')} {fmt(r.get('kid'), '8.4f')} "
                f"{fmt(r.get('precision'), '6.3f')} {fmt(r.get('recall'), '6.3f')} {fmt(r.get('density'), '6.3f')} "
                f"{fmt(r.get('coverage'), '6.3f')}")
        if has_copy:
            line += f" {100 * r['copy_flag_rate']:6.1f}"
        lines.append(line)
    return "\n".join(lines)


def write_outputs(result: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "calibrate.json"), "csv": str(out / "calibrate.csv"), "plot": str(out / "calibrate.png")}
    buf = io.StringIO()
    keys = ["standin", "kind", "strength", "num", *COLUMNS, "description"]
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in result["rows"]:
        writer.writerow(r)
    write_text_atomic(files["csv"], buf.getvalue())
    plot_scale(result, Path(files["plot"]))
    write_text_atomic(files["json"], json.dumps({**result, "files": files}, indent=2, default=float))
    return files


def plot_scale(result: dict, path: Path) -> Path:
    """One panel per metric: each stand-in's value as a labelled point, the floor as a dashed line."""
    from .plots import _figure, _save

    plt = _figure()
    cols = [c for c in COLUMNS if any(r.get(c) is not None for r in result["rows"])]
    fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 0.3 * len(result["rows"]) + 1.6), sharey=True)
    axes = np.atleast_1d(axes)
    labels = [r["standin"] for r in result["rows"]]
    y = np.arange(len(labels))
    for ax, col in zip(axes, cols):
        vals = np.array([r.get(col) if r.get(col) is not None else np.nan for r in result["rows"]], float)
        ax.plot(vals, y, "o", color="tab:blue")
        floor = vals[labels.index("heldout")] if "heldout" in labels else np.nan
        if np.isfinite(floor):
            ax.axvline(floor, ls="--", color="grey", lw=1)
        ax.set_title(col.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"stand-ins against the training set (N train = {result['num_train']}, "
                 f"held-out = {result['num_heldout']}); dashed: held-out floor", fontsize=9)
    return _save(fig, path)
