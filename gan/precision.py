"""Which arithmetic each part of training uses, following StyleGAN2-ADA (Karras et al. 2020,
`training/networks.py`: `num_fp16_res=4`, `conv_clamp=256`).

Reduced precision is used only where it pays and is safe: the highest-resolution blocks of G and
of the ResNet D (`num_fp16_res` of them) and the transformer blocks of the ViT D. Everything whose
numbers are small but sensitive stays in fp32: the mapping network, the low-resolution blocks, the
D epilogue (minibatch-std, the last conv and fully connected layers, the logits), the augmentation
(`affine_grid` / `grid_sample` / its filters: in bf16 they misplace sample points by up to 0.76 px
at 256 px), R1 and path-length regularisation.

The reduced type is bf16 where the GPU computes it natively (Ampere and later;
`torch.cuda.is_bf16_supported(including_emulation=False)`), else fp16 with dynamic loss scaling
(`torch.amp.GradScaler`); on the CPU, fp32 unless bf16 is asked for explicitly.

A block runs reduced by casting its input to the network's `reduced_dtype` (the layers cast their
weights to the input's type) inside `compute_region`, which also covers modules with fp32
parameters (the ViT's linears) through autocast. fp32 parts run in `compute_region(float32)`,
which switches any surrounding autocast off, so they stay fp32 whatever the caller does.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from harness_base.errors import UsageError

from .config import PRECISIONS

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
NAMES = {v: k for k, v in DTYPES.items()}


def resolve_precision(requested: str, device_type: str, native_bf16: bool) -> str:
    """'bf16', 'fp16' or 'fp32' for `requested` on a device (pure: the GPU's bf16 support is given).

    auto: bf16 on a GPU with native bf16, fp16 (with loss scaling) on older GPUs, fp32 on the CPU.
    """
    if requested not in PRECISIONS:
        raise UsageError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return "fp32"
    if device_type != "cuda":
        if requested == "fp16":
            raise UsageError("fp16 training needs a GPU (the CPU has no fast fp16 convolutions); use --precision "
                             "bf16 or fp32 on the CPU")
        return "fp32" if requested == "auto" else requested
    if requested == "auto":
        return "bf16" if native_bf16 else "fp16"
    if requested == "bf16" and not native_bf16:
        raise UsageError("this GPU has no native bf16 arithmetic (torch would emulate it, slowly); use --precision "
                         "fp16 (with loss scaling) or --fp32")
    return requested


def native_bf16(device: torch.device) -> bool:
    """Does this device compute bf16 natively (not through emulation)?"""
    if device.type != "cuda":
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # an older torch without including_emulation: bf16 arithmetic came with compute capability 8.0
        return torch.cuda.get_device_capability(device)[0] >= 8


def compute_region(dtype: torch.dtype, device_type: str):
    """Run the enclosed ops in `dtype`: autocast to it, or (fp32) with any outer autocast switched off.
    Devices without autocast (the meta device that counts operations) run as they are."""
    if not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    if dtype == torch.float32:
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=dtype)


def reduced_from_resolution(resolution: int, num_reduced_res: int) -> int:
    """The lowest block resolution that runs in reduced precision (StyleGAN2-ADA's `fp16_resolution`):
    the `num_reduced_res` highest resolutions, never below 8 px."""
    log2 = resolution.bit_length() - 1
    return max(2 ** (log2 + 1 - num_reduced_res), 8) if num_reduced_res > 0 else resolution * 2


class MixedPrecisionModule(nn.Module):
    """A network whose reduced-precision blocks read `reduced_dtype` (fp32 until `set_reduced_dtype`)."""

    reduced_dtype: torch.dtype = torch.float32
    channels_last: bool = False

    def set_reduced_dtype(self, dtype: torch.dtype) -> None:
        self.reduced_dtype = dtype

    def block_dtype(self, reduced: bool) -> torch.dtype:
        return self.reduced_dtype if reduced else torch.float32

    def memory_format(self, dtype: torch.dtype):
        """channels_last for reduced blocks when enabled (as StyleGAN2-ADA's `fp16_channels_last`)."""
        return torch.channels_last if self.channels_last and dtype != torch.float32 else torch.contiguous_format


@contextlib.contextmanager
def full_precision(*modules: MixedPrecisionModule):
    """Run the modules entirely in fp32 inside the block (R1 and path length, as the regularisers'
    second-order gradients are the most sensitive numbers of a step)."""
    saved = [m.reduced_dtype for m in modules]
    try:
        for m in modules:
            m.reduced_dtype = torch.float32
        yield
    finally:
        for m, dtype in zip(modules, saved):
            m.reduced_dtype = dtype


def nan_to_num_grads(module: nn.Module) -> None:
    """Replace NaN gradients by 0 and clamp infinities to ±1e5, in place, before the optimiser step
    (StyleGAN2-ADA `training_loop.py`), so one bad minibatch does not end a run."""
    for p in module.parameters():
        if p.grad is not None:
            torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 in fp32 matmuls and convolutions on Ampere and later GPUs. Off by
    default, as in StyleGAN2-ADA (`allow_tf32 = False`): TF32 keeps 10 mantissa bits, so fp32 parts
    would no longer be fp32. torch's cuDNN default is TF32 on, so it is set either way."""
    mode = "tf32" if enabled else "ieee"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
