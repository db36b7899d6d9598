"""ViTGAN-style ViT discriminator.

- Overlapping patches: windows of patch + 2*extend pixels at stride `patch`, with `extend` pixels
  of zero padding around the image, so the (res/patch)^2 windows cover every pixel at any
  power-of-two resolution (the padded size satisfies (res + 2e - k) % stride == 0).
- L2 self-attention with tied query/key projection (Kim et al. 2021): logits are minus the
  *squared* distance, computed as |q|^2 + |k|^2 - 2 q.k (no cdist, whose double backward is
  non-finite on the zero diagonal that tying creates).
- Improved spectral normalisation (ISN) as a `torch.nn.utils.parametrize` parametrisation on
  the attention and MLP linears (as the official ViTGAN code wraps them): the optimiser holds
  `parametrizations.weight.original`, the forward uses sigma(W_init) * W / sigma(W) with one
  power iteration per training forward.
- Pre-LN transformer blocks, a class token and a learned position embedding.
- Minibatch standard deviation (StyleGAN2's epilogue, on by default as in the ResNet D) appended to
  the class token's features before the head, so both discriminators can see a lack of variety.
- Mixed precision: the patch embedding and the first `num_reduced_blocks` blocks run their matmuls
  in the reduced type (autocast); the residual stream, the final norm, minibatch-std and the head
  stay fp32, as do ISN's sigma and the attention distances.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..config import ViTDConfig, vit_patch_geometry
from ..precision import MixedPrecisionModule, compute_region
from .resnet import MinibatchStd


class ImprovedSpectralNorm(nn.Module):
    """W -> sigma_init * W / sigma(W), sigma estimated by power iteration (u, v kept as buffers)."""

    def __init__(self, weight: torch.Tensor, eps: float = 1e-12):
        super().__init__()
        self.eps = eps
        mat = weight.detach().flatten(1)
        sigma = torch.linalg.matrix_norm(mat, ord=2)  # exact top singular value, once, at init
        _, _, vh = torch.linalg.svd(mat, full_matrices=False)
        v = vh[0]
        u = F.normalize(mat @ v, dim=0, eps=eps)
        self.register_buffer("sigma_init", sigma.clone())
        self.register_buffer("u", u)
        self.register_buffer("v", v.clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with compute_region(torch.float32, weight.device.type):  # sigma in fp32 even under autocast
            return self._normalise(weight.float())

    def _normalise(self, weight: torch.Tensor) -> torch.Tensor:
        mat = weight.flatten(1)
        if self.training:
            with torch.no_grad():  # one power-iteration step; W changes slowly so u, v stay close
                v = F.normalize(mat.t() @ self.u, dim=0, eps=self.eps)
                u = F.normalize(mat @ v, dim=0, eps=self.eps)
                self.u.copy_(u)
                self.v.copy_(v)
        # Clones: the buffers are updated in place by later forwards while this graph is alive.
        sigma = torch.dot(self.u.clone(), mat @ self.v.clone())
        return weight * (self.sigma_init / sigma)


def isn(module: nn.Module) -> nn.Module:
    parametrize.register_parametrization(module, "weight", ImprovedSpectralNorm(module.weight))
    return module


class L2Attention(nn.Module):
    """Multi-head self-attention with softmax(-|x W_qk_i - x W_qk_j|^2 / sqrt(d_head)) (W_q = W_k)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.d_head = heads, dim // heads
        self.to_qk = isn(nn.Linear(dim, dim, bias=False))
        self.to_v = isn(nn.Linear(dim, dim, bias=False))
        self.to_out = isn(nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qk = self.to_qk(x).reshape(b, n, self.heads, self.d_head).transpose(1, 2)  # [B, H, N, d]
        v = self.to_v(x).reshape(b, n, self.heads, self.d_head).transpose(1, 2)
        with compute_region(torch.float32, x.device.type):
            # fp32: |q|^2 + |k|^2 - 2 q.k cancels badly in bf16 for nearby tokens.
            qk = qk.float()
            sq = qk.square().sum(-1)
            dist2 = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2 * qk @ qk.transpose(-1, -2)).clamp_min(0)
            attn = torch.softmax(-dist2 * self.d_head ** -0.5, dim=-1)
        out = (attn.to(v.dtype) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, dropout):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = L2Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(isn(nn.Linear(dim, hidden)), nn.GELU(), nn.Dropout(dropout),
                                 isn(nn.Linear(hidden, dim)), nn.Dropout(dropout))

    def forward(self, x):
        # x is fp32: adding the (possibly reduced-precision) branch outputs keeps the residual stream fp32.
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTDiscriminator(MixedPrecisionModule):
    def __init__(self, cfg: ViTDConfig, resolution: int):
        super().__init__()
        self.patch, self.extend = vit_patch_geometry(cfg, resolution)
        if resolution % self.patch:
            raise ValueError(f"ViT patch {self.patch} does not divide resolution {resolution}")
        self.kernel = self.patch + 2 * self.extend
        self.num_patches = (resolution // self.patch) ** 2
        # A conv with kernel k, stride p and padding e is exactly "unfold overlapping windows + linear".
        self.patch_embed = nn.Conv2d(3, cfg.dim, self.kernel, stride=self.patch, padding=self.extend)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_patches + 1, cfg.dim) * 0.02)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.num_reduced_blocks = cfg.depth if cfg.num_reduced_blocks < 0 else min(cfg.num_reduced_blocks, cfg.depth)
        self.norm = nn.LayerNorm(cfg.dim)
        self.mbstd = MinibatchStd(cfg.mbstd_group, cfg.mbstd_channels) if cfg.mbstd_group > 0 else None
        self.head = nn.Linear(cfg.dim + (cfg.mbstd_channels if self.mbstd is not None else 0), 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        device_type = img.device.type
        dtype = self.block_dtype(self.num_reduced_blocks > 0)
        with compute_region(dtype, device_type):
            x = self.patch_embed(img.to(dtype)).flatten(2).transpose(1, 2).float()      # [B, N, dim]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.dropout(x + self.pos_embed)
        for i, block in enumerate(self.blocks):
            with compute_region(self.block_dtype(i < self.num_reduced_blocks), device_type):
                x = block(x)
        with compute_region(torch.float32, device_type):
            features = self.norm(x[:, 0].float())
            if self.mbstd is not None:
                features = self.mbstd(features[:, :, None, None]).flatten(1)
            return self.head(features).squeeze(1)
