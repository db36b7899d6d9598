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
from harness_base.errors import HarnessError

# Format 2: the upsampling convolution is StyleGAN2-ADA's (transposed conv, then the FIR filter, as a
# true convolution) and the ViT D has minibatch-std. Format 1 files computed the upsampling as FIR,
# then a correlation at the upsampled size; their weights would give other images here, so they are
# refused with a message.
FORMAT = "gan-harness-checkpoint/2"
FORMAT_PREFIX = "gan-harness-checkpoint/"
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


def save_checkpoint(path: str | Path, modules: dict, optimizers: dict, config: dict, state: dict,
                    resolved: dict | None = None) -> None:
    """`resolved`: what the run resolved to on its machine (device, precision per part, parameter
    counts, learning rates; see `gan.train.Trainer.resolved`), stored as the 'resolved' header field."""
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
                "param_groups": json.dumps(groups), "resolved": json.dumps(resolved or {})}
    write_bytes_atomic(path, safetensors_save(tensors, metadata=metadata))


class CheckpointError(HarnessError, ValueError):
    """A file that is not a checkpoint this version of gan can load; the message names the file.
    It is a ValueError too, so code that handles bad values handles it."""


def read_metadata(path: str | Path) -> dict:
    """{'config', 'state', 'param_groups', 'resolved'} dicts; CheckpointError if not one of our checkpoints."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for non-safetensors files
        raise CheckpointError(f"{path} is not a gan checkpoint (not a safetensors file: {exc})") from None
    found = meta.get("format")
    if found != FORMAT:
        if isinstance(found, str) and found.startswith(FORMAT_PREFIX):
            raise CheckpointError(
                f"{path} was written by an older version of gan ({found}; this version reads {FORMAT}). Its "
                "generator computed the upsampling convolution differently, so its weights would give other "
                "images here. Sample it with the gan version that trained it, or train again.")
        raise CheckpointError(f"{path} is not a gan checkpoint (safetensors metadata has no "
                              f"format={FORMAT!r}; it was not written by `gan train`)")
    out = {}
    for key, default in (("config", None), ("state", None), ("param_groups", "{}"), ("resolved", "{}")):
        text = meta.get(key, default)
        if text is None:
            raise CheckpointError(f"{path}: the checkpoint header has no {key!r} field; the file is damaged or "
                                  "was not written by `gan train`")
        try:
            out[key] = json.loads(text)
        except ValueError as exc:
            raise CheckpointError(f"{path}: the checkpoint header field {key!r} is not valid JSON ({exc}); the "
                                  "file was edited or damaged. Use another snapshot of the run.") from None
    return out


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
