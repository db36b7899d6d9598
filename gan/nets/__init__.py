"""Networks: StyleGAN2 generator, ResNet and ViT discriminators, built from a RunConfig."""
from __future__ import annotations

from torch import nn

from ..config import RunConfig
from .generator import Generator, num_ws_for, ws_indices_by_resolution, z_for_seeds
from .resnet import ResNetDiscriminator
from .vit import ViTDiscriminator

__all__ = ["Generator", "ResNetDiscriminator", "ViTDiscriminator", "build_generator",
           "build_discriminator", "num_ws_for", "ws_indices_by_resolution", "z_for_seeds"]


def build_generator(cfg: RunConfig) -> Generator:
    return Generator(cfg.G, cfg.resolution)


def build_discriminator(cfg: RunConfig) -> nn.Module:
    if cfg.disc == "vit":
        return ViTDiscriminator(cfg.vit, cfg.resolution)
    return ResNetDiscriminator(cfg.resnet, cfg.resolution)
