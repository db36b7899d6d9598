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
