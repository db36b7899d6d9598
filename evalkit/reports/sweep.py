"""`evalkit sweep`: every metric per truncation ψ, from one set of real features.

Each ψ generates `num_gen` samples from the same seeds (so ψ is the only thing that changes),
streams them through the extractor (cached per checkpoint, ψ and seeds), and scores them against
the real features computed once. Writes sweep.csv / sweep.md / sweep.json, FID-vs-ψ and
precision-vs-recall plots, and a strip of the same seeds at every ψ.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness_base.atomic import write_text_atomic

from ..errors import SourceError
from ..extract.featureset import FeatureSet, feature_set
from ..sources import GenerationOptions, GeneratorSource, resolve_source
from .evaluate import ALL_METRICS, compute_metrics
from .plots import labelled_strip, metric_vs_psi, precision_recall
from .tables import write_table

# From above 1 through 0 to negative ψ, the range StyleGAN's truncation figure spans (Karras et al. 2019, Fig. 8)
DEFAULT_PSIS = (1.2, 1.0, 0.7, 0.5, 0.0, -0.5, -1.0)
SWEEP_COLUMNS = ["psi", "fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "num_gen"]


def truncation_sweep(checkpoint, data, psis=DEFAULT_PSIS, gen: GenerationOptions | None = None,
                     out_dir: str | Path = "sweep", metrics=ALL_METRICS, strip_seeds: int = 6,
                     real: FeatureSet | None = None, device=None, progress: bool = True, log=print,
                     **extraction) -> dict:
    gen = gen or GenerationOptions(num_gen=10_000)
    out = Path(out_dir)
    base = resolve_source(checkpoint, gen)
    if not isinstance(base, GeneratorSource):
        raise SourceError(f"{checkpoint} is not a checkpoint or run dir; a truncation sweep samples a generator.")
    real = real or feature_set(data, "real", device=device, progress=progress, **extraction)
    rows = []
    for psi in psis:
        source = GeneratorSource(base.checkpoint, gen.replace(psi=psi))
        fake = feature_set(source, f"psi={psi:g}", device=device, progress=progress, **extraction)
        result = compute_metrics(real, fake, metrics, device=device)
        row = {"psi": psi, "num_gen": fake.num, **{k: result[k] for k in SWEEP_COLUMNS[1:-1] if k in result}}
        rows.append(row)
        log("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    best = min(rows, key=lambda r: r["fid"]) if "fid" in metrics else None
    out.mkdir(parents=True, exist_ok=True)
    name = base.checkpoint.stem
    columns = [c for c in SWEEP_COLUMNS if c in rows[0]]
    write_table(rows, columns, out / "sweep", title=f"Truncation sweep of {name} against {real.path}")
    files = {"table_csv": str(out / "sweep.csv"), "table_md": str(out / "sweep.md")}
    if "fid" in metrics:
        files["fid_plot"] = str(metric_vs_psi({name: [(r["psi"], r["fid"]) for r in rows]}, out / "fid_vs_psi.png"))
    if "precision" in rows[0]:
        files["pr_plot"] = str(precision_recall({name: [(r["psi"], r["precision"], r["recall"]) for r in rows]},
                                                out / "precision_recall.png"))
    generator = base.load(device)
    seeds = list(range(gen.seed, gen.seed + strip_seeds))
    columns_img = [np.concatenate(list(generator.images(seeds=seeds, psi=psi, noise_mode=gen.noise_mode)))
                   for psi in psis]
    scale = max(1, 96 // generator.resolution)
    files["strip"] = str(labelled_strip(columns_img, [f"psi={p:g}" for p in psis], out / "truncation_strip.png",
                                        scale=scale))
    result = {"checkpoint": str(base.checkpoint), "real": real.summary(), "rows": rows,
              "best_psi": best["psi"] if best else None, "best_fid": best["fid"] if best else None,
              "params": {"num_gen": gen.num_gen, "seed": gen.seed, "noise_mode": gen.noise_mode,
                         "metrics": list(metrics)}, "files": files, "out_dir": str(out)}
    write_text_atomic(out / "sweep.json", json.dumps(result, indent=2))
    return result
