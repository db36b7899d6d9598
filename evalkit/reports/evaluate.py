"""Every metric between two feature sets from one feature pass (`evalkit metrics REAL FAKE`): FID
(with an optional bootstrap interval), KID, precision/recall and density/coverage, and on request
CMMD (in the CLIP feature space only). FID computed with `extractor="dinov2"` is FD-DINOv2.

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


def centred_interval(estimate: float, samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of bootstrap FIDs, re-centred on the full-sample FID.

    A resample drawn with replacement holds only ~63% distinct images, and FID is biased upward as
    the number of distinct images falls, so raw bootstrap FIDs sit above the estimate (often the
    whole percentile interval does, at small N). Their spread measures the sampling variability;
    their location is an artefact. Shifting the draws by their mean bias (mean − estimate) keeps
    the spread and puts the interval around the number being reported.
    """
    samples = np.asarray(samples, np.float64)
    shifted = samples - (samples.mean() - estimate)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(shifted, [alpha, 1 - alpha])
    return float(low), float(high)


def compute_metrics(real: FeatureSet, fake: FeatureSet, metrics=ALL_METRICS, *, bootstrap: int = 0,
                    confidence: float = 0.95, kid_subsets: int = 100, kid_subset_size: int = 1000,
                    k_pr: int = 3, k_dc: int = 5, seed: int = 0, device: torch.device | None = None) -> dict:
    """All requested metrics from two feature sets (pure computation, no I/O)."""
    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRIC_NAMES)}")
    check_metric_space(metrics, real.extractor)
    out: dict = {}
    # The k-NN and bootstrap code runs on numpy unless given a GPU: torch on a CPU would only add memory.
    metric_device = device if device is not None and torch.device(device).type == "cuda" else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for fs in (real, fake):
            if fs.num:
                check_sample_size(fs.num, real.mu.shape[0], f"{fs.label} ({fs.path})")
        if "fid" in metrics:
            out["fid"] = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
            if bootstrap:
                from ..metrics.bootstrap import fid_bootstrap

                bs = fid_bootstrap(real.require_features("FID bootstrap"), fake.require_features("FID bootstrap"),
                                   num_bootstrap=bootstrap, seed=seed, confidence=confidence, device=metric_device)
                out.update({"fid_ci": list(centred_interval(out["fid"], bs.samples, confidence)),
                            "fid_ci_confidence": confidence, "fid_boot_std": bs.std, "fid_bootstrap": bootstrap,
                            "fid_boot_percentile": [bs.low, bs.high]})
        if "kid" in metrics:
            from ..metrics.kid import kid

            res = kid(real.require_features("KID"), fake.require_features("KID"), num_subsets=kid_subsets,
                      max_subset_size=kid_subset_size, seed=seed)
            out.update({"kid": res.mean, "kid_std": res.std, "kid_subsets": res.num_subsets,
                        "kid_subset_size": res.subset_size})
        if "pr" in metrics or "dc" in metrics:
            from ..metrics.prdc import prdc

            res = prdc(real.require_features("precision/recall"), fake.require_features("precision/recall"),
                       k_pr=k_pr, k_dc=k_dc, device=metric_device)
            if "pr" in metrics:
                out.update({"precision": res.precision, "recall": res.recall, "k_pr": k_pr})
            if "dc" in metrics:
                out.update({"density": res.density, "coverage": res.coverage, "k_dc": k_dc})
        if "cmmd" in metrics:
            from ..metrics.cmmd import cmmd

            out["cmmd"] = cmmd(real.require_features("CMMD"), fake.require_features("CMMD"), device=metric_device)
    info = extractor_info(real.extractor)
    out.update({
        "num_real": real.num, "num_fake": fake.num,
        "sources": [real.summary(), fake.summary()],
        "feature_extractor": {"id": info["id"], "weights_sha256": info["weights_sha256"], "dims": info["dims"],
                              "name": info["name"], "fd_name": info["fd_name"]},
        "resize": info["resize"],
        "warnings": real.notes + fake.notes + [str(w.message) for w in caught],
        "evalkit_version": __version__,
    })
    return out


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
    """A short human-readable table of a metrics result."""
    lines = [f"real: {result['sources'][0]['path']} ({result['num_real']} images)",
             f"generated: {result['sources'][1]['path']} ({result['num_fake']} images)"]
    if "fid" in result:
        ci = ""
        if "fid_ci" in result:
            lo, hi = result["fid_ci"]
            ci = f"  [{result['fid_ci_confidence']:.0%} CI {lo:.3f}, {hi:.3f}; {result['fid_bootstrap']} bootstraps]"
        name = result.get("feature_extractor", {}).get("fd_name", "FID")   # FD-DINOv2 with --extractor dinov2
        lines.append(f"{name:<10} {result['fid']:.4f}{ci}")
    if "kid" in result:
        lines.append(f"KID        {result['kid']:.6f} ± {result['kid_std']:.6f}  ({result['kid_subsets']} subsets of "
                     f"{result['kid_subset_size']})")
    if "precision" in result:
        lines.append(f"precision  {result['precision']:.4f}   recall {result['recall']:.4f}   (k={result['k_pr']})")
    if "density" in result:
        lines.append(f"density    {result['density']:.4f}   coverage {result['coverage']:.4f}   (k={result['k_dc']})")
    if "cmmd" in result:
        lines.append(f"CMMD       {result['cmmd']:.4f}   (RBF kernel σ = 10, ×1000, biased MMD² as the CMMD reference)")
    return "\n".join(lines)
