"""Every metric from one feature pass: resolve sources (folders, zips, statistics/feature files,
checkpoints, run dirs), get their cached features once, and compute FID (with an optional
bootstrap interval), KID, precision/recall and density/coverage from them.

Convention: the first source is the real (reference) set, the second the generated one; the
precision/recall direction depends on it (precision = share of generated samples on the real
manifold).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import SourceError
from .features import extractor_info, source_features
from .generated import GeneratorSource, is_checkpoint, is_run_dir, run_snapshots
from .inception import FEATURE_DIM
from .metrics.fid import check_sample_size, feature_stats, frechet_distance
from .sources import ImageSource, StatsSource, open_source

ALL_METRICS = ("fid", "kid", "pr", "dc")


@dataclass
class GenerationOptions:
    """How a checkpoint source is sampled."""
    num_gen: int = 10_000
    psi: float = 1.0
    seed: int = 0
    noise_mode: str = "const"
    truncation_cutoff: int | None = None


@dataclass
class FeatureSet:
    """Features (or only statistics) of one source, ready for any metric."""
    label: str
    kind: str
    path: str
    features: np.ndarray | None
    mu: np.ndarray
    sigma: np.ndarray
    num: int
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    from_cache: bool = False
    names: list[str] = field(default_factory=list)   # one per feature row (file name or seed)

    def require_features(self, metric: str) -> np.ndarray:
        if self.features is None:
            raise SourceError(f"{metric} needs per-image features, but {self.path} holds only mean and covariance. "
                              "Write it with `evalkit stats SRC -o FILE.npz --features`, or pass the images.")
        return self.features

    def summary(self) -> dict:
        out = {"label": self.label, "path": self.path, "kind": self.kind, "num_images": self.num,
               "from_cache": self.from_cache}
        for key in ("num_gen", "psi", "seed", "noise_mode"):
            if key in self.meta:
                out[key] = self.meta[key]
        if self.meta.get("skipped"):
            out["skipped_unreadable"] = [n for n, _ in self.meta["skipped"]]
        return out


def resolve_source(spec: str | Path, gen: GenerationOptions | None = None):
    """A checkpoint file or run dir (its latest snapshot) becomes a generator source; anything
    else goes to `open_source` (folder, zip, .npz)."""
    path = Path(spec)
    gen = gen or GenerationOptions()
    if is_run_dir(path):
        path = run_snapshots(path)[-1].path
    if is_checkpoint(path):
        return GeneratorSource(path, gen.num_gen, gen.psi, gen.seed, gen.noise_mode, gen.truncation_cutoff)
    return open_source(path)


MODE_NOTES = {"L": "grayscale, replicated", "LA": "grayscale+alpha, alpha dropped",
              "RGBA": "alpha dropped, not composited", "P": "palette, expanded", "PA": "palette+alpha",
              "CMYK": "CMYK, converted", "I;16": "16-bit, clipped", "I": "32-bit integer", "F": "float"}


def _image_notes(label: str, meta: dict, source) -> list[str]:
    notes = []
    sizes = meta.get("sizes") or {}
    if len(sizes) > 1:
        listed = "; ".join(f"{k}: {v[0]} (e.g. {v[1]})"
                           for k, v in sorted(sizes.items(), key=lambda kv: -kv[1][0])[:5])
        notes.append(f"{label}: images come in {len(sizes)} sizes ({listed}). Each is resized to 299x299 as "
                     "clean-fid does, but mixed sizes usually mean mixed sources; check the folder.")
    modes = {m: c for m, c in (meta.get("modes") or {}).items() if m not in ("RGB", "npy")}
    if modes:
        listed = ", ".join(f"{c} {m} ({MODE_NOTES.get(m, 'converted')})" for m, c in modes.items())
        notes.append(f"{label}: converted to RGB with PIL as clean-fid does: {listed}.")
    ignored = getattr(source, "ignored", [])
    if ignored:
        notes.append(f"{label}: ignored {len(ignored)} non-image file(s): {', '.join(ignored[:5])}"
                     f"{' ...' if len(ignored) > 5 else ''}.")
    skipped = meta.get("skipped") or []
    if skipped:
        notes.append(f"{label}: left out {len(skipped)} unreadable file(s) (--skip-bad): "
                     f"{', '.join(n for n, _ in skipped[:5])}{' ...' if len(skipped) > 5 else ''}.")
    return notes


def check_stats_provenance(source: StatsSource, label: str) -> list[str]:
    """Refuse statistics computed with another extractor or resize; note what cannot be checked."""
    info = extractor_info()
    meta, notes = source.meta, []
    if not meta:
        notes.append(f"{label}: statistics file without provenance (e.g. from clean-fid); assuming it was "
                     f"computed with {info['id']} and the '{info['resize']}' resize.")
    else:
        for key, ours in (("extractor", info["id"]), ("resize", info["resize"])):
            if meta.get(key) not in (None, ours):
                raise SourceError(f"{source.path} was computed with {key} '{meta[key]}', but this comparison uses "
                                  f"'{ours}'. Recompute it with `evalkit stats`.")
        if meta.get("weights_sha256") not in (None, info["weights_sha256"]):
            notes.append(f"{label}: computed with Inception weights {meta['weights_sha256'][:12]}…, which differ "
                         f"from the file in use ({info['weights_sha256'][:12]}…) but may hold the same weights.")
    if source.mu.shape[0] != info["dims"]:
        raise SourceError(f"{source.path} has {source.mu.shape[0]}-d statistics; the metrics here use "
                          f"{info['dims']}-d Inception pool3 features.")
    if source.features is not None and source.features.shape[1] != info["dims"]:
        raise SourceError(f"{source.path} has {source.features.shape[1]}-d features; expected {info['dims']}.")
    return notes


def _stats_file_set(source: StatsSource, label: str) -> FeatureSet:
    notes = check_stats_provenance(source, label)
    n = source.num_images or 0
    return FeatureSet(label, "stats", str(source.path), source.features, source.mu, source.sigma, n,
                      source.meta, notes)


def feature_set(spec, label: str, gen: GenerationOptions | None = None, *, device=None, batch_size=None,
                num_workers=None, use_cache=True, skip_bad=False, progress=True) -> FeatureSet:
    source = spec if isinstance(spec, (ImageSource, StatsSource, GeneratorSource)) else resolve_source(spec, gen)
    if isinstance(source, StatsSource):
        return _stats_file_set(source, label)
    feats = source_features(source, device=device, batch_size=batch_size, num_workers=num_workers,
                            use_cache=use_cache, skip_bad=skip_bad, progress=progress)
    check_sample_size(feats.num_images, FEATURE_DIM, f"{label} ({source.path})") if feats.num_images < 2 else None
    mu, sigma = feature_stats(feats.features)
    meta = {**feats.meta, "skipped": feats.bad}
    return FeatureSet(label, source.kind, str(source.path), feats.features, mu, sigma, feats.num_images, meta,
                      _image_notes(label, meta, source), feats.from_cache, feats.names)


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
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(ALL_METRICS)}")
    out: dict = {}
    # The k-NN and bootstrap code runs on numpy unless given a GPU: torch on a CPU would only add memory.
    metric_device = device if device is not None and torch.device(device).type == "cuda" else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for fs in (real, fake):
            if fs.num:
                check_sample_size(fs.num, FEATURE_DIM, f"{fs.label} ({fs.path})")
        if "fid" in metrics:
            out["fid"] = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
            if bootstrap:
                from .metrics.bootstrap import fid_bootstrap

                bs = fid_bootstrap(real.require_features("FID bootstrap"), fake.require_features("FID bootstrap"),
                                   num_bootstrap=bootstrap, seed=seed, confidence=confidence, device=metric_device)
                out.update({"fid_ci": list(centred_interval(out["fid"], bs.samples, confidence)),
                            "fid_ci_confidence": confidence, "fid_boot_std": bs.std, "fid_bootstrap": bootstrap,
                            "fid_boot_percentile": [bs.low, bs.high]})
        if "kid" in metrics:
            from .metrics.kid import kid

            res = kid(real.require_features("KID"), fake.require_features("KID"), num_subsets=kid_subsets,
                      max_subset_size=kid_subset_size, seed=seed)
            out.update({"kid": res.mean, "kid_std": res.std, "kid_subsets": res.num_subsets,
                        "kid_subset_size": res.subset_size})
        if "pr" in metrics or "dc" in metrics:
            from .metrics.prdc import prdc

            res = prdc(real.require_features("precision/recall"), fake.require_features("precision/recall"),
                       k_pr=k_pr, k_dc=k_dc, device=metric_device)
            if "pr" in metrics:
                out.update({"precision": res.precision, "recall": res.recall, "k_pr": k_pr})
            if "dc" in metrics:
                out.update({"density": res.density, "coverage": res.coverage, "k_dc": k_dc})
    info = extractor_info()
    out.update({
        "num_real": real.num, "num_fake": fake.num,
        "sources": [real.summary(), fake.summary()],
        "feature_extractor": {"id": info["id"], "weights_sha256": info["weights_sha256"], "dims": info["dims"]},
        "resize": info["resize"],
        "warnings": real.notes + fake.notes + [str(w.message) for w in caught],
        "evalkit_version": __version__,
    })
    return out


def evaluate(real_spec, fake_spec, gen: GenerationOptions | None = None, metrics=ALL_METRICS, *,
             device=None, batch_size=None, num_workers=None, use_cache=True, skip_bad=False, progress=True,
             **metric_options) -> dict:
    """`evalkit metrics REAL FAKE`: features once per source (cached), then every metric."""
    opts = dict(device=device, batch_size=batch_size, num_workers=num_workers, use_cache=use_cache,
                skip_bad=skip_bad, progress=progress)
    real = feature_set(real_spec, "real", gen, **opts)
    fake = feature_set(fake_spec, "generated", gen, **opts)
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
        lines.append(f"FID        {result['fid']:.4f}{ci}")
    if "kid" in result:
        lines.append(f"KID        {result['kid']:.6f} ± {result['kid_std']:.6f}  ({result['kid_subsets']} subsets of "
                     f"{result['kid_subset_size']})")
    if "precision" in result:
        lines.append(f"precision  {result['precision']:.4f}   recall {result['recall']:.4f}   (k={result['k_pr']})")
    if "density" in result:
        lines.append(f"density    {result['density']:.4f}   coverage {result['coverage']:.4f}   (k={result['k_dc']})")
    return "\n".join(lines)
