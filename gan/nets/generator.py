"""StyleGAN2 generator: mapping network (standard or seed-002 variant 4) + 'skip' synthesis network."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import GeneratorConfig
from .layers import FullyConnected, bias_act, channels_at, fir_filter, normalize_2nd_moment, upsample2d


def num_ws_for(resolution: int) -> int:
    """One w per conv layer plus the final toRGB: 2 log2(res) - 2 (toRGB ws are shared, as in SG2)."""
    return 2 * int(math.log2(resolution)) - 2


def ws_indices_by_resolution(resolution: int) -> dict[int, list[int]]:
    """Which w indices each resolution's block reads (4 px: conv1 + toRGB; others: conv0, conv1, toRGB)."""
    out, idx = {}, 0
    for log_r in range(2, int(math.log2(resolution)) + 1):
        r = 2 ** log_r
        num_conv = 1 if r == 4 else 2
        out[r] = list(range(idx, idx + num_conv + 1))
        idx += num_conv
    return out


class MappingNetwork(nn.Module):
    """z -> w with an MLP; every ws entry gets the same w. Tracks w_avg (shape [w_dim])."""

    def __init__(self, cfg: GeneratorConfig, num_ws: int):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.w_avg_beta = cfg.z_dim, cfg.w_dim, num_ws, cfg.w_avg_beta
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.ModuleList(FullyConnected(a, b, act="lrelu", lr_mult=cfg.mapping_lr_mult)
                                    for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        for layer in self.layers:
            x = layer(x)
        return x.unsqueeze(1).repeat(1, self.num_ws, 1)

    def forward(self, z, psi: float = 1.0, truncation_cutoff: int | None = None,
                update_w_avg: bool = False) -> torch.Tensor:
        ws = self.embed(z)
        if update_w_avg:
            self._update_w_avg(ws)
        return truncate(ws, self.w_avg_per_ws(), psi, truncation_cutoff)

    def _update_w_avg(self, ws: torch.Tensor) -> None:
        with torch.no_grad():
            self.w_avg.copy_(ws[:, 0].detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))

    def w_avg_per_ws(self) -> torch.Tensor:
        return self.w_avg.unsqueeze(0).expand(self.num_ws, -1)


class PerResolutionMapping(MappingNetwork):
    """Seed 002's mapping variant 4: one style per resolution level, built as a chain.

    A shared trunk embeds z into h. Level 0's style is FC(h); level i's style is
    FC(concat(style_{i-1}, h)) -- the dense layer sits right after the concatenation, so every
    level has the same width and the parameter count grows linearly with the number of levels.
    Each resolution block reads its own level's style, so w_avg is tracked per level
    (shape [num_levels, w_dim]) and truncation pulls each level towards its own average.
    """

    def __init__(self, cfg: GeneratorConfig, num_ws: int, resolution: int):
        nn.Module.__init__(self)
        self.z_dim, self.w_dim, self.num_ws, self.w_avg_beta = cfg.z_dim, cfg.w_dim, num_ws, cfg.w_avg_beta
        by_res = ws_indices_by_resolution(resolution)
        self.num_levels = len(by_res)
        # ws index -> level: a toRGB w shared with the next block belongs to the lower resolution.
        level_of_ws = [0] * num_ws
        for level, idxs in reversed(list(enumerate(by_res.values()))):
            for i in idxs:
                level_of_ws[i] = level
        self.register_buffer("level_of_ws", torch.tensor(level_of_ws), persistent=False)
        lr = cfg.mapping_lr_mult
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.ModuleList(FullyConnected(a, b, act="lrelu", lr_mult=lr)
                                    for a, b in zip(dims[:-1], dims[1:]))
        trunk_dim = dims[-1]
        self.levels = nn.ModuleList(
            [FullyConnected(trunk_dim, cfg.w_dim, act="lrelu", lr_mult=lr)]
            + [FullyConnected(cfg.w_dim + trunk_dim, cfg.w_dim, act="lrelu", lr_mult=lr)
               for _ in range(self.num_levels - 1)])
        self.register_buffer("w_avg", torch.zeros(self.num_levels, cfg.w_dim))

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        h = normalize_2nd_moment(z)
        for layer in self.layers:
            h = layer(h)
        styles = [self.levels[0](h)]
        for level in self.levels[1:]:
            styles.append(level(torch.cat([styles[-1], h], dim=1)))
        per_level = torch.stack(styles, dim=1)          # [B, levels, w_dim]
        return per_level[:, self.level_of_ws]          # [B, num_ws, w_dim]

    def _update_w_avg(self, ws: torch.Tensor) -> None:
        with torch.no_grad():
            per_level = torch.zeros_like(self.w_avg).index_add_(
                0, self.level_of_ws, ws.detach().float().mean(0))
            counts = torch.bincount(self.level_of_ws, minlength=self.num_levels).unsqueeze(1)
            self.w_avg.copy_((per_level / counts).lerp(self.w_avg, self.w_avg_beta))

    def w_avg_per_ws(self) -> torch.Tensor:
        return self.w_avg[self.level_of_ws]


