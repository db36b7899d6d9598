"""Self-describing safetensors checkpoints.

One file per snapshot holds every tensor of the training state under a prefix
(`G.`, `D.`, `G_ema.`, `opt_G.`, `opt_D.`) and, in the safetensors string header, the JSON
run config, the scalar training state and the optimisers' param groups. Loading never
executes code: safetensors + json only.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from harness_base.atomic import write_bytes_atomic

FORMAT = "gan-harness-checkpoint/1"
SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX = "snapshot-", ".safetensors"


def snapshot_name(nimg: int) -> str:
    """Zero-padded kimg with 3 decimals: lexicographic order is training order."""
    return f"{SNAPSHOT_PREFIX}{nimg / 1000:010.3f}{SNAPSHOT_SUFFIX}"


def kimg_from_name(name: str) -> float | None:
    if not (name.startswith(SNAPSHOT_PREFIX) and name.endswith(SNAPSHOT_SUFFIX)):
        return None
    try:
        return float(name[len(SNAPSHOT_PREFIX):-len(SNAPSHOT_SUFFIX)])
    except ValueError:
        return None


def _optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, list]:
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"{prefix}state.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, sd["param_groups"]


def save_checkpoint(path: str | Path, modules: dict, optimizers: dict, config: dict, state: dict) -> None:
    tensors = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value
    groups = {}
    for name, opt in optimizers.items():
        opt_tensors, groups[name] = _optimizer_tensors(opt, f"opt_{name}.")
        tensors.update(opt_tensors)
    # Cloned to CPU: safetensors refuses tensors that share storage.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "config": json.dumps(config), "state": json.dumps(state),
                "param_groups": json.dumps(groups)}
    write_bytes_atomic(path, safetensors_save(tensors, metadata=metadata))


def read_metadata(path: str | Path) -> dict:
    """{'config': dict, 'state': dict, 'param_groups': dict}; ValueError if not one of our checkpoints."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for non-safetensors files
        raise ValueError(f"{path} is not a gan checkpoint (not a safetensors file: {exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gan checkpoint (safetensors metadata has no "
                         f"format={FORMAT!r}; it was not written by `gan train`)")
    return {"config": json.loads(meta["config"]), "state": json.loads(meta["state"]),
            "param_groups": json.loads(meta.get("param_groups", "{}"))}


def load_tensors(path: str | Path, prefix: str, device="cpu") -> dict[str, torch.Tensor]:
    """The tensors under `prefix.` with the prefix stripped (reads only those from disk)."""
    out = {}
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        for key in f.keys():
            if key.startswith(prefix + "."):
                out[key[len(prefix) + 1:]] = f.get_tensor(key)
    return out


def load_module(module: torch.nn.Module, path: str | Path, prefix: str) -> None:
    """Strict load with an error that says which checkpoint and what did not match."""
    tensors = load_tensors(path, prefix)
    if not tensors:
        raise ValueError(f"{path} has no {prefix!r} weights")
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: the {prefix!r} weights do not fit the network built from its "
                         f"config (was the file edited or written by another version?):\n{exc}") from None


def load_optimizer(opt: torch.optim.Optimizer, path: str | Path, name: str, param_groups: list) -> None:
    prefix = f"opt_{name}"
    state: dict[int, dict] = {}
    for key, value in load_tensors(path, prefix).items():
        _, idx, field = key.split(".", 2)
        state.setdefault(int(idx), {})[field] = value
    for group in param_groups:
        if "betas" in group:
            group["betas"] = tuple(float(b) for b in group["betas"])
    opt.load_state_dict({"state": state, "param_groups": param_groups})
