"""`evalkit sweep`: every metric per truncation ψ, from one set of real features.

Each ψ generates `num_gen` samples from the same seeds (so ψ is the only thing that changes),
streams them through the extractor (cached per checkpoint, ψ and seeds), and scores them against
the real features computed once. Writes sweep.csv / sweep.md / sweep.json, FID-vs-ψ and
precision-vs-recall plots, and a strip of the same seeds at every ψ.

The default grid is ψ ∈ {0.5, …, 1.0}: the range in which truncation trades diversity for quality
(Karras et al. 2019, Fig. 8; ψ < 0 mirrors the mode across w̄ and is not a setting anyone ships).
Other values, negative or above 1, are swept on request. Every ψ's FID has a bootstrap interval, and
a best ψ is named only where it beats ψ = 1 beyond a paired bootstrap interval of
FID(ψ) − FID(1) (`metrics.paired`: the same reference resample scores both, the shared seeds keep
the latents paired); otherwise the sweep says that no ψ is better than 1 at this N. Choosing the
smallest FID among the significant ψ still selects on these samples (the winner's curse), so the
chosen ψ is then measured again, with ψ = 1, on fresh seeds disjoint from the sweep's
(`report_options`: seed + 10^6): `best_fid` and its interval and the paired ΔFID against ψ = 1 are
those fresh values, and the chosen ψ is called better than 1 only when the fresh paired interval
lies below 0 (`best_psi`); otherwise the sweep says so (`selected_psi` keeps the choice either way).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness_base.atomic import write_text_atomic

from ..errors import SourceError
from ..extract.featureset import FeatureSet, feature_set
from ..sources import GenerationOptions, GeneratorSource, resolve_source
from ..sources.generator import report_options
from .evaluate import ALL_METRICS, compute_metrics
from .plots import labelled_strip, metric_vs_psi, precision_recall
from .tables import write_table

# From above 1 through 0 to negative ψ, the range StyleGAN's truncation figure spans (Karras et al. 2019, Fig. 8)
DEFAULT_PSIS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
SWEEP_COLUMNS = ["psi", "fid", "fid_low", "fid_high", "delta_vs_1", "delta_low", "delta_high", "kid", "kid_std",
                 "precision", "recall", "density", "coverage", "num_gen"]


def no_better_psi_text(num_gen: int, num_real: int) -> str:
    return f"no ψ is better than 1 at this N (N = {num_gen} generated, {num_real} real per ψ)"


def _confirm_on_fresh_seeds(checkpoint, real: FeatureSet, psi: float, gen: GenerationOptions, bootstrap: int,
                            device, progress, log, extraction) -> dict:
    """FID at the chosen ψ and its paired ΔFID against ψ = 1, on seeds disjoint from the sweep's."""
    from ..metrics.paired import paired_fid_difference

    fresh = report_options(gen)
    log(f"re-measuring ψ = {psi:g} and ψ = 1 on fresh seeds {fresh.seed_range()[0]}..{fresh.seed_range()[1]}")
    chosen = feature_set(GeneratorSource(checkpoint, fresh.replace(psi=psi)), f"psi={psi:g} (fresh seeds)",
                         device=device, progress=progress, **extraction)
    one = feature_set(GeneratorSource(checkpoint, fresh.replace(psi=1.0)), "psi=1 (fresh seeds)",
                      device=device, progress=progress, **extraction)
    fid = compute_metrics(real, chosen, ("fid",), device=device, bootstrap=bootstrap, infinity=False)
    d = paired_fid_difference(real.require_features("paired ΔFID"), chosen.features, one.features,
                              num_bootstrap=bootstrap, seed=fresh.seed, a=f"psi={psi:g}", b="psi=1")
    return {"psi": psi, "seeds": fresh.seed_range(), "num_gen": chosen.num, "fid": fid["fid"],
            "fid_low": fid["fid_ci"][0], "fid_high": fid["fid_ci"][1], "delta_vs_1": d.delta_fid,
            "delta_low": d.ci_low, "delta_high": d.ci_high, "covers": d.covers}


def _best_text(selected: dict, fresh: dict) -> str:
    a, b = fresh["seeds"]
    measured = (f"on fresh seeds {a}..{b} (N = {fresh['num_gen']}): FID {fresh['fid']:.3f} "
                f"[{fresh['fid_low']:.3f}, {fresh['fid_high']:.3f}], {fresh['delta_vs_1']:+.3f} against ψ = 1 "
                f"(paired 95% interval {fresh['delta_low']:+.3f} to {fresh['delta_high']:+.3f})")
    if fresh["delta_high"] < 0:
        return f"best ψ = {selected['psi']:g}, chosen on the sweep's seeds and confirmed {measured}"
    return (f"ψ = {selected['psi']:g} had the lowest FID of the ψ that beat ψ = 1 on the sweep's seeds, but "
            f"{measured} no difference from ψ = 1 is detectable at N = {fresh['num_gen']}: no ψ is named better "
            "than 1")


