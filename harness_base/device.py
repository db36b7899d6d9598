"""One rule for `--device auto|cpu|cuda|cuda:N` in every command, and for torchrun's LOCAL_RANK.

`resolve_device` is pure: the CUDA facts are passed in, so every combination is unit-tested on a
machine without a GPU. `select_device` asks torch for those facts and calls it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import HarnessError, UsageError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_CUDA = re.compile(r"^cuda(?::(\d+))?$")


class DeviceUnavailable(HarnessError):
    """A GPU was asked for that this machine cannot provide."""


@dataclass(frozen=True)
class CudaFacts:
    available: bool          # torch.cuda.is_available()
    device_count: int        # torch.cuda.device_count()
    local_rank: int | None   # torchrun's LOCAL_RANK, None outside torchrun
    world_size: int = 1      # torchrun's WORLD_SIZE


def parse_device_spec(spec: str | None) -> str:
    """Normalise a --device value ('' and None mean auto); UsageError for anything else."""
    text = (spec or "auto").strip().lower()
    if text in ("auto", "cpu") or _CUDA.match(text):
        return text
    raise UsageError(f"--device {spec!r} is not a device; use {DEVICE_CHOICES}.")


def resolve_device(spec: str | None, facts: CudaFacts) -> str:
    """'cpu' or an indexed 'cuda:N' for `spec` under `facts`.

    auto picks the GPU when CUDA is usable, else the CPU; 'cuda' means this process's GPU — the
    first one, or under torchrun the one named by LOCAL_RANK (one process per GPU); 'cuda:N' is
    taken as given outside torchrun. The index is always explicit because
    `torch.cuda.set_device` refuses an unindexed device.
    """
    text = parse_device_spec(spec)
    if text == "cpu":
        return "cpu"
    if text == "auto":
        if not facts.available or facts.device_count < 1:
            return "cpu"
        text = "cuda"
    if not facts.available or facts.device_count < 1:
        raise DeviceUnavailable(
            f"--device {spec} was asked for, but CUDA is not usable here (no NVIDIA driver or GPU, or a CPU-only "
            "build of torch). Run with --device cpu (or auto), or on a machine with a GPU.")
    match = _CUDA.match(text)
    explicit = match.group(1)
    if facts.local_rank is not None and facts.world_size > 1:
        if explicit is not None:
            raise UsageError(f"--device {spec} names one GPU, but torchrun starts {facts.world_size} processes, one "
                             "per GPU; pass --device cuda (or auto) and each process takes its LOCAL_RANK's GPU.")
        index = facts.local_rank
    else:
        index = int(explicit) if explicit is not None else (facts.local_rank or 0)
    if index >= facts.device_count:
        raise DeviceUnavailable(f"--device {spec} needs GPU {index}, but this machine has {facts.device_count} "
                                f"(cuda:0 to cuda:{facts.device_count - 1}).")
    return f"cuda:{index}"


def cuda_facts() -> CudaFacts:
    import torch

    available = torch.cuda.is_available()
    local = os.environ.get("LOCAL_RANK")
    return CudaFacts(available=available, device_count=torch.cuda.device_count() if available else 0,
                     local_rank=int(local) if local is not None else None,
                     world_size=int(os.environ.get("WORLD_SIZE", "1")))


def select_device(spec: str | None = "auto"):
    """The torch.device for a --device value on this machine (see `resolve_device`)."""
    import torch

    return torch.device(resolve_device(spec, cuda_facts()))
