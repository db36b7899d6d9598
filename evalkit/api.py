"""The Python API, re-exported as `evalkit.fid`, `evalkit.metrics`, `evalkit.write_stats` and
`evalkit.feature_set` (as clean-fid users call `cleanfid.fid.compute_fid`)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from harness_base.atomic import atomic_path

from harness_base import __version__

from .errors import SourceError
from .extract import distributed
from .extract.featureset import FeatureSet, feature_set
from .extract.registry import extractor_info
from .metrics.fid import check_sample_size, frechet_distance
from .metrics.fid_inf import Extrapolated, fid_infinity, kid_infinity  # noqa: F401 (API)
from .metrics.paired import PairedDifference, paired_fid_difference  # noqa: F401 (API)
from .reports.evaluate import ALL_METRICS, evaluate
from .sources import GenerationOptions


def source_stats(spec: str | Path, *, label: str | None = None, gen: GenerationOptions | None = None,
                 **options) -> FeatureSet:
    """Features and statistics of one source (folder, zip, .npz, checkpoint or run dir)."""
    return feature_set(spec, label or str(spec), gen, **options)


def fid(a: str | Path, b: str | Path, gen: GenerationOptions | None = None, *, extractor: str | None = None,
        **options) -> dict:
    """FID between two sources; returns the JSON-ready result (see `evalkit fid --json`).

    `options`: device, batch_size, num_workers, use_cache, skip_bad, progress."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sa = feature_set(a, "A", gen, extractor=extractor, **options)
        sb = feature_set(b, "B", gen, extractor=extractor, **options)
        for st in (sa, sb):
            if st.num:  # a statistics file may not record its count
                check_sample_size(st.num, sa.mu.shape[0], f"{st.label} ({st.path})")
        value = frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    info = extractor_info(extractor)
    return {
        "metric": "fid",
        "fid": value,
        "num_images": [sa.num, sb.num],
        "sources": [sa.summary(), sb.summary()],
        "feature_extractor": {"name": info["name"], "id": info["id"], "weights_sha256": info["weights_sha256"],
                              "dims": info["dims"]},
        "resize": info["resize"],
        "warnings": list(dict.fromkeys(sa.notes + sb.notes + [str(w.message) for w in caught])),
        "evalkit_version": __version__,
    }


def metrics(real: str | Path, fake: str | Path, gen: GenerationOptions | None = None, metrics=ALL_METRICS,
            **options) -> dict:
    """Every metric of `fake` against `real` from one feature pass (see `evalkit metrics --json`)."""
    return evaluate(real, fake, gen, metrics, **options)


def write_stats(spec: str | Path, out: str | Path, include_features: bool = False,
                gen: GenerationOptions | None = None, *, extractor: str | None = None, **options) -> dict:
    """Save a source's statistics (and optionally its features) as .npz; return what was written."""
    out = Path(out)
    if out.suffix != ".npz":
        raise SourceError(f"statistics files end in .npz; got {out.name}")
    st = feature_set(spec, str(spec), gen, extractor=extractor, **options)
    info = extractor_info(extractor)
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
