"""Fixtures for evalkit tests: image sets generated at test time and an isolated feature cache."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evalkit.home import HOME_ENV, harness_home


def _real_weights_dir() -> Path:
    return harness_home() / "weights"


@pytest.fixture(scope="session")
def real_weights_dir():
    """The weights installed by the README's install command (`evalkit weights install`)."""
    d = _real_weights_dir()
    if not (d / "inception-2015-12-05.pt").is_file():
        pytest.fail("Inception weights are not installed: run `evalkit weights install` (the README's install "
                    "command does) before the tests.")
    return d


@pytest.fixture(scope="session")
def session_home(tmp_path_factory, real_weights_dir):
    """A harness home for the whole session: the real weights, an empty feature cache."""
    home = tmp_path_factory.mktemp("harness-home")
    (home / "weights").symlink_to(real_weights_dir, target_is_directory=True)
    return home


@pytest.fixture(autouse=True)
def isolated_home(session_home, monkeypatch):
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
    import evalkit.weights as w

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