def choose_psi(rows: list[dict]) -> dict | None:
    """The ψ ≠ 1 with the lowest FID among those whose paired interval of FID(ψ) − FID(1) lies below 0."""
    better = [r for r in rows if r["psi"] != 1.0 and r.get("delta_high") is not None and r["delta_high"] < 0]
    return min(better, key=lambda r: r["fid"]) if better else None


def truncation_sweep(checkpoint, data, psis=DEFAULT_PSIS, gen: GenerationOptions | None = None,
                     out_dir: str | Path = "sweep", metrics=ALL_METRICS, strip_seeds: int = 6,
                     real: FeatureSet | None = None, device=None, progress: bool = True, log=print,
                     bootstrap: int = 50, **extraction) -> dict:
    """Every metric per ψ (module doc); `bootstrap` resamples for each ψ's interval and the paired test."""
    from ..metrics.paired import paired_fid_difference

    gen = gen or GenerationOptions(num_gen=10_000)
    psis = tuple(float(p) for p in psis)
    if 1.0 not in psis:  # the baseline every other ψ is compared against
        psis = (1.0,) + psis
    out = Path(out_dir)
    base = resolve_source(checkpoint, gen)
    if not isinstance(base, GeneratorSource):
        raise SourceError(f"{checkpoint} is not a checkpoint or run dir; a truncation sweep samples a generator.")
    real = real or feature_set(data, "real", device=device, progress=progress, **extraction)
    rows, fakes = [], {}
    for psi in psis:
        source = GeneratorSource(base.checkpoint, gen.replace(psi=psi))
        fake = feature_set(source, f"psi={psi:g}", device=device, progress=progress, **extraction)
        fakes[psi] = fake
        # FID∞ is not a sweep column: 15 more FIDs per ψ would only cost time
        result = compute_metrics(real, fake, metrics, device=device, bootstrap=bootstrap if "fid" in metrics else 0,
                                 infinity=False)
        row = {"psi": psi, "num_gen": fake.num, **{k: result[k] for k in SWEEP_COLUMNS[1:-1] if k in result}}
        if "fid_ci" in result:
            row["fid_low"], row["fid_high"] = result["fid_ci"]
        rows.append(row)
    if "fid" in metrics and bootstrap >= 2:
        for row in rows:
            if row["psi"] == 1.0:
                continue
            d = paired_fid_difference(real.require_features("paired ΔFID"), fakes[row["psi"]].features,
                                      fakes[1.0].features, num_bootstrap=bootstrap, seed=gen.seed,
                                      a=f"psi={row['psi']:g}", b="psi=1")
            row.update({"delta_vs_1": d.delta_fid, "delta_low": d.ci_low, "delta_high": d.ci_high})
    for row in rows:
        log("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    selected = choose_psi(rows) if "fid" in metrics else None
    confirmation = None
    if selected is not None:
        confirmation = _confirm_on_fresh_seeds(base.checkpoint, real, selected["psi"], gen, bootstrap, device,
                                               progress, log, extraction)
    best_text = (_best_text(selected, confirmation) if selected
                 else no_better_psi_text(gen.num_gen, real.num) if bootstrap >= 2
                 else "no best ψ named: without bootstrap resamples there is no interval to test it against ψ = 1")
    best = selected if confirmation and confirmation["delta_high"] < 0 else None
    log(best_text)
    out.mkdir(parents=True, exist_ok=True)
    name = base.checkpoint.stem
    columns = [c for c in SWEEP_COLUMNS if any(c in r for r in rows)]
    caption = (f"Truncation sweep of {name} against {real.path}: {real.num} real images, N = {gen.num_gen} "
               f"generated per ψ (seeds {gen.seed_range()[0]}..{gen.seed_range()[1]}, the same at every ψ), noise "
               f"{gen.noise_mode}, {real.extractor} features; FID interval and ΔFID vs ψ = 1 from {bootstrap} "
               "(paired) bootstrap resamples. " + best_text)
    write_table(rows, columns, out / "sweep", title=caption)
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
              "best_psi": best["psi"] if best else None,
              "best_fid": confirmation["fid"] if best else None,
              "selected_psi": selected["psi"] if selected else None, "confirmation": confirmation,
              "best_text": best_text, "seeds": gen.seed_range(), "noise_mode": gen.noise_mode, "num_gen": gen.num_gen,
              "num_real": real.num, "extractor": real.extractor, "bootstrap": bootstrap,
              "params": {"num_gen": gen.num_gen, "seed": gen.seed, "noise_mode": gen.noise_mode,
                         "metrics": list(metrics)}, "files": files, "out_dir": str(out)}
    write_text_atomic(out / "sweep.json", json.dumps(result, indent=2))
    return result
