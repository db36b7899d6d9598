"""`evalkit fid RUN_DIR`: FID of every snapshot of a training run against its own training data,
in order of training progress, with the curve and the best snapshot.

The best snapshot is chosen on the selection seeds (seed .. seed+N−1) and then scored again on a
fresh, disjoint range (`report_seeds`, from 10^6 + seed): the minimum of several noisy FIDs is
biased low (the winner's curse), so the selection value itself is not an estimate of the chosen
snapshot's FID. Both ranges are stated in fid.json and fid.csv's caption.

Results live in `OUT/fid.json` (plus `fid.csv` and `fid_vs_kimg.png`). A re-run reuses every row
whose snapshot, sampling parameters and reference data are unchanged, so only new snapshots cost
anything.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from harness_base.atomic import write_text_atomic

from ..extract.featureset import FeatureSet, feature_set
from ..metrics.fid import frechet_distance
from ..sources import GenerationOptions, GeneratorSource, resolve_source
from ..sources.generator import open_run, report_options, run_snapshots, run_training_data
from .plots import fid_vs_kimg


def default_out_dir(run_dir: Path) -> Path:
    return Path("results") / Path(run_dir).resolve().name / "fid"


def _load_previous(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def fid_over_run(run_dir: str | Path, out_dir: str | Path | None = None, data: str | Path | None = None,
                 gen: GenerationOptions | None = None, real: FeatureSet | None = None, progress: bool = True,
                 log=print, report_num_gen: int | None = None, **extraction) -> dict:
    """Evaluate every complete snapshot of `run_dir` on the selection seeds, choose the lowest FID, and
    score that snapshot again on the report seeds; returns the fid.json content."""
    run = open_run(run_dir)
    run_dir = run.path
    gen = gen or GenerationOptions()
    snapshots = run_snapshots(run)
    data_path = run_training_data(run, data)
    out = Path(out_dir) if out_dir else default_out_dir(run_dir)
    data_source = resolve_source(data_path)
    real = real or feature_set(data_source, "training data", progress=progress, **extraction)
    params = gen.params()
    remember = extraction.get("use_cache", True)   # --no-cache: not even the fingerprint memo is touched
    reference = {"path": str(data_path), "num_images": real.num,
                 "fingerprint": data_source.fingerprint(remember=remember) if hasattr(data_source, "fingerprint")
                 else None}
    previous = _load_previous(out / "fid.json")
    reusable = {}
    if previous.get("params") == params and previous.get("reference") == reference:
        reusable = {row["fingerprint"]: row for row in previous.get("snapshots", [])}

    rows, computed = [], 0
    for snap in snapshots:
        source = GeneratorSource(snap.path, gen)
        fingerprint = source.fingerprint(remember=remember)
        if fingerprint in reusable:  # same weights and sampling: the FID cannot have changed
            rows.append({**reusable[fingerprint], "snapshot": snap.path.name, "path": str(snap.path),
                         "kimg": snap.kimg})
            continue
        fake = feature_set(source, f"{snap.path.name}", progress=progress, **extraction)
        value = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
        rows.append({"snapshot": snap.path.name, "path": str(snap.path), "kimg": snap.kimg, "fid": value,
                     "num_gen": fake.num, "fingerprint": fingerprint})
        computed += 1
        log(f"{snap.path.name}: kimg {snap.kimg:g}  FID {value:.3f}")
    best = min(rows, key=lambda r: r["fid"])
    report_gen = report_options(gen, report_num_gen)
    fresh = feature_set(GeneratorSource(Path(best["path"]), report_gen), f"{best['snapshot']} (report seeds)",
                        progress=progress, **extraction)
    report_fid = frechet_distance(real.mu, real.sigma, fresh.mu, fresh.sigma)
    log(f"best snapshot {best['snapshot']} (selection FID {best['fid']:.3f} on seeds {gen.seed_range()[0]}.."
        f"{gen.seed_range()[1]}): FID {report_fid:.3f} on fresh seeds {report_gen.seed_range()[0]}.."
        f"{report_gen.seed_range()[1]}")
    conventions = {"selection_seeds": gen.seed_range(), "report_seeds": report_gen.seed_range(),
                   "noise_mode": gen.noise_mode, "num_real": real.num, "num_gen": gen.num_gen,
                   "report_num_gen": report_gen.num_gen, "extractor": real.extractor}
    result = {"run": str(run_dir), "reference": reference, "params": params, **conventions, "snapshots": rows,
              "best": {**{k: best[k] for k in ("snapshot", "path", "kimg")}, "selection_fid": best["fid"],
                       "fid": report_fid, "num_gen": report_gen.num_gen},
              "computed": computed, "reused": len(rows) - computed}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "fid.json", json.dumps(result, indent=2))
    buf = io.StringIO()
    writer = csv.writer(buf)
    # FID here is the selection FID (selection seeds); the best snapshot's report FID is in fid.json
    writer.writerow(["snapshot", "kimg", "fid", "num_gen", "best"])
    for r in rows:
        writer.writerow([r["snapshot"], r["kimg"], f"{r['fid']:.6f}", r["num_gen"], int(r is best)])
    write_text_atomic(out / "fid.csv", buf.getvalue())
    fid_vs_kimg({run.name: [(r["kimg"], r["fid"]) for r in rows]}, out / "fid_vs_kimg.png",
                title=f"FID vs training data ({real.num} real, {gen.num_gen} generated, seeds "
                      f"{gen.seed_range()[0]}..{gen.seed_range()[1]}, noise {gen.noise_mode}, {real.extractor})")
    result["out_dir"] = str(out)
    return result
