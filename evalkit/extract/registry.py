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
    return {"name": ex.name, "id": ex.id, "weights_sha256": sha, "dims": ex.dims, "resize": ex.preprocessing}


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


# Inception-v3 pool3 as clean-fid computes FID/KID (Parmar et al. 2022): the networks and
# preprocessing are imported only when used, so that listing the extractors (e.g. for --help)
# does not load torch.
def _load_inception(path, device):
    from .inception import load_inception

    return load_inception(path, device)


def _clean_resize_cpu(image):
    from .resize import resize_pil

    return resize_pil(image)


def _clean_resize_torch(images):
    from .resize import resize_torch

    return resize_torch(images)


INCEPTION = register(FeatureExtractor(
    name="inception", id="inception-v3-tf-2015-12-05/pool3", dims=2048, weights="inception", preprocessing="clean",
    description="Inception-v3 (TF 2015-12-05) pool3 with clean-fid's resize: FID/KID as clean-fid computes them",
    build=_load_inception, preprocess_cpu=_clean_resize_cpu, preprocess_torch=_clean_resize_torch))
