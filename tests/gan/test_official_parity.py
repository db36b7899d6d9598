"""The upsampling synthesis layer against a reference written from StyleGAN2's definition
(Karras et al. 2020, Eq. 1-3) and StyleGAN2-ADA's `conv2d_resample` semantics, with the same
weights, at every pixel; and the operation count of the official layer."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from gan.config import preset
from gan.nets import build_generator
from gan.nets.generator import SynthesisLayer
from gan.nets.layers import channels_at


def reference_upsampling_layer(layer: SynthesisLayer, x: torch.Tensor, w: torch.Tensor, clamp: float) -> torch.Tensor:
    """StyleGAN2-ADA's SynthesisLayer(up=2) by its definition: the style-modulated, demodulated 3x3
    kernel per sample; 2x upsampling by zero insertion with all padding applied once at the start
    (1 px of conv padding plus the filter's, in upsampled coordinates: 3 before, 2 after); the
    [1, 3, 3, 1] FIR filter with gain 4; a true convolution (kernel flipped, `flip_weight=False`);
    then noise, bias, leaky ReLU(0.2) * sqrt(2) and the clamp."""
    aff = layer.affine
    styles = w @ (aff.weight * aff.weight_gain).t() + aff.bias * aff.bias_gain              # [B, I]
    weight = layer.weight / math.sqrt(layer.weight[0].numel())
    kernel = weight[None] * styles[:, None, :, None, None]                                # [B, O, I, 3, 3]
    kernel = kernel * (kernel.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    n, c, h, wd = x.shape
    up = torch.zeros(n, c, 2 * h, 2 * wd)
    up[:, :, ::2, ::2] = x
    up = F.pad(up, [3, 2, 3, 2])
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    fir = torch.outer(taps, taps) / 64 * 4
    up = F.conv2d(up, fir.flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)          # [n, c, 2h+2, 2w+2]
    out = torch.cat([F.conv2d(up[i:i + 1], kernel[i].flip([2, 3])) for i in range(n)])    # [n, O, 2h, 2w]
    out = out + layer.noise_const * layer.noise_strength
    out = F.leaky_relu(out + layer.bias.reshape(1, -1, 1, 1), 0.2) * math.sqrt(2)
    return out.clamp(-clamp, clamp)


def test_upsampling_layer_equals_the_official_definition_at_every_pixel():
    torch.manual_seed(0)
    layer = SynthesisLayer(in_ch=5, out_ch=7, w_dim=6, resolution=16, up=2, conv_clamp=1.5)
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
        layer.bias.normal_()
        layer.affine.bias.normal_()
    x, w = torch.randn(3, 5, 8, 8), torch.randn(3, 6)
    ours = layer(x, w, noise_mode="const")
    ref = reference_upsampling_layer(layer, x, w, clamp=1.5)
    assert ours.shape == ref.shape == (3, 7, 16, 16)
    assert (ref.abs() == 1.5).any() and (ref.abs() < 1.5).any()    # the clamp is exercised, not everything clipped
    diff = (ours - ref).abs()
    assert diff.max() < 1e-5, f"max |diff| {diff.max():.2e}"
    border = torch.cat([diff[..., 0, :], diff[..., -1, :], diff[..., :, 0], diff[..., :, -1]], -1)
    assert border.max() < 1e-5                                       # the outermost rows and columns too


def _conv_macs(module, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_flop_counts()["Global"][torch.ops.aten.convolution] // 2


def test_upsampling_layer_costs_what_the_official_layer_costs():
    """A stride-2 transposed 3x3 conv at the input resolution plus the 4x4 FIR at the output: 9*I*O
    MACs per input pixel, a quarter of a 3x3 conv at the upsampled resolution."""
    n, cin, cout, h = 2, 16, 8, 8
    layer = SynthesisLayer(cin, cout, w_dim=4, resolution=2 * h, up=2)
    macs = _conv_macs(layer, torch.randn(n, cin, h, h), torch.randn(n, 4), "const")
    assert macs == n * cin * cout * 9 * h * h + n * cout * 16 * (2 * h) ** 2


def official_synthesis_conv_macs(resolution: int, cbase: int, cmax: int) -> int:
    """Per image, StyleGAN2-ADA's 'skip' synthesis network: conv0 (transposed, at the input size) + its
    FIR, conv1, toRGB, and the FIR upsampling of the skip image."""
    total = 0
    for log_r in range(2, int(math.log2(resolution)) + 1):
        r, cout = 2 ** log_r, channels_at(2 ** log_r, cbase, cmax)
        total += cout * cout * 9 * r * r + cout * 3 * r * r
        if r > 4:
            cin = channels_at(r // 2, cbase, cmax)
            total += cin * cout * 9 * (r // 2) ** 2 + cout * 16 * r * r + 3 * 16 * r * r
    return total


def test_generator_at_256px_has_the_official_operation_count():
    cfg = preset("gpu", 256, "resnet")
    with torch.device("meta"):    # shapes only: counts the operations without computing them
        G = build_generator(cfg)
        macs = _conv_macs(G, torch.randn(1, cfg.G.z_dim), 1.0, None, "const")
    expected = official_synthesis_conv_macs(256, cfg.G.channel_base, cfg.G.channel_max)
    assert macs == expected
    assert macs / 1e9 == pytest.approx(15.0, abs=0.1)   # GMAC per 256 px image (FIR, then conv: about 28)
