"""Python API behind the CLI: statistics of a source, FID between two sources, saved stats files."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__, distributed
from .atomic import atomic_path
from .errors import SourceError
from .features import SourceFeatures, extractor_info, source_features
from .inception import EXTRACTOR_ID, FEATURE_DIM
from .metrics.fid import check_sample_size, feature_stats, frechet_distance
from .resize import RESIZE_MODE
from .sources import ImageSource, StatsSource, open_source

MODE_NOTES = {"L": "grayscale, replicated", "LA": "grayscale+alpha, alpha dropped",
              "RGBA": "alpha dropped, not composited", "P": "palette, expanded", "PA": "palette+alpha",
              "CMYK": "CMYK, converted", "I;16": "16-bit, clipped", "I": "32-bit integer", "F": "float"}


@dataclass
class SourceStats:
    """Mean and covariance of one source's features, with its provenance and anything worth saying."""
    spec: str
    kind: str
    mu: np.ndarray
    sigma: np.ndarray
    num_images: int
    features: np.ndarray | None
    meta: dict
    warnings: list[str] = field(default_factory=list)
    from_cache: bool = False

    def summary(self) -> dict:
        return {"path": self.spec, "kind": self.kind, "num_images": self.num_images,
                "from_cache": self.from_cache,
                "skipped_unreadable": [n for n, _ in self.meta.get("skipped", [])],
                "modes": self.meta.get("modes"), "sizes": {k: v[0] for k, v in (self.meta.get("sizes") or {}).items()}}


def _image_notes(label: str, feats: SourceFeatures, source: ImageSource) -> list[str]:
    notes = []
    sizes = feats.meta.get("sizes") or {}
    if len(sizes) > 1:
        listed = "; ".join(f"{k}: {v[0]} (e.g. {v[1]})" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1][0])[:5])
        notes.append(f"{label}: images come in {len(sizes)} sizes ({listed}). Each is resized to 299x299 as "
                     "clean-fid does, but mixed sizes usually mean mixed sources; check the folder.")
    modes = {m: c for m, c in (feats.meta.get("modes") or {}).items() if m not in ("RGB", "npy")}
    if modes:
        listed = ", ".join(f"{c} {m} ({MODE_NOTES.get(m, 'converted')})" for m, c in modes.items())
        notes.append(f"{label}: converted to RGB with PIL as clean-fid does: {listed}.")
    if source.ignored:
        notes.append(f"{label}: ignored {len(source.ignored)} non-image file(s): {', '.join(source.ignored[:5])}"
                     f"{' ...' if len(source.ignored) > 5 else ''}.")
    if feats.bad:
        notes.append(f"{label}: left out {len(feats.bad)} unreadable file(s) (--skip-bad): "
                     f"{', '.join(n for n, _ in feats.bad[:5])}{' ...' if len(feats.bad) > 5 else ''}.")
    return notes


def source_stats(spec: str | Path, *, device: torch.device | None = None, batch_size: int | None = None,
                 num_workers: int | None = None, use_cache: bool = True, skip_bad: bool = False,
                 keep_features: bool = False, progress: bool = True, label: str | None = None) -> SourceStats:
    """Statistics for a folder, zip or statistics file."""
    label = label or str(spec)
    source = open_source(spec)
    info = extractor_info()
    if isinstance(source, StatsSource):
        return _stats_from_file(source, info, label)
    feats = source_features(source, device=device, batch_size=batch_size, num_workers=num_workers,
                            use_cache=use_cache, skip_bad=skip_bad, progress=progress)
    if feats.num_images < 2:
        check_sample_size(feats.num_images, FEATURE_DIM, label)
    mu, sigma = feature_stats(feats.features)
    meta = {**feats.meta, "skipped": feats.bad, "num_images": feats.num_images}
    return SourceStats(str(spec), source.kind, mu, sigma, feats.num_images,
                       feats.features if keep_features else None, meta, _image_notes(label, feats, source),
                       feats.from_cache)


def _stats_from_file(source: StatsSource, info: dict, label: str) -> SourceStats:
    notes = []
    meta = source.meta
    if not meta:
        notes.append(f"{label}: statistics file without provenance (e.g. from clean-fid); assuming it was "
                     f"computed with {EXTRACTOR_ID} and the '{RESIZE_MODE}' resize.")
    else:
        for key, ours in (("extractor", info["id"]), ("resize", info["resize"])):
            if meta.get(key) not in (None, ours):
                raise SourceError(f"{source.path} was computed with {key} '{meta[key]}', but this comparison uses "
                                  f"'{ours}'. Recompute it with `evalkit stats`.")
        if meta.get("weights_sha256") not in (None, info["weights_sha256"]):
            notes.append(f"{label}: computed with Inception weights {meta['weights_sha256'][:12]}…, which differ "
                         f"from the file in use ({info['weights_sha256'][:12]}…) but may hold the same weights.")
    if source.mu.shape[0] != info["dims"]:
        raise SourceError(f"{source.path} has {source.mu.shape[0]}-d statistics; FID here uses {info['dims']}-d "
                          "Inception pool3 features.")
    n = source.num_images if source.num_images is not None else 0
    return SourceStats(str(source.path), "stats", source.mu, source.sigma, n, source.features, meta, notes)


def fid(a: str | Path, b: str | Path, **options) -> dict:
    """FID between two sources; returns the JSON-ready result (see `evalkit fid --json`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sa = source_stats(a, label="A", **options)
        sb = source_stats(b, label="B", **options)
        for label, st in (("A", sa), ("B", sb)):
            if st.num_images:  # a statistics file may not record its count
                check_sample_size(st.num_images, FEATURE_DIM, f"{label} ({st.spec})")
        value = frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    notes = sa.warnings + sb.warnings + [str(w.message) for w in caught]
    info = extractor_info()
    return {
        "metric": "fid",
        "fid": value,
        "num_images": [sa.num_images, sb.num_images],
        "sources": [sa.summary(), sb.summary()],
        "feature_extractor": {"id": info["id"], "weights_sha256": info["weights_sha256"], "dims": info["dims"]},
        "resize": info["resize"],
        "warnings": notes,
        "evalkit_version": __version__,
    }


def write_stats(spec: str | Path, out: str | Path, include_features: bool = False, **options) -> dict:
    """Save a source's statistics (and optionally its features) as .npz; return what was written."""
    out = Path(out)
    if out.suffix != ".npz":
        raise SourceError(f"statistics files end in .npz; got {out.name}")
    st = source_stats(spec, keep_features=include_features, **options)
    info = extractor_info()
    if not distributed.is_main_process():  # under torchrun every rank has the result; one writes it
        return {"path": str(out), "num_images": st.num_images, "warnings": []}
    meta = {"num_images": st.num_images, "source": st.spec, "source_kind": st.kind,
            "extractor": info["id"], "weights_sha256": info["weights_sha256"], "resize": info["resize"],
            "evalkit_version": __version__}
    arrays = {"mu": st.mu, "sigma": st.sigma, "meta": np.array(json.dumps(meta))}
    if include_features and st.features is not None:
        arrays["features"] = st.features.astype(np.float32)
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return {"path": str(out), **meta, "warnings": st.warnings}
