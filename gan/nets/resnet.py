"""StyleGAN2's 'resnet' discriminator with a minibatch-standard-deviation epilogue
(Karras et al. 2020; StyleGAN2-ADA `training/networks.py` `DiscriminatorBlock`, `DiscriminatorEpilogue`)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ResNetDConfig
from ..precision import MixedPrecisionModule, compute_region, reduced_from_resolution
from .layers import Conv2dLayer, FullyConnected, channels_at


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_ch, tmp_ch, out_ch, from_rgb: bool, conv_clamp, resolution: int, reduced: bool = False):
        super().__init__()
        self.resolution, self.reduced = resolution, reduced
        self.fromrgb = Conv2dLayer(3, tmp_ch, 1, act="lrelu", conv_clamp=conv_clamp) if from_rgb else None
        self.conv0 = Conv2dLayer(tmp_ch, tmp_ch, 3, act="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_ch, out_ch, 3, act="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_ch, out_ch, 1, bias=False, down=2)

    def forward(self, x, img, dtype=torch.float32, memory_format=torch.contiguous_format):
        if self.fromrgb is not None:
            x = self.fromrgb(img.to(dtype).contiguous(memory_format=memory_format))
        else:
            x = x.to(dtype).contiguous(memory_format=memory_format)
        # Residual sum scaled by sqrt(1/2) on both branches keeps the variance constant.
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class MinibatchStd(nn.Module):
    """Appends the per-group feature std as extra channels, so D can see a lack of variety.

    Works on [N, C, H, W] maps and, as [N, C, 1, 1], on feature vectors (the ViT's class token)."""

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g:
            g = math.gcd(n, g)  # any batch works: fall back to the largest group that divides it
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])           # [n/g, f]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)       # [n, f, h, w]
        return torch.cat([x, y], dim=1)


class ResNetDiscriminator(MixedPrecisionModule):
    def __init__(self, cfg: ResNetDConfig, resolution: int):
        super().__init__()
        ch = lambda r: channels_at(r, cfg.channel_base, cfg.channel_max)  # noqa: E731
        self.reduced_from = reduced_from_resolution(resolution, cfg.num_reduced_res)
        self.blocks = nn.ModuleList()
        for log_r in range(int(math.log2(resolution)), 2, -1):
            r = 2 ** log_r
            self.blocks.append(DiscriminatorBlock(ch(r), ch(r), ch(r // 2), from_rgb=(r == resolution),
                                                  conv_clamp=cfg.conv_clamp, resolution=r,
                                                  reduced=r >= self.reduced_from))
        c4 = ch(4)
        self.mbstd = MinibatchStd(cfg.mbstd_group, cfg.mbstd_channels)
        self.conv = Conv2dLayer(c4 + cfg.mbstd_channels, c4, 3, act="lrelu", conv_clamp=cfg.conv_clamp)
        self.fc = FullyConnected(c4 * 16, c4, act="lrelu")
        self.out = FullyConnected(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = None
        device_type = img.device.type
        for block in self.blocks:
            dtype = self.block_dtype(block.reduced)
            with compute_region(dtype, device_type):
                x = block(x, img, dtype, self.memory_format(dtype))
        with compute_region(torch.float32, device_type):  # the epilogue and the logits: always fp32
            x = self.conv(self.mbstd(x.to(torch.float32, memory_format=torch.contiguous_format)))
            return self.out(self.fc(x.flatten(1))).squeeze(1)
