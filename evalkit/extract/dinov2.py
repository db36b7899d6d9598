"""DINOv2 ViT-L/14 CLS features for FD-DINOv2 (Stein et al. 2023, "Exposing flaws of generative model
evaluation metrics"), as layer6ai-labs/dgm-eval computes them and NVlabs/edm2 reproduces them.

Preprocessing (dgm-eval `models/dinov2.py`, default `clean_resize=False`): the RGB PIL image resized
to 224x224 with `torchvision.transforms.Resize((224, 224), BICUBIC)` — PIL's bicubic on the uint8
image, no crop, aspect ratio not kept — then `ToTensor()` (x / 255) and `Normalize` with the ImageNet
mean and std. EDM2's `DINOv2Detector(resize_mode='pil')` is the same ("matches the original dgm-eval
codebase exactly"); its default `'torch'` mode resizes in float with antialiased torch bicubic and
"yields almost the same results", not the same.

Network: `torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14')`, whose `forward` returns the
final-norm CLS token (1024-d). Built here as timm's `vit_large_patch14_dinov2` at 224 px; the
checkpoint's 37x37 position embedding (trained at 518 px) is resized once at load exactly as
DINOv2's `interpolate_pos_encoding` resizes it on every forward at 224 px: bicubic, no antialias,
scale factor (16 + 0.1) / 37 — not timm's own resampling, which uses a size and antialiasing.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .resize_uint8 import resize_uint8_pil, resize_uint8_torch
from .timm_vit import Normalise, build_vit

SIZE = 224
PATCH = 14
FEATURE_DIM = 1024
IMAGENET = Normalise(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))   # dgm-eval, EDM2
INTERPOLATE_OFFSET = 0.1   # dinov2 hub models: interpolate_offset=0.1, interpolate_antialias=False


def preprocess_cpu(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, 224, 224), dgm-eval's transform."""
    return IMAGENET.numpy(resize_uint8_pil(image, SIZE))


def preprocess_torch(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) on any device -> float32 (N, 3, 224, 224), equal to `preprocess_cpu`."""
    return IMAGENET.torch(resize_uint8_torch(images.to(torch.uint8), SIZE))


def pos_embed_at(pos_embed: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """(1, 1 + M*M, D) position embedding of the checkpoint -> (1, 1 + g*g, D) for `size` px inputs,
    g = size // 14, as `DinoVisionTransformer.interpolate_pos_encoding` computes it."""
    grid = size // PATCH
    n = pos_embed.shape[1] - 1
    m = int(math.sqrt(n))
    if m * m != n:
        raise ValueError(f"position embedding of {n} patches is not a square grid")
    if m == grid:
        return pos_embed
    pe = pos_embed.float()
    scale = float(grid + INTERPOLATE_OFFSET) / m
    patches = F.interpolate(pe[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2), scale_factor=(scale, scale),
                            mode="bicubic", antialias=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([pe[:, :1], patches], dim=1).to(pos_embed.dtype)


def timm_state_dict(official: dict) -> dict:
    """`dinov2_vitl14_pretrain.pth` -> the keys of timm's ViT at 224 px (the names already agree;
    the mask token is used only in training)."""
    out = {k: v for k, v in official.items() if k != "mask_token"}
    out["pos_embed"] = pos_embed_at(official["pos_embed"])
    return out


def build_dinov2(official: dict, device) -> torch.nn.Module:
    """The network (preprocessed (N, 3, 224, 224) -> (N, 1024) CLS features) from the official state dict."""
    return build_vit("vit_large_patch14_dinov2", timm_state_dict(official), device, img_size=SIZE, num_classes=0)


def load_dinov2(path: Path, device) -> torch.nn.Module:
    """From the official checkpoint file, a plain state dict (read without unpickling code)."""
    return build_dinov2(torch.load(path, map_location="cpu", weights_only=True), device)
