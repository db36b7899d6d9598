"""What the ViT feature extractors (DINOv2, CLIP) share: the network built by timm from a state dict
already in memory (never from a hub), and the per-channel normalisation after `x / 255`, in the
float32 steps the reference implementations take (torchvision's `ToTensor` + `Normalize`).
"""
from __future__ import annotations

import re

import numpy as np
import torch


def block_count(state_dict: dict, pattern: str = r"blocks\.(\d+)\.") -> int:
    """Transformer blocks a state dict holds (the pinned files hold 24; tests use shallower ones)."""
    found = [int(m.group(1)) for k in state_dict if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


def build_vit(timm_name: str, state_dict: dict, device, **kwargs) -> torch.nn.Module:
    """timm's `timm_name` with exactly the tensors of `state_dict` (strict: every key used, none
    missing), in eval mode without gradients. Built on the meta device, so no time goes into a
    random initialisation that the weights would overwrite."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False, depth=block_count(state_dict), **kwargs)
    model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False).to(device)


class Normalise:
    """(x / 255 − mean) / std per channel, in float32 as torchvision computes it on the CPU."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)

    def numpy(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> float32 (3, H, W)."""
        x = image.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        return (x - self.mean) / self.std

    def torch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> float32 (N, 3, H, W) on the same device, equal to `numpy` per image.

        Dividing by a tensor, not a Python number: CUDA turns `x / 255` into `x * (1/255)`, which can
        differ from the division in the last bit."""
        x = images.to(torch.float32)
        x = x / torch.full((), 255.0, dtype=torch.float32, device=x.device)
        return (x - torch.from_numpy(self.mean).to(x.device)) / torch.from_numpy(self.std).to(x.device)
