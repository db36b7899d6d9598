"""CLIP ViT-L/14@336px image embeddings for CMMD (Jayasumana et al. 2024, "Rethinking FID: Towards a
Better Evaluation Metric for Image Generation"), as google-research/google-research `cmmd/` computes them.

Preprocessing (`cmmd/io_util.py` `_center_crop_and_resize`, `compute_embeddings_for_dir`;
`cmmd/embedding.py` `_clip_preprocess`): the PIL image centre-cropped to a square (box
((w − l) // 2, (h − l) // 2) with side l = min(w, h)), resized to 336x336 with PIL's bicubic on the
uint8 image, then x / 255 and `normalize_image` with OpenAI CLIP's mean and std (scenic
`baselines/clip/model.py`). `embedding.py` resizes once more to 336 (`jax.image.resize`, or
`torch.nn.functional.interpolate` in older versions); at equal size both return their input, so that
step is left out.

Network: OpenAI's `ViT-L-14-336px.pt` (a TorchScript archive; scenic converts the same file),
`encode_image` — final-norm CLS token times the 1024x768 projection, QuickGELU activations — and,
as scenic's `CLIP.encode_image(normalize=True)`, divided by its L2 norm. Built here as timm's
`vit_large_patch14_clip_quickgelu_336`, the OpenAI keys mapped by timm's `checkpoint_filter_fn`,
fp16 weights computed in float32 as scenic does.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .resize_uint8 import resize_uint8_pil, resize_uint8_torch
from .timm_vit import Normalise, build_vit

SIZE = 336
FEATURE_DIM = 768
OPENAI_CLIP = Normalise(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))


def centre_square(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of CMMD's centre crop."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def preprocess_cpu(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, 336, 336), CMMD's preprocessing."""
    top, left, side = centre_square(*image.shape[:2])
    square = np.ascontiguousarray(image[top:top + side, left:left + side])
    return OPENAI_CLIP.numpy(resize_uint8_pil(square, SIZE))


def preprocess_torch(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) on any device -> float32 (N, 3, 336, 336), equal to `preprocess_cpu`."""
    top, left, side = centre_square(*images.shape[-2:])
    square = images[..., top:top + side, left:left + side].to(torch.uint8)
    return OPENAI_CLIP.torch(resize_uint8_torch(square, SIZE))


class UnitEmbedding(torch.nn.Module):
    """The image tower's projected embedding divided by its L2 norm."""

    def __init__(self, tower: torch.nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.tower(x)
        return e / torch.linalg.vector_norm(e, dim=-1, keepdim=True)


def build_clip(openai: dict, device) -> torch.nn.Module:
    """The network (preprocessed (N, 3, 336, 336) -> (N, 768) unit embeddings) from OpenAI's state dict."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    with torch.device("meta"):   # checkpoint_filter_fn reads only the target's shapes
        import timm

        target = timm.create_model("vit_large_patch14_clip_quickgelu_336", pretrained=False, img_size=SIZE,
                                   num_classes=FEATURE_DIM)
    visual = {k: v for k, v in openai.items() if k.startswith("visual.")}
    tower = build_vit("vit_large_patch14_clip_quickgelu_336", checkpoint_filter_fn(visual, target), device,
                      img_size=SIZE, num_classes=FEATURE_DIM)
    return UnitEmbedding(tower).eval()


def read_openai_state_dict(path: Path) -> dict:
    """The tensors of OpenAI's TorchScript archive (`torch.jit.load`, as openai/CLIP's `clip.load` reads it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch.jit is deprecated, but this file is TorchScript
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


def load_clip(path: Path, device) -> torch.nn.Module:
    return build_clip(read_openai_state_dict(path), device)
