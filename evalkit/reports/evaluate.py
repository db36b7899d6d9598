"""Every metric between two feature sets from one feature pass (`evalkit metrics REAL FAKE`): FID
(with an optional bootstrap interval for the population FID), FID∞ and KID∞ (Chong & Forsyth 2020),
KID, precision/recall and density/coverage at equal real and generated counts, and on request CMMD
(in the CLIP feature space only). FID computed with `extractor="dinov2"` is FD-DINOv2. Every result
carries `conventions`: N per set for each metric, k, KID subsets and subset size, the extractor, the
seed, how the generated set was sampled, and what each interval covers.

Convention: the first set is the real (reference) set, the second the generated one; the
precision/recall direction depends on it (precision = share of generated samples on the real
manifold).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from harness_base import __version__

from ..extract.featureset import FeatureSet, feature_set
from ..errors import EvalkitError
from ..extract.registry import extractor_info, get_extractor
from ..metrics.fid import check_sample_size, frechet_distance
from ..sources import GenerationOptions

ALL_METRICS = ("fid", "kid", "pr", "dc")      # the default set
METRIC_NAMES = ALL_METRICS + ("cmmd",)         # cmmd only when asked for, and only with the CLIP extractor


def check_metric_space(metrics, extractor) -> None:
    """CMMD's σ = 10 kernel is calibrated for CLIP's unit embeddings (Jayasumana et al. 2024)."""
    ex = get_extractor(extractor)
    if "cmmd" in metrics and ex.name != "clip":
        raise EvalkitError(f"CMMD is defined on CLIP ViT-L/14@336px image embeddings, not on {ex.name} features: "
                           "add `--extractor clip` (and compute the other metrics in a separate run if you want "
                           "them in another feature space).")


def compute_metrics(real: FeatureSet, fake: FeatureSet, metrics=ALL_METRICS, *, bootstrap: int = 0,
                    confidence: float = 0.95, kid_subsets: int = 100, kid_subset_size: int = 1000,
                    k_pr: int = 3, k_dc: int = 5, seed: int = 0, infinity: bool = True,
                    prdc_equal_counts: bool = True, device: torch.device | None = None) -> dict:
    """All requested metrics from two feature sets (pure computation, no I/O).

    With `infinity` (the default), FID∞ and KID∞ (`metrics.fid_inf`) come with FID and KID when both
    sets carry features. P/R/D/C use equal real and generated counts unless `prdc_equal_counts=False`
    (the larger set subsampled, seeded with `seed`); below `SMALL_PRDC_COUNT` per set a warning
    quotes what a perfect model scores at that size. `conventions` records every such choice."""
    from ..metrics.fid import BIAS_NOTE

    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRIC_NAMES)}")
    check_metric_space(metrics, real.extractor)
    info = extractor_info(real.extractor)
    out: dict = {}
    conv: dict = {"extractor": info["id"], "seed": seed, "num_real": real.num, "num_fake": fake.num}
    notes: list[str] = []
    # The k-NN and bootstrap code runs on numpy unless given a GPU: torch on a CPU would only add memory.
    metric_device = device if device is not None and torch.device(device).type == "cuda" else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for fs in (real, fake):
            if fs.num:
                check_sample_size(fs.num, real.mu.shape[0], f"{fs.label} ({fs.path})")
        if "fid" in metrics:
            out["fid"] = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
            conv["fid"] = {"num_real": real.num, "num_fake": fake.num, "bias": BIAS_NOTE}
            if bootstrap:
                from ..metrics.bootstrap import fid_bootstrap
                from ..metrics.fid import SmallSampleWarning

                warnings.simplefilter("ignore", SmallSampleWarning)  # said once above, per source
                bs = fid_bootstrap(real.require_features("FID bootstrap"), fake.require_features("FID bootstrap"),
                                   num_bootstrap=bootstrap, seed=seed, confidence=confidence, device=metric_device)
                out.update({"fid_ci": [bs.low, bs.high], "fid_ci_confidence": confidence,
                            "fid_ci_covers": bs.covers, "fid_boot_std": bs.std, "fid_bootstrap": bootstrap})
                conv["fid"].update({"bootstrap": bootstrap, "confidence": confidence, "interval": bs.covers})
            if infinity:
                inf = _extrapolated("fid", real, fake, seed, metric_device, notes)
                if inf is not None:
                    out.update({"fid_inf": inf.value, "fid_inf_slope": inf.slope, "fid_inf_residual": inf.residual,
                                "fid_inf_stderr": inf.stderr, "fid_inf_covers": inf.covers})
                    if "fid_boot_std" in out:
                        from ..metrics.fid_inf import total_error

                        out["fid_inf_error"] = total_error(inf.stderr, out["fid_boot_std"])
                    conv["fid_inf"] = {"ns": inf.ns, "n_reference": inf.n_reference, "values": inf.values,
                                       "reference": "subsample", "seed": seed}
        if "kid" in metrics:
            from ..metrics.kid import kid

            res = kid(real.require_features("KID"), fake.require_features("KID"), num_subsets=kid_subsets,
                      max_subset_size=kid_subset_size, seed=seed)
            out.update({"kid": res.mean, "kid_std": res.std, "kid_subsets": res.num_subsets,
                        "kid_subset_size": res.subset_size})
            conv["kid"] = {"num_real": real.num, "num_fake": fake.num, "subsets": res.num_subsets,
                           "subset_size": res.subset_size, "seed": seed}
            if infinity:
                inf = _extrapolated("kid", real, fake, seed, metric_device, notes, num_subsets=kid_subsets,
                                    max_subset_size=kid_subset_size)
                if inf is not None:
                    out.update({"kid_inf": inf.value, "kid_inf_slope": inf.slope, "kid_inf_residual": inf.residual,
                                "kid_inf_stderr": inf.stderr, "kid_inf_covers": inf.covers})
                    conv["kid_inf"] = {"ns": inf.ns, "n_reference": inf.n_reference, "reference": "subsample",
                                       "seed": seed}
        if "pr" in metrics or "dc" in metrics:
            out_prdc, conv["prdc"] = _prdc_equal(real, fake, metrics, k_pr, k_dc, seed, prdc_equal_counts,
                                                 metric_device, notes)
            out.update(out_prdc)
        if "cmmd" in metrics:
            from ..metrics.cmmd import cmmd

            out["cmmd"] = cmmd(real.require_features("CMMD"), fake.require_features("CMMD"), device=metric_device)
    gen = {key: fake.meta[key] for key in ("num_gen", "psi", "seed", "noise_mode") if key in fake.meta}
    if gen:
        conv["generation"] = gen
    out.update({
        "num_real": real.num, "num_fake": fake.num,
        "sources": [real.summary(), fake.summary()],
        "feature_extractor": {"id": info["id"], "weights_sha256": info["weights_sha256"], "dims": info["dims"],
                              "name": info["name"], "fd_name": info["fd_name"]},
        "resize": info["resize"],
        "conventions": conv,
        "warnings": list(dict.fromkeys(real.notes + fake.notes + [str(w.message) for w in caught] + notes)),
        "evalkit_version": __version__,
    })
    return out


def _extrapolated(metric, real, fake, seed, device, notes, **kid_options):
    """FID∞ or KID∞ from the cached features, or None (with a note) when they cannot be computed."""
    from ..metrics.fid_inf import fid_infinity, kid_infinity

    name = "FID∞" if metric == "fid" else "KID∞"
    if not (real.features is not None and fake.features is not None):
        notes.append(f"{name} needs the features of both sets (a statistics file without them has only mean and "
                     "covariance); pass a folder, or an .npz written with `evalkit stats --features`.")
        return None
    if min(len(real.features), len(fake.features)) < 8:
        notes.append(f"{name} not computed: extrapolating in 1/N needs at least 8 images per set.")
        return None
    if metric == "fid":
        res = fid_infinity(real.features, fake.features, seed=seed, device=device)
        dims = real.features.shape[1]
        if res.ns[0] < dims or min(res.n_reference) < dims:
            notes.append(f"FID∞ was fitted on subsets down to {min(res.ns[0], min(res.n_reference))} images, fewer "
                         f"than the {dims} feature dimensions: there FID is not linear in 1/N and FID∞ stays biased "
                         "upward (on Gaussians with 1.25 × dims images per set it came out 3.4 × the population FID; "
                         f"from 2 × dims it was unbiased). Use at least {2 * dims} images per set.")
        return res
    return kid_infinity(real.features, fake.features, seed=seed, device=device, **kid_options)


def _prdc_equal(real, fake, metrics, k_pr, k_dc, seed, equal, device, notes):
    """P/R/D/C at equal counts (the larger set subsampled), the warning below SMALL_PRDC_COUNT, and the
    conventions used."""
    from ..metrics.prdc import (SMALL_PRDC_COUNT, equal_count_indices, perfect_model_baseline, prdc,
                                small_count_warning)

    xr, xf = real.require_features("precision/recall"), fake.require_features("precision/recall")
    note = ""
    conv = {"k_pr": k_pr, "k_dc": k_dc, "equal_counts": bool(equal), "seed": seed}
    if equal and len(xr) != len(xf):
        ir, jf = equal_count_indices(len(xr), len(xf), seed)
        which = "real" if ir is not None else "generated"
        big = len(xr) if ir is not None else len(xf)
        xr = xr if ir is None else xr[ir]
        xf = xf if jf is None else xf[jf]
        note = f" (the {which} set subsampled from {big} to equal counts, seed {seed})"
        conv["subsampled"] = {"set": which, "from": big, "to": len(xr)}
    res = prdc(xr, xf, k_pr=k_pr, k_dc=k_dc, device=device)
    conv.update({"num_real": res.num_real, "num_fake": res.num_fake})
    out = {}
    if "pr" in metrics:
        out.update({"precision": res.precision, "recall": res.recall, "k_pr": k_pr})
    if "dc" in metrics:
        out.update({"density": res.density, "coverage": res.coverage, "k_dc": k_dc})
    out.update({"prdc_num_real": res.num_real, "prdc_num_fake": res.num_fake})
    n_small = min(res.num_real, res.num_fake)
    if n_small < SMALL_PRDC_COUNT:
        full_real = real.require_features("precision/recall")
        if len(full_real) // 2 > max(k_pr, k_dc):
            base = perfect_model_baseline(full_real, n_small, k_pr, k_dc, seed, device=device)
            notes.append(small_count_warning(res.num_real, res.num_fake, base, note))
            out["prdc_perfect_model"] = {"precision": base.precision, "recall": base.recall,
                                         "density": base.density, "coverage": base.coverage,
                                         "num_per_set": base.num_real}
            conv["perfect_model"] = out["prdc_perfect_model"]
        else:
            notes.append(f"precision/recall/density/coverage come from {n_small} samples per set, far fewer than "
                         f"{SMALL_PRDC_COUNT}: at this size they say more about the sample count than the model.")
    return out, conv


def evaluate(real_spec, fake_spec, gen: GenerationOptions | None = None, metrics=ALL_METRICS, *,
             device=None, batch_size=None, num_workers=None, use_cache=True, skip_bad=False, progress=True,
             extractor=None, **metric_options) -> dict:
    """`evalkit metrics REAL FAKE`: features once per source (cached), then every metric."""
    check_metric_space(metrics, extractor)   # before any feature is computed
    opts = dict(device=device, batch_size=batch_size, num_workers=num_workers, use_cache=use_cache,
                skip_bad=skip_bad, progress=progress)
    real = feature_set(real_spec, "real", gen, extractor=extractor, **opts)
    fake = feature_set(fake_spec, "generated", gen, extractor=extractor, **opts)
    return compute_metrics(real, fake, metrics, device=device, **metric_options)


def format_metrics(result: dict) -> str:
    """A short human-readable table of a metrics result, with its conventions and the intervals' labels."""
    lines = [f"real: {result['sources'][0]['path']} ({result['num_real']} images)",
             f"generated: {result['sources'][1]['path']} ({result['num_fake']} images)"]
    notes = []
    name = result.get("feature_extractor", {}).get("fd_name", "FID")   # FD-DINOv2 with --extractor dinov2
    if "fid" in result:
        ci = ""
        if "fid_ci" in result:
            lo, hi = result["fid_ci"]
            ci = f"  [{lo:.3f}, {hi:.3f}]¹"
            notes.append(f"¹ {result['fid_ci_covers']}")
        lines.append(f"{name:<10} {result['fid']:.4f}{ci}  (N = {result['num_fake']} generated, "
                     f"{result['num_real']} reference)")
    if "fid_inf" in result:
        err = f" ± {result['fid_inf_error']:.3f} (standard error)" if "fid_inf_error" in result else ""
        lines.append(f"{name + '∞':<10} {result['fid_inf']:.4f}{err}  (fit residual {result['fid_inf_residual']:.3g}, "
                     f"slope {result['fid_inf_slope']:.4g}/N)²")
        notes.append(f"² {result['fid_inf_covers']}")
    if "kid" in result:
        lines.append(f"KID        {result['kid']:.6f} ± {result['kid_std']:.6f}  ({result['kid_subsets']} subsets of "
                     f"{result['kid_subset_size']})")
    if "kid_inf" in result:
        lines.append(f"KID∞       {result['kid_inf']:.6f}  (fit residual {result['kid_inf_residual']:.2g}; KID is "
                     "unbiased, so KID∞ should agree with KID)")
    counts = (f", N = {result['prdc_num_real']} real / {result['prdc_num_fake']} generated"
              if "prdc_num_real" in result else "")
    if "precision" in result:
        lines.append(f"precision  {result['precision']:.4f}   recall {result['recall']:.4f}   "
                     f"(k={result['k_pr']}{counts})")
    if "density" in result:
        lines.append(f"density    {result['density']:.4f}   coverage {result['coverage']:.4f}   "
                     f"(k={result['k_dc']}{counts})")
    if "prdc_perfect_model" in result:
        p = result["prdc_perfect_model"]
        lines.append(f"  a perfect model at {p['num_per_set']} per set: precision {p['precision']:.4f}, recall "
                     f"{p['recall']:.4f}, density {p['density']:.4f}, coverage {p['coverage']:.4f}")
    if "cmmd" in result:
        lines.append(f"CMMD       {result['cmmd']:.4f}   (RBF kernel σ = 10, ×1000, biased MMD² as the CMMD reference)")
    conv = result.get("conventions", {})
    if conv:
        gen = dict(conv.get("generation", {}))
        if "seed" in gen and "num_gen" in gen:  # seeds S … S+N−1 (the StyleGAN2-ADA convention)
            first = gen.pop("seed")
            gen = {"seeds": f"{first}…{first + gen['num_gen'] - 1}", **gen}
        gen_text = "; generated with " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in gen.items()) if gen else ""
        lines.append(f"conventions: extractor {conv['extractor']}, metric seed {conv['seed']}{gen_text}")
    return "\n".join(lines + notes)
