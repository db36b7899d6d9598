"""Bad input at the `evalkit` command line: each case ends in one paragraph naming the problem and
the fix, with exit 1 (runtime) or 2 (usage, before any work), never a traceback, and nothing
half-written — including read-only and full output folders and caches, broken links, damaged zips,
statistics that are not covariances, and a GPU that is not there."""
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.cli import evalkit_main
from harness_base.home import HOME_ENV

CPU = ["--device", "cpu", "--quiet"]


def write_images(folder: Path, n: int, size=(32, 32), seed=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    return {"a": write_images(root / "a", 6, seed=1), "b": write_images(root / "b", 6, seed=2)}


def run(argv, capsys):
    code = evalkit_main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, " ".join(err.split())


def usage(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        evalkit_main(argv)
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err
    return stop.value.code, err


def mount(folder: Path, options: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): needs root")
    return folder


@pytest.fixture
def read_only_dir(tmp_path):
    folder = mount(tmp_path / "ro", "ro,size=64k")
    yield folder
    subprocess.run(["umount", str(folder)])


@pytest.fixture
def tiny_fs(tmp_path):
    folder = mount(tmp_path / "tiny", "size=100k")
    yield folder
    subprocess.run(["umount", str(folder)])


# -- usage errors: refused by the parser, before any work ------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--batch-size", "-3"], "-3 is out of range: a whole number >= 1 is needed"),
    (["--batch-size", "0"], "0 is out of range"),
    (["--workers", "-1"], "-1 is out of range: a whole number >= 0"),
    (["--psi", "nan"], "'nan' is not a finite number"),
    (["--psi", "inf"], "'inf' is not a finite number"),
    (["--num-gen", "0"], "0 is out of range"),
    (["--device", "gpu0"], "auto, cpu, cuda or cuda:N"),
])
def test_fid_option_ranges(images, capsys, extra, message):
    code, err = usage(["fid", str(images["a"]), str(images["b"]), *extra], capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("extra, message", [
    (["--k-pr", "0"], "0 is out of range: a whole number >= 1"),
    (["--metrics", "fid,foo"], "unknown metric(s) foo; choose from fid, kid, pr, dc, cmmd"),
    (["--bootstrap", "-1"], "-1 is out of range"),
    (["--bootstrap", "1"], "1 resample cannot give an interval"),
    (["--kid-subset-size", "1"], "a whole number >= 2"),
])
def test_metrics_option_ranges(images, capsys, extra, message):
    code, err = usage(["metrics", str(images["a"]), str(images["b"]), *extra], capsys)
    assert code == 2 and message in err


# -- runtime errors: exit 1, one paragraph, nothing written -----------------------------------------

def test_cuda_without_a_gpu(images, capsys):
    code, _, err = run(["fid", str(images["a"]), str(images["b"]), "--device", "cuda", "--no-cache"], capsys)
    assert code == 1 and "CUDA is not usable here" in err and "--device cpu" in err


def test_symlink_loop_and_dangling_link_are_named_and_skippable(tmp_path, images, capsys):
    folder = write_images(tmp_path / "links", 4)
    os.symlink("selfref.png", folder / "selfref.png")
    os.symlink(tmp_path / "gone.png", folder / "broken.png")
    code, _, err = run(["fid", str(folder), str(images["b"]), *CPU], capsys)
    assert code == 1
    assert "broken.png: broken symbolic link" in err and "selfref.png: symbolic link that leads back to itself" in err
    assert "--skip-bad" in err
    code, out, err = run(["fid", str(folder), str(images["b"]), "--skip-bad", "--json", *CPU], capsys)
    assert code == 0 and '"fid"' in out


def test_folder_holding_only_a_linked_folder_is_searched(tmp_path, images, capsys):
    folder = tmp_path / "via-link"
    folder.mkdir()
    os.symlink(images["a"], folder / "linked", target_is_directory=True)
    os.symlink(folder, folder / "loop", target_is_directory=True)   # a folder loop must end
    code, out, _ = run(["fid", str(folder), str(images["a"]), "--json", *CPU], capsys)
    result = json.loads(out)
    assert code == 0 and result["num_images"] == [6, 6] and abs(result["fid"]) < 1e-9  # the same images


def test_damaged_zip_member(tmp_path, images, capsys):
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(images["a"].iterdir()):
            zf.write(p, p.name)
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF  # inside the first member's pixels: its CRC-32 no longer matches
    archive.write_bytes(bytes(data))
    code, _, err = run(["fid", str(archive), str(images["b"]), *CPU], capsys)
    assert code == 1 and "000.png: damaged zip member (Bad CRC-32" in err


@pytest.mark.parametrize("case, message", [
    ("nan", "holds NaN or infinite values"),
    ("asymmetric", "sigma is not symmetric"),
    ("negative", "sigma has a negative eigenvalue"),
    ("text", "is not an .npz statistics file"),
])
def test_statistics_files_must_hold_a_covariance(tmp_path, images, capsys, case, message):
    path = tmp_path / f"{case}.npz"
    d = 2048
    mu, sigma = np.zeros(d), np.eye(d)
    if case == "nan":
        mu[3] = np.nan
    elif case == "asymmetric":
        sigma[0, 1] = 0.5
    elif case == "negative":
        sigma[5, 5] = -1.0
    if case == "text":
        path.write_text("mu, sigma\n1, 2\n")
    else:
        np.savez(path, mu=mu, sigma=sigma)
    code, _, err = run(["fid", str(path), str(images["b"]), *CPU], capsys)
    assert code == 1 and message in err and str(path) in err


def test_read_only_output_is_refused_before_any_work(images, read_only_dir, capsys):
    code, _, err = run(["stats", str(images["a"]), "-o", str(read_only_dir / "a.npz"), *CPU], capsys)
    assert code == 1 and "cannot write" in err and "read-only" in err
    assert list(read_only_dir.iterdir()) == []


def test_full_disk_leaves_nothing_half_written(images, tiny_fs, capsys):
    code, _, err = run(["stats", str(images["a"]), "-o", str(tiny_fs / "a.npz"), "--features", *CPU], capsys)
    assert code == 1 and "no space left on the device" in err
    assert list(tiny_fs.iterdir()) == []


@pytest.fixture
def read_only_home(tmp_path, session_home):
    """A harness home holding the weights, made read-only by a read-only bind mount over itself."""
    home = tmp_path / "ro-home"
    home.mkdir()
    (home / "weights").symlink_to(session_home / "weights")
    if subprocess.run(["mount", "--bind", str(home), str(home)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here: needs root")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(home)], check=True)
    yield home
    subprocess.run(["umount", str(home)])


@pytest.fixture
def full_home(tiny_fs, session_home):
    (tiny_fs / "weights").symlink_to(session_home / "weights")
    (tiny_fs / "filler").write_bytes(b"\0" * 90_000)
    return tiny_fs


@pytest.mark.parametrize("home_fixture", ["read_only_home", "full_home"])
def test_unwritable_cache_degrades_to_no_cache(images, monkeypatch, capsys, request, home_fixture):
    home = request.getfixturevalue(home_fixture)
    monkeypatch.setenv(HOME_ENV, str(home))
    code, out, err = run(["fid", str(images["a"]), str(images["b"]), *CPU], capsys)
    assert code == 0 and out.startswith("FID ")
    assert err.count("the feature cache in") == 1 and "continuing without it" in err
    assert not list(home.rglob("*.npz"))


def test_no_cache_touches_no_cache(images, tmp_path, monkeypatch, capsys, session_home):
    home = tmp_path / "home"
    home.mkdir()
    (home / "weights").symlink_to(session_home / "weights")
    monkeypatch.setenv(HOME_ENV, str(home))
    code, out, _ = run(["fid", str(images["a"]), str(images["b"]), "--no-cache", "--json", *CPU], capsys)
    assert code == 0 and sorted(p.name for p in home.iterdir()) == ["weights"]


def test_tiny_images_get_a_warning(tmp_path, capsys):
    a, b = write_images(tmp_path / "a1", 4, size=(1, 1)), write_images(tmp_path / "b1", 4, size=(1, 1), seed=3)
    code, out, _ = run(["fid", str(a), str(b), "--json", *CPU], capsys)
    assert code == 0 and "smaller than 16 px" in out


def test_statistics_without_a_count_say_unknown(tmp_path, images, capsys):
    path = tmp_path / "cleanfid.npz"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 2048))
    np.savez(path, mu=x.mean(0), sigma=np.cov(x, rowvar=False))
    code, out, _ = run(["fid", str(path), str(images["b"]), *CPU], capsys)
    assert code == 0 and "? vs 6 images" in out
