"""Sharded feature extraction under `torchrun`: rank r takes items r, r+W, r+2W, ...; the shards
are gathered and put back in source order, so every rank ends with exactly the features one
process would compute. Rank 0 alone writes the cache and output files.

    torchrun --nproc_per_node 4 -m evalkit stats DATA -o data.npz --features

Backend: NCCL when each rank has a GPU, gloo otherwise (CPU, or machines without NCCL).
"""
from __future__ import annotations

import os

import torch


def world():
    """(torch.distributed module, rank, world size) when running under torchrun with >1 process, else None."""
    import torch.distributed as dist

    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        use_cuda = torch.cuda.is_available() and torch.cuda.device_count() > int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if dist.get_world_size() <= 1:
        return None
    return dist, dist.get_rank(), dist.get_world_size()


def is_main_process() -> bool:
    w = world()
    return w is None or w[1] == 0


def rank_device(requested: torch.device | None) -> torch.device | None:
    """Each rank uses its own GPU (LOCAL_RANK) when the request is plain 'cuda'."""
    if requested is not None and requested.type == "cuda" and requested.index is None and world() is not None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return requested


def broadcast_from_main(obj):
    w = world()
    if w is None:
        return obj
    dist, _, _ = w
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_shards(shard):
    """Every rank's `shard` object, as a list indexed by rank, on every rank."""
    w = world()
    if w is None:
        return [shard]
    dist, _, size = w
    out = [None] * size
    dist.all_gather_object(out, shard)
    return out


def shard_indices(n: int) -> list[int]:
    w = world()
    if w is None:
        return list(range(n))
    _, rank, size = w
    return list(range(rank, n, size))
