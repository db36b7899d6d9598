"""Pure-PyTorch building blocks shared by the generator and the ResNet discriminator.

These replace StyleGAN2-ADA's CUDA plugins: `upfirdn2d` is zero-insertion + pad + depthwise conv
with stride, `bias_act` is bias + leaky ReLU * gain + clamp. Nothing here needs compiling, and
everything supports double backward (needed for R1 and path-length regularisation).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


def fir_filter(taps=(1, 3, 3, 1), device=None) -> torch.Tensor:
    """Separable 2-D low-pass filter from 1-D taps, normalised to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32, device=device)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative = crop), FIR-filter, then keep every `down`th pixel.

    pad is (x0, x1, y0, y1). Same semantics as StyleGAN2-ADA's reference `_upfirdn2d_ref`.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(pad[0], 0), max(pad[1], 0), max(pad[2], 0), max(pad[3], 0)])
    x = x[:, :, max(-pad[2], 0): x.shape[2] - max(-pad[3], 0), max(-pad[0], 0): x.shape[3] - max(-pad[1], 0)]
    weight = (f * (gain ** (f.ndim / 2))).flip([0, 1]).to(x.dtype)
    weight = weight[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, groups=c, stride=down)


def upsample2d(x: torch.Tensor, f: torch.Tensor, factor: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    p0 = (fw + factor - 1) // 2
    p1 = (fw - factor) // 2
    return upfirdn2d(x, f, up=factor, pad=(p0, p1, p0, p1), gain=factor ** 2)


def downsample2d(x: torch.Tensor, f: torch.Tensor, factor: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    p0 = (fw - factor + 1) // 2
    p1 = (fw - factor) // 2
    return upfirdn2d(x, f, down=factor, pad=(p0, p1, p0, p1))


def bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """x + b, then leaky ReLU (slope 0.2) scaled by sqrt(2) for 'lrelu', then * gain and clamp."""
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2) * (LRELU_GAIN * gain)
    elif gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class FullyConnected(nn.Module):
    """Linear layer with equalised learning rate: weights ~ N(0, 1/lr_mult^2), scaled at run time."""

    def __init__(self, in_features: int, out_features: int, act: str = "linear",
                 lr_mult: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.act = act
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mult)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_mult / math.sqrt(in_features)
        self.bias_gain = lr_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.act == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.act)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding: int = 0) -> torch.Tensor:
    """Convolution with optional up- or downsampling by the FIR filter `f`, padding `padding` applied
    once, in the coordinates of the upsampled image (StyleGAN2-ADA `conv2d_resample`).

    up > 1: a stride-`up` transposed convolution at the input resolution followed by the filter. The
      kernel is applied as a true convolution there (StyleGAN2-ADA's `flip_weight=False` for up=2),
      and zero padding is applied before filtering, so the border pixels equal the official layer's.
      It costs k*k*Cin*Cout MACs per *input* pixel, a quarter of filtering first and convolving at the
      upsampled resolution.
    down > 1: filter, then a strided valid convolution (1x1 kernels: filter-and-subsample first).
    Otherwise a plain correlation (`F.conv2d`) with `padding`.
    """
    kh, kw = w.shape[2], w.shape[3]
    fw = 0 if f is None else f.shape[-1]
    if up > 1:
        if f is None or kh != kw:
            raise ValueError("upsampling needs a filter and a square kernel")
        p0 = padding + (fw + up - 1) // 2 - (kw - 1)
        p1 = padding + (fw - up) // 2 - (kw - up)
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=up)
        return upfirdn2d(x, f, pad=(p0, p1, p0, p1), gain=up ** 2)
    if down > 1:
        p0 = padding + (fw - down + 1) // 2
        p1 = padding + (fw - down) // 2
        if kw == 1:
            return F.conv2d(upfirdn2d(x, f, down=down, pad=(p0, p1, p0, p1)), w)
        return F.conv2d(upfirdn2d(x, f, pad=(p0, p1, p0, p1)), w, stride=down)
    return F.conv2d(x, w, padding=padding)


class Conv2dLayer(nn.Module):
    """Equalised-lr conv with optional FIR downsampling, bias and activation (discriminator)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True,
                 act: str = "linear", down: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.act, self.down, self.conv_clamp = act, down, conv_clamp
        self.kernel = kernel
        self.register_buffer("filter", fir_filter())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.filter, down=self.down, padding=self.kernel // 2)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.act, gain=gain, clamp=clamp)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)