def truncate(ws: torch.Tensor, w_avg_per_ws: torch.Tensor, psi: float,
             cutoff: int | None = None) -> torch.Tensor:
    """w_avg + psi (w - w_avg) on the first `cutoff` ws (all if None). Any real psi is allowed."""
    if psi == 1:
        return ws
    avg = w_avg_per_ws.to(ws.dtype).unsqueeze(0)
    if cutoff is None:
        return avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = avg[:, :cutoff].lerp(ws[:, :cutoff], psi)
    return ws


def modulated_conv2d(x, weight, styles, demodulate=True, up=1, filt=None, padding=0):
    """StyleGAN2 modulated convolution, in its non-fused form (scale input, shared conv, scale output).

    Equivalent to the per-sample-weight grouped conv but a single ordinary conv, which is faster
    on CPU and for training on GPU.
    """
    b = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    x = x * styles.to(x.dtype).reshape(b, -1, 1, 1)
    if up > 1:
        x = upsample2d(x, filt, up)
    x = F.conv2d(x, weight.to(x.dtype), padding=padding)
    if demodulate:
        w = weight.unsqueeze(0) * styles.reshape(b, 1, -1, 1, 1)        # [B, O, I, k, k]
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()        # [B, O]
        x = x * dcoefs.to(x.dtype).reshape(b, -1, 1, 1)
    return x


class SynthesisLayer(nn.Module):
    def __init__(self, in_ch, out_ch, w_dim, resolution, up=1, conv_clamp=None):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp
        self.affine = FullyConnected(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("filter", fir_filter())
        self.weight_gain = 1 / math.sqrt(in_ch * 9)

    def forward(self, x, w, noise_mode="random", gain=1.0):
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, up=self.up,
                             filt=self.filter, padding=1)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act="lrelu", gain=gain, clamp=clamp)


class ToRGB(nn.Module):
    def __init__(self, in_ch, w_dim, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1 / math.sqrt(in_ch)

    def forward(self, x, w):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const input at 4 px | upsampling conv0), conv1, toRGB added to the upsampled skip image."""

    def __init__(self, in_ch, out_ch, w_dim, resolution, conv_clamp):
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_ch, 4, 4))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_ch, out_ch, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_ch, out_ch, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_ch, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("filter", fir_filter())
        self.num_conv = 1 if resolution == 4 else 2

    def forward(self, x, img, block_ws, noise_mode):
        ws = block_ws.unbind(dim=1)
        if self.conv0 is None:
            x = self.const.to(block_ws.dtype).unsqueeze(0).repeat(block_ws.shape[0], 1, 1, 1)
            x = self.conv1(x, ws[0], noise_mode)
        else:
            x = self.conv0(x, ws[0], noise_mode)
            x = self.conv1(x, ws[1], noise_mode)
        if img is not None:
            img = upsample2d(img, self.filter, 2)
        y = self.torgb(x, ws[self.num_conv]).float()
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.num_ws = num_ws_for(resolution)
        self.blocks = nn.ModuleList()
        for log_r in range(2, int(math.log2(resolution)) + 1):
            r = 2 ** log_r
            in_ch = channels_at(r // 2, cfg.channel_base, cfg.channel_max) if r > 4 else 0
            out_ch = channels_at(r, cfg.channel_base, cfg.channel_max)
            self.blocks.append(SynthesisBlock(in_ch, out_ch, cfg.w_dim, r, cfg.conv_clamp))

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, not {noise_mode!r}")
        x = img = None
        idx = 0
        for block in self.blocks:
            x, img = block(x, img, ws.narrow(1, idx, block.num_conv + 1), noise_mode)
            idx += block.num_conv
        return img


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig, resolution: int):
        super().__init__()
        self.z_dim, self.w_dim, self.resolution = cfg.z_dim, cfg.w_dim, resolution
        self.synthesis = SynthesisNetwork(cfg, resolution)
        self.num_ws = self.synthesis.num_ws
        if cfg.mapping == "per-res":
            self.mapping = PerResolutionMapping(cfg, self.num_ws, resolution)
        else:
            self.mapping = MappingNetwork(cfg, self.num_ws)

    def forward(self, z, psi=1.0, truncation_cutoff=None, noise_mode="random"):
        return self.synthesis(self.mapping(z, psi, truncation_cutoff), noise_mode=noise_mode)


def z_for_seeds(seeds, z_dim: int) -> torch.Tensor:
    """StyleGAN2-ADA convention: z for seed s is np.random.RandomState(s).randn(z_dim)."""
    return torch.from_numpy(np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds])).float()
