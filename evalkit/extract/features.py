"""Features of image and generator sources in any registered feature space, computed once and cached.

Decoding (and on the CPU, the extractor's preprocessing, e.g. clean-fid's resize) runs in
DataLoader workers while the main process runs the network. On a GPU the preprocessing runs on
the device (for Inception `resize_torch`, bit-compatible with PIL) so the CPU only decodes.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from harness_base.device import select_device

from ..errors import BadImagesError
from ..sources import DecodeError, GeneratorSource, ImageSource
from . import distributed
from .cache import CachedFeatures, FeatureCache, cache_key
from .registry import FeatureExtractor, get_extractor, load_extractor


def default_device() -> torch.device:
    return select_device("auto")


def default_batch_size(device: torch.device, extractor: FeatureExtractor | None = None) -> int:
    extractor = get_extractor(extractor)
    return extractor.batch_cpu if device.type == "cpu" else extractor.batch_gpu


def default_workers() -> int:
    # Leave the cores to the network on small machines; decoding is cheap next to Inception on a CPU.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus // 2))


class _DecodeDataset(torch.utils.data.Dataset):
    def __init__(self, source: ImageSource, indices: list[int], preprocess=None):
        self.source = source
        self.indices = indices
        self.preprocess = preprocess   # the extractor's CPU preprocessing, or None to send raw pixels

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        try:
            image, mode = self.source.load(index)
        except DecodeError as err:
            return {"index": index, "error": str(err)}
        item = {"index": index, "mode": mode, "size": (image.shape[1], image.shape[0])}
        item["image"] = self.preprocess(image) if self.preprocess is not None else image
        return item


def _collate(items):
    return items


@dataclass
class Extraction:
    """Features of some items of a source; `order` holds the source index of each feature row."""
    features: np.ndarray
    order: list[int]
    bad: list[tuple[int, str]]                  # (source index, reason)
    modes: Counter = field(default_factory=Counter)
    sizes: dict = field(default_factory=dict)   # "WxH" -> [count, example source index]

    @staticmethod
    def merge(parts: list["Extraction"]) -> "Extraction":
        """Shards from several ranks -> one extraction in source order (`parts` is never empty)."""
        order = [i for p in parts for i in p.order]
        rows = np.concatenate([p.features for p in parts])
        perm = np.argsort(order, kind="stable")
        modes, sizes = Counter(), {}
        for p in parts:
            modes.update(p.modes)
            for key, (count, example) in p.sizes.items():
                entry = sizes.setdefault(key, [0, example])
                entry[0] += count
                entry[1] = min(entry[1], example)
        bad = sorted(b for p in parts for b in p.bad)
        return Extraction(rows[perm], [order[i] for i in perm], bad, modes, sizes)


def _forward(model, batch: torch.Tensor, device: torch.device) -> np.ndarray:
    batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return model(batch).float().cpu().numpy()


@torch.inference_mode()
def features_of_arrays(arrays, device: torch.device | None = None, batch_size: int | None = None,
                       extractor: str | FeatureExtractor | None = None) -> np.ndarray:
    """Features of uint8 image batches (B, H, W, 3) — e.g. streamed from a generator — without files."""
    ex = get_extractor(extractor)
    device = device or default_device()
    batch_size = batch_size or default_batch_size(device, ex)
    model, _ = load_extractor(ex, device)
    out = []
    for batch in arrays:
        batch = np.asarray(batch)
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"expected uint8 (B, H, W, 3) batches, got {batch.dtype} {batch.shape}")
        for start in range(0, len(batch), batch_size):
            chunk = batch[start:start + batch_size]
            if device.type == "cpu":
                prepared = torch.from_numpy(np.stack([ex.preprocess_cpu(img) for img in chunk]))
            else:
                prepared = ex.preprocess_torch(torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2))
            out.append(_forward(model, prepared, device))
    return np.concatenate(out) if out else np.zeros((0, ex.dims), np.float32)


@torch.inference_mode()
def extract_source(source: ImageSource, device: torch.device | None = None, batch_size: int | None = None,
                   num_workers: int | None = None, progress: bool = True, indices: list[int] | None = None,
                   extractor: str | FeatureExtractor | None = None) -> Extraction:
    """Features of `source` (or of the items at `indices`), decoding in worker processes."""
    from tqdm import tqdm

    ex = get_extractor(extractor)
    device = device or default_device()
    batch_size = batch_size or default_batch_size(device, ex)
    indices = list(range(len(source))) if indices is None else indices
    model, _ = load_extractor(ex, device)
    resize_on_cpu = device.type == "cpu"
    workers = default_workers() if num_workers is None else num_workers
    if len(indices) <= batch_size:
        workers = 0  # starting a worker process costs more than decoding one batch
    loader = torch.utils.data.DataLoader(
        _DecodeDataset(source, indices, ex.preprocess_cpu if resize_on_cpu else None), batch_size=batch_size,
        shuffle=False,
        num_workers=workers, collate_fn=_collate, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if workers else None)
    feats, order, bad = [], [], []
    modes: Counter = Counter()
    sizes: dict = {}
    with tqdm(total=len(indices), desc=f"features {source.path.name}", unit="img", disable=not progress) as bar:
        for items in loader:
            good = []
            for item in items:
                if "error" in item:
                    bad.append((item["index"], item["error"]))
                    continue
                good.append(item)
                order.append(item["index"])
                modes[item["mode"]] += 1
                sizes.setdefault("x".join(map(str, item["size"])), [0, item["index"]])[0] += 1
            if good:
                if resize_on_cpu:
                    batch = torch.from_numpy(np.stack([it["image"] for it in good]))
                else:
                    batch = torch.cat([
                        ex.preprocess_torch(torch.from_numpy(it["image"]).to(device).permute(2, 0, 1)[None])
                        for it in good])
                feats.append(_forward(model, batch, device))
            bar.update(len(items))
    features = np.concatenate(feats) if feats else np.zeros((0, ex.dims), np.float32)
    return Extraction(features, order, bad, modes, sizes)


def _weights_sha(ex: FeatureExtractor) -> str:
    from .weights import require

    return require(ex.weights)[1]


def _descriptor(source, fingerprint: str, ex: FeatureExtractor, weights_sha: str) -> dict:
    return {"source_kind": source.kind, "fingerprint": fingerprint, "extractor": ex.id,
            "weights_sha256": weights_sha, "resize": ex.preprocessing}


@dataclass
class SourceFeatures:
    """Features of one image source, with what the report needs to say about it."""
    features: np.ndarray
    names: list[str]
    bad: list[tuple[str, str]]
    meta: dict
    from_cache: bool

    @property
    def num_images(self) -> int:
        return int(self.features.shape[0])


def _extract_generated(source: GeneratorSource, device: torch.device | None, batch_size: int | None,
                       progress: bool, indices: list[int] | None = None,
                       extractor: FeatureExtractor | None = None) -> Extraction:
    from tqdm import tqdm

    device = device or default_device()
    indices = list(range(len(source))) if indices is None else indices
    seeds = [source.seeds[i] for i in indices]
    with tqdm(total=len(seeds), desc=f"generate+features {source.checkpoint.name}", unit="img",
              disable=not progress) as bar:
        def counted():
            for batch in source.batches(device, batch_size or (64 if device.type == "cuda" else 16), seeds=seeds):
                yield batch
                bar.update(len(batch))
        features = features_of_arrays(counted(), device=device, batch_size=batch_size, extractor=extractor)
    return Extraction(features, indices, [])


def _extract_any(source, device, batch_size, num_workers, progress, ex: FeatureExtractor) -> Extraction:
    """One process, or this rank's shard gathered with the others' under torchrun."""
    device = distributed.rank_device(device)
    indices = distributed.shard_indices(len(source))
    if isinstance(source, GeneratorSource):
        part = _extract_generated(source, device, batch_size, progress, indices, ex)
    else:
        part = extract_source(source, device, batch_size, num_workers, progress, indices, ex)
    parts = distributed.gather_shards(part)
    return parts[0] if len(parts) == 1 else Extraction.merge(parts)


def source_features(source: ImageSource | GeneratorSource, device: torch.device | None = None,
                    batch_size: int | None = None, num_workers: int | None = None, use_cache: bool = True,
                    skip_bad: bool = False, progress: bool = True, cache: FeatureCache | None = None,
                    extractor: str | FeatureExtractor | None = None) -> SourceFeatures:
    """Cached features of an image or generator source; unreadable files raise BadImagesError unless
    `skip_bad`. Under torchrun the work is sharded across ranks and every rank gets all features."""
    ex = get_extractor(extractor)
    cache = cache or FeatureCache()
    weights_sha = _weights_sha(ex)
    key = cache_key(_descriptor(source, source.fingerprint(progress, remember=use_cache), ex, weights_sha))
    entry = cache.load(key) if use_cache and distributed.is_main_process() else None
    entry = distributed.broadcast_from_main(entry)
    from_cache = entry is not None
    if entry is None:
        done = _extract_any(source, device, batch_size, num_workers, progress and distributed.is_main_process(), ex)
        names = [source.names[i] for i in done.order] if isinstance(source, ImageSource) else \
            [f"seed{source.seeds[i]:06d}" for i in done.order]
        meta = {"source": str(source.path), "source_kind": source.kind}
        if isinstance(source, GeneratorSource):
            meta.update(source.params())
        else:
            meta.update({"modes": dict(done.modes), "ignored": source.ignored[:20],
                         "num_ignored": len(source.ignored),
                         "sizes": {k: [c, source.names[i]] for k, (c, i) in done.sizes.items()}})
        meta.update({"extractor": ex.id, "weights_sha256": weights_sha, "resize": ex.preprocessing})
        bad = [(source.names[i], reason) for i, reason in done.bad]
        entry = CachedFeatures(done.features, names, bad, meta)
        if use_cache and distributed.is_main_process():
            cache.save(key, entry)
    if entry.bad and not skip_bad:
        raise BadImagesError(str(source.path), entry.bad)
    return SourceFeatures(entry.features, entry.names, entry.bad, entry.meta, from_cache)
