"""Python API behind the CLI's `fid` and `stats` commands (see evalkit.evaluate for all metrics)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from . import __version__, distributed
from .atomic import atomic_path
from .errors import SourceError
from .evaluate import FeatureSet, GenerationOptions, feature_set
from .features import extractor_info
from .inception import FEATURE_DIM
from .metrics.fid import check_sample_size, frechet_distance


def source_stats(spec: str | Path, *, label: str | None = None, gen: GenerationOptions | None = None,
                 **options) -> FeatureSet:
    """Features and statistics of one source (folder, zip, .npz, checkpoint or run dir)."""
    return feature_set(spec, label or str(spec), gen, **options)


def fid(a: str | Path, b: str | Path, gen: GenerationOptions | None = None, **options) -> dict:
    """FID between two sources; returns the JSON-ready result (see `evalkit fid --json`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sa = feature_set(a, "A", gen, **options)
        sb = feature_set(b, "B", gen, **options)
        for st in (sa, sb):
            if st.num:  # a statistics file may not record its count
                check_sample_size(st.num, FEATURE_DIM, f"{st.label} ({st.path})")
        value = frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    info = extractor_info()
    return {
        "metric": "fid",
        "fid": value,
        "num_images": [sa.num, sb.num],
        "sources": [sa.summary(), sb.summary()],
        "feature_extractor": {"id": info["id"], "weights_sha256": info["weights_sha256"], "dims": info["dims"]},
        "resize": info["resize"],
        "warnings": sa.notes + sb.notes + [str(w.message) for w in caught],
        "evalkit_version": __version__,
    }


def write_stats(spec: str | Path, out: str | Path, include_features: bool = False,
                gen: GenerationOptions | None = None, **options) -> dict:
    """Save a source's statistics (and optionally its features) as .npz; return what was written."""
    out = Path(out)
    if out.suffix != ".npz":
        raise SourceError(f"statistics files end in .npz; got {out.name}")
    st = feature_set(spec, str(spec), gen, **options)
    info = extractor_info()
    if not distributed.is_main_process():  # under torchrun every rank has the result; one writes it
        return {"path": str(out), "num_images": st.num, "warnings": []}
    meta = {"num_images": st.num, "source": st.path, "source_kind": st.kind,
            "extractor": info["id"], "weights_sha256": info["weights_sha256"], "resize": info["resize"],
            "evalkit_version": __version__}
    for key in ("num_gen", "psi", "seed", "noise_mode"):
        if key in st.meta:
            meta[key] = st.meta[key]
    arrays = {"mu": st.mu, "sigma": st.sigma, "meta": np.array(json.dumps(meta))}
    if include_features and st.features is not None:
        arrays["features"] = st.features.astype(np.float32)
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return {"path": str(out), **meta, "warnings": st.notes}
