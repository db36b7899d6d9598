"""The feature extractors evalkit can compute metrics in, by name (`--extractor NAME`).

An extractor is a network with pinned weights plus the exact preprocessing its reference
implementation uses. Everything downstream — the cache key, statistics files, FID/KID/P-R-D-C,
C_T — records the extractor's `id`, weight sha256 and preprocessing, so numbers from different
feature spaces are never mixed. A new feature space is one `register(FeatureExtractor(...))`
(torch-fidelity keeps its extractors in the same kind of registry).

Preprocessing has two equivalent forms: `preprocess_cpu` runs in the DataLoader workers on one
uint8 (H, W, 3) image, `preprocess_torch` on a uint8 (N, 3, H, W) batch already on the device;
both return what the network's `forward` takes.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..errors import EvalkitError

DEFAULT_EXTRACTOR = "inception"


@dataclass(frozen=True)
class FeatureExtractor:
    name: str                     # the --extractor value
    id: str                       # recorded with every feature set, e.g. "inception-v3-tf-2015-12-05/pool3"
    dims: int                     # feature dimensions
    weights: str                  # name of its weight file in `evalkit.extract.weights.WEIGHTS`
    preprocessing: str            # recorded with every feature set, e.g. "clean" (clean-fid's resize)
    description: str              # one line for --help and the summaries
    build: Callable               # (weights path, device) -> torch module: preprocessed batch -> (N, dims)
    preprocess_cpu: Callable      # uint8 (H, W, 3) numpy -> float32 (3, S, S) numpy
    preprocess_torch: Callable    # uint8/float (N, 3, H, W) tensor on the device -> float32 (N, 3, S, S)
    batch_cpu: int = 16           # default batch sizes (measured: 16 beats 64 for Inception on a 2-core CPU)
    batch_gpu: int = 128
    fd_name: str = "FID"          # what the Fréchet distance in this feature space is called


EXTRACTORS: dict[str, FeatureExtractor] = {}


def register(extractor: FeatureExtractor) -> FeatureExtractor:
    EXTRACTORS[extractor.name] = extractor
    return extractor


def get_extractor(name: str | FeatureExtractor | None = None) -> FeatureExtractor:
    if isinstance(name, FeatureExtractor):
        return name
    name = name or DEFAULT_EXTRACTOR
    if name not in EXTRACTORS:
        raise EvalkitError(f"unknown feature extractor {name!r}; choose one of {', '.join(sorted(EXTRACTORS))}.")
    return EXTRACTORS[name]


def extractor_info(name: str | FeatureExtractor | None = None) -> dict:
    """What is recorded with features from this extractor: id, weight sha256, dims, preprocessing.
    Raises WeightsError (naming the fix) when its weights are not installed."""
    from .weights import require

    ex = get_extractor(name)
    _, sha = require(ex.weights)
    return {"name": ex.name, "id": ex.id, "weights_sha256": sha, "dims": ex.dims, "resize": ex.preprocessing,
            "fd_name": ex.fd_name}


@lru_cache(maxsize=8)
def _loaded(name: str, device: str, path: str):
    return get_extractor(name).build(Path(path), device)


def load_extractor(name: str | FeatureExtractor | None, device) -> tuple[object, str]:
    """(the network on `device`, its weights' sha256), loaded once per process and device."""
    from .weights import require

    ex = get_extractor(name)
    path, sha = require(ex.weights)
    return _loaded(ex.name, str(device), str(path)), sha


def extractor_names() -> list[str]:
    return sorted(EXTRACTORS)


@dataclass(frozen=True)
class _Lazy:
    """A function of one of the extract modules, imported when first called, so that listing the
    extractors (e.g. for --help) does not load torch. Picklable, for DataLoader workers."""
    module: str
    attr: str

    def __call__(self, *args):
        return getattr(importlib.import_module(self.module, __package__), self.attr)(*args)


# Inception-v3 pool3 as clean-fid computes FID/KID (Parmar et al. 2022).
INCEPTION = register(FeatureExtractor(
    name="inception", id="inception-v3-tf-2015-12-05/pool3", dims=2048, weights="inception", preprocessing="clean",
    description="Inception-v3 (TF 2015-12-05) pool3 with clean-fid's resize: FID/KID as clean-fid computes them",
    build=_Lazy(".inception", "load_inception"), preprocess_cpu=_Lazy(".resize", "resize_pil"),
    preprocess_torch=_Lazy(".resize", "resize_torch")))

# DINOv2 ViT-L/14 CLS features as dgm-eval computes them (Stein et al. 2023): FID in this space is
# FD-DINOv2. Built with timm from a local file (evalkit.extract.dinov2).
DINOV2 = register(FeatureExtractor(
    name="dinov2", id="dinov2-vitl14-lvd142m/cls", dims=1024, weights="dinov2-vitl14", preprocessing="dgm-eval",
    description="DINOv2 ViT-L/14 CLS token with dgm-eval's preprocessing (PIL bicubic to 224, ImageNet "
                "normalisation): FID in this space is FD-DINOv2 (Stein et al. 2023)",
    build=_Lazy(".dinov2", "load_dinov2"), preprocess_cpu=_Lazy(".dinov2", "preprocess_cpu"),
    preprocess_torch=_Lazy(".dinov2", "preprocess_torch"), fd_name="FD-DINOv2"))

# CLIP ViT-L/14@336px unit image embeddings as CMMD computes them (Jayasumana et al. 2024). Built
# with timm from OpenAI's file (evalkit.extract.clip).
CLIP = register(FeatureExtractor(
    name="clip", id="clip-vitl14-336-openai/image-embedding-l2", dims=768, weights="clip-vitl14-336",
    preprocessing="cmmd",
    description="CLIP ViT-L/14@336px unit image embedding with CMMD's preprocessing (centre crop, PIL bicubic "
                "to 336, CLIP normalisation): the feature space of CMMD (Jayasumana et al. 2024)",
    build=_Lazy(".clip", "load_clip"), preprocess_cpu=_Lazy(".clip", "preprocess_cpu"),
    preprocess_torch=_Lazy(".clip", "preprocess_torch"), batch_gpu=64, fd_name="FD-CLIP"))
