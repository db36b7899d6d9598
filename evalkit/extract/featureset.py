"""A source's features and statistics, ready for any metric: `feature_set` resolves the source
(folder, zip, statistics file, checkpoint, run dir), gets its cached features in the chosen
feature space, and adds the notes a report must carry (converted modes, mixed sizes, ignored or
skipped files, unverifiable provenance).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SourceError
from ..metrics.fid import check_sample_size, feature_stats
from ..sources import GenerationOptions, GeneratorSource, ImageSource, StatsSource, resolve_source
from .features import source_features
from .registry import extractor_info, get_extractor

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
    extractor: str = "inception"                     # the feature space (evalkit.extract.registry)

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


MODE_NOTES = {"L": "grayscale, replicated", "LA": "grayscale+alpha, alpha dropped",
              "RGBA": "alpha dropped, not composited", "P": "palette, expanded", "PA": "palette+alpha",
              "CMYK": "CMYK, converted", "I;16": "16-bit, clipped", "I": "32-bit integer", "F": "float"}


# Below this side the extractor sees mostly its own upsampling (Inception resizes everything to
# 299 px): the features describe colour and coarse layout, so FID/KID/P-R say little.
TINY_SIDE = 16


def _image_notes(label: str, meta: dict, source, ex) -> list[str]:
    notes = []
    sizes = meta.get("sizes") or {}
    tiny = sorted((k for k in sizes if min(int(v) for v in k.split("x")) < TINY_SIDE),
                  key=lambda k: -sizes[k][0])
    if tiny:
        count = sum(sizes[k][0] for k in tiny)
        notes.append(f"{label}: {count} image(s) are smaller than {TINY_SIDE} px on a side ({', '.join(tiny[:3])}; "
                     f"e.g. {sizes[tiny[0]][1]}). The {ex.name} extractor upsamples them so far that its features "
                     "reflect little more than colour; metrics on them are not comparable with published ones.")
    if len(sizes) > 1:
        listed = "; ".join(f"{k}: {v[0]} (e.g. {v[1]})"
                           for k, v in sorted(sizes.items(), key=lambda kv: -kv[1][0])[:5])
        notes.append(f"{label}: images come in {len(sizes)} sizes ({listed}). Each is resized by the "
                     f"{ex.name} extractor's preprocessing ('{ex.preprocessing}'), but mixed sizes usually mean "
                     "mixed sources; check the folder.")
    modes = {m: c for m, c in (meta.get("modes") or {}).items() if m not in ("RGB", "npy")}
    if modes:
        listed = ", ".join(f"{c} {m} ({MODE_NOTES.get(m, 'converted')})" for m, c in modes.items())
        notes.append(f"{label}: converted to RGB with PIL as clean-fid does: {listed}.")
    ignored = getattr(source, "ignored", [])
    if ignored:
        notes.append(f"{label}: ignored {len(ignored)} non-image file(s): {', '.join(ignored[:5])}"
                     f"{' ...' if len(ignored) > 5 else ''}.")
    upper = [n for n in getattr(source, "names", []) if getattr(source, "kind", None) == "folder"
             and (ext := n.rsplit(".", 1)[-1]) != ext.lower()]
    if upper:   # cleanfid.fid.get_folder_features globs `**/*.{ext}` for lower-case extensions only
        notes.append(f"{label}: {len(upper)} file(s) have upper-case extensions ({', '.join(upper[:3])}"
                     f"{' ...' if len(upper) > 3 else ''}). They are counted here, but clean-fid's case-sensitive "
                     "glob skips them, so its FID on this folder uses fewer images; rename them to lower-case "
                     "extensions for the two numbers to agree.")
    skipped = meta.get("skipped") or []
    if skipped:
        notes.append(f"{label}: left out {len(skipped)} unreadable file(s) (--skip-bad): "
                     f"{', '.join(n for n, _ in skipped[:5])}{' ...' if len(skipped) > 5 else ''}.")
    return notes


def check_stats_provenance(source: StatsSource, label: str, extractor=None) -> list[str]:
    """Refuse statistics computed with another extractor or resize; note what cannot be checked."""
    info = extractor_info(extractor)
    meta, notes = source.meta, []
    if not meta:
        notes.append(f"{label}: statistics file without provenance (e.g. from clean-fid); assuming it was "
                     f"computed with {info['id']} and the '{info['resize']}' preprocessing.")
    else:
        for key, ours in (("extractor", info["id"]), ("resize", info["resize"])):
            if meta.get(key) not in (None, ours):
                raise SourceError(f"{source.path} was computed with {key} '{meta[key]}', but this comparison uses "
                                  f"'{ours}'. Recompute it with `evalkit stats`.")
        if meta.get("weights_sha256") not in (None, info["weights_sha256"]):
            notes.append(f"{label}: computed with weights {meta['weights_sha256'][:12]}…, which differ "
                         f"from the file in use ({info['weights_sha256'][:12]}…) but may hold the same weights.")
    if source.mu.shape[0] != info["dims"]:
        raise SourceError(f"{source.path} has {source.mu.shape[0]}-d statistics; the metrics here use "
                          f"{info['dims']}-d {info['id']} features.")
    if source.features is not None and source.features.shape[1] != info["dims"]:
        raise SourceError(f"{source.path} has {source.features.shape[1]}-d features; expected {info['dims']}.")
    return notes


def _stats_file_set(source: StatsSource, label: str, extractor) -> FeatureSet:
    notes = check_stats_provenance(source, label, extractor)
    n = source.num_images or 0
    return FeatureSet(label, "stats", str(source.path), source.features, source.mu, source.sigma, n,
                      source.meta, notes, extractor=get_extractor(extractor).name)


def feature_set(spec, label: str, gen: GenerationOptions | None = None, *, device=None, batch_size=None,
                num_workers=None, use_cache=True, skip_bad=False, progress=True, extractor=None) -> FeatureSet:
    """Features and statistics of one source in the feature space `extractor` (default Inception)."""
    source = resolve_source(spec, gen)
    ex = get_extractor(extractor)
    if isinstance(source, StatsSource):
        return _stats_file_set(source, label, ex)
    feats = source_features(source, device=device, batch_size=batch_size, num_workers=num_workers,
                            use_cache=use_cache, skip_bad=skip_bad, progress=progress, extractor=ex)
    if feats.num_images < 2:
        check_sample_size(feats.num_images, ex.dims, f"{label} ({source.path})")
    mu, sigma = feature_stats(feats.features)
    meta = {**feats.meta, "skipped": feats.bad}
    return FeatureSet(label, source.kind, str(source.path), feats.features, mu, sigma, feats.num_images, meta,
                      _image_notes(label, meta, source, ex), feats.from_cache, feats.names, ex.name)
