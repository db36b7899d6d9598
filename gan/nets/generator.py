"""StyleGAN2 generator: mapping network (the standard MLP, or one style per resolution level) and the
'skip' synthesis network of StyleGAN2 (Karras et al. 2020), as in StyleGAN2-ADA `training/networks.py`."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import GeneratorConfig
from ..precision import MixedPrecisionModule, compute_region, reduced_from_resolution
from .layers import (FullyConnected, bias_act, channels_at, conv2d_resample, fir_filter, normalize_2nd_moment,
                     upsample2d)


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
    """z -> w with an MLP; every ws entry gets the same w. Tracks w_avg (shape [w_dim]).

    Always fp32 (StyleGAN2-ADA keeps the mapping network out of mixed precision): its output
    steers every layer, and w_avg and truncation need its full resolution."""

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
        check_psi(psi)
        with compute_region(torch.float32, z.device.type):
            ws = self.embed(z.float())
        if update_w_avg:
            self._update_w_avg(ws)
        return truncate(ws, self.w_avg_per_ws(), psi, truncation_cutoff)

    def _update_w_avg(self, ws: torch.Tensor) -> None:
        with torch.no_grad():
            self.w_avg.copy_(ws[:, 0].detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))

    def w_avg_per_ws(self) -> torch.Tensor:
        return self.w_avg.unsqueeze(0).expand(self.num_ws, -1)


class PerResolutionMapping(MappingNetwork):
    """One style per resolution level, built as a chain.

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


def check_psi(psi) -> float:
    """Truncation psi must be a finite number: NaN or inf would turn every w (and image) into NaN."""
    try:
        value = float(psi)
    except (TypeError, ValueError):
        raise ValueError(f"truncation psi must be a number, got {psi!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"truncation psi must be a finite number, got {psi!r}: NaN or inf makes every image "
                         "NaN. Use e.g. 1 (no truncation), 0.7, or 0 (the average face)")
    return value


def truncate(ws: torch.Tensor, w_avg_per_ws: torch.Tensor, psi: float,
             cutoff: int | None = None) -> torch.Tensor:
    """w_avg + psi (w - w_avg) on the first `cutoff` ws (all if None). Any finite real psi is allowed."""
    if check_psi(psi) == 1:
        return ws
    avg = w_avg_per_ws.to(ws.dtype).unsqueeze(0)
    if cutoff is None:
        return avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = avg[:, :cutoff].lerp(ws[:, :cutoff], psi)
    return ws


def modulated_conv2d(x, weight, styles, demodulate=True, up=1, filt=None, padding=0, noise=None):
    """StyleGAN2 modulated convolution, in its non-fused form (scale the input, one shared
    convolution, scale the output), as StyleGAN2-ADA runs it in training.

    In fp16 the weights and styles are first divided by their largest magnitude, which the
    demodulation cancels exactly and which keeps the per-sample weights within fp16's range
    (StyleGAN2-ADA `modulated_conv2d`).
    """
    b = x.shape[0]
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / math.sqrt(weight[0].numel()) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    x = x * styles.to(x.dtype).reshape(b, -1, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), filt, up=up, padding=padding)
    if demodulate:
        w = weight.unsqueeze(0) * styles.reshape(b, 1, -1, 1, 1)        # [B, O, I, k, k]
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()        # [B, O]
        x = x * dcoefs.to(x.dtype).reshape(b, -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
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
        noise = None
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, up=self.up, filt=self.filter, padding=1,
                             noise=noise)
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
    """One resolution: (const input at 4 px | upsampling conv0), conv1, toRGB added to the upsampled skip
    image. `reduced`: the convolutions run in the network's reduced precision; the skip image is fp32."""

    def __init__(self, in_ch, out_ch, w_dim, resolution, conv_clamp, reduced: bool = False):
        super().__init__()
        self.resolution, self.reduced = resolution, reduced
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_ch, 4, 4))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_ch, out_ch, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_ch, out_ch, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_ch, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("filter", fir_filter())
        self.num_conv = 1 if resolution == 4 else 2

    def forward(self, x, img, block_ws, noise_mode, dtype=torch.float32, memory_format=torch.contiguous_format):
        ws = block_ws.unbind(dim=1)
        if self.conv0 is None:
            x = self.const.to(dtype).unsqueeze(0).repeat(block_ws.shape[0], 1, 1, 1)
            x = self.conv1(x.contiguous(memory_format=memory_format), ws[0], noise_mode)
        else:
            x = self.conv0(x.to(dtype).contiguous(memory_format=memory_format), ws[0], noise_mode)
            x = self.conv1(x, ws[1], noise_mode)
        if img is not None:
            img = upsample2d(img, self.filter, 2)
        y = self.torgb(x, ws[self.num_conv]).to(torch.float32, memory_format=torch.contiguous_format)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(MixedPrecisionModule):
    def __init__(self, cfg: GeneratorConfig, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.num_ws = num_ws_for(resolution)
        self.reduced_from = reduced_from_resolution(resolution, cfg.num_reduced_res)
        self.blocks = nn.ModuleList()
        for log_r in range(2, int(math.log2(resolution)) + 1):
            r = 2 ** log_r
            in_ch = channels_at(r // 2, cfg.channel_base, cfg.channel_max) if r > 4 else 0
            out_ch = channels_at(r, cfg.channel_base, cfg.channel_max)
            self.blocks.append(SynthesisBlock(in_ch, out_ch, cfg.w_dim, r, cfg.conv_clamp,
                                              reduced=r >= self.reduced_from))

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, not {noise_mode!r}")
        ws = ws.float()
        x = img = None
        idx = 0
        for block in self.blocks:
            dtype = self.block_dtype(block.reduced)
            with compute_region(dtype, ws.device.type):
                x, img = block(x, img, ws.narrow(1, idx, block.num_conv + 1), noise_mode, dtype,
                               self.memory_format(dtype))
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
