"""`gan dataset` / `gan avatars`, and the checks on training data."""
from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from gan.cli import main as gan_main
from gan.dataset import load_image_folder, prepare_dataset

from .conftest import gan_cli


def make_messy_source(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 100, 3), dtype=np.uint8)).save(folder / "wide.jpg", quality=95)
    tall = np.zeros((80, 40, 3), np.uint8)
    tall[:, :, 1] = 200
    Image.fromarray(tall).save(folder / "tall.png")
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:32, :, 3] = 255  # top half opaque red, bottom half transparent -> white
    (folder / "sub").mkdir()
    Image.fromarray(rgba, "RGBA").save(folder / "sub" / "alpha.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / "tiny.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    shutil.copy(folder / "tall.png", folder / "tall_copy.png")


def test_prepare_dataset_keeps_rejects_and_dedups(tmp_path):
    src = tmp_path / "src"
    make_messy_source(src)
    out = tmp_path / "out"
    summary = prepare_dataset(src, out, res=32)
    assert summary["count"] == 3
    assert [k["source"] for k in summary["kept"]] == ["sub/alpha.png", "tall.png", "wide.jpg"]
    reasons = {r["source"]: r["reason"] for r in summary["rejected"]}
    assert set(reasons) == {"tiny.png", "notes.txt", "broken.jpg"}
    assert reasons["tiny.png"].startswith("too small (10x10")
    assert reasons["notes.txt"].startswith("unreadable")
    assert summary["duplicates"] == [{"source": "tall_copy.png", "duplicate_of": "tall.png"}]
    # only training images (and dataset.json) land in the folder
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000002.png", "dataset.json"]
    assert json.loads((out / "dataset.json").read_text()) == summary
    alpha = np.asarray(Image.open(out / "000000.png"))
    assert alpha.shape == (32, 32, 3)
    assert tuple(alpha[2, 16]) == (255, 0, 0) and tuple(alpha[-2, 16]) == (255, 255, 255)
    data = load_image_folder(out, 32)
    assert data.images.shape == (3, 3, 32, 32)


def test_pad_mode_keeps_everything_and_zip_sources(tmp_path):
    src = tmp_path / "src"
    make_messy_source(src)
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    summary = prepare_dataset(archive, tmp_path / "padded", res=16, mode="pad")
    assert summary["count"] == 3 and len(summary["duplicates"]) == 1
    tall = np.asarray(Image.open(tmp_path / "padded" / "000001.png")).astype(int)
    assert tall[8, 0].sum() < 30 and tall[8, -1].sum() < 30  # black bars left and right
    assert abs(tall[8, 8, 1] - 200) < 10                       # the green image in the middle


def test_bad_dataset_inputs_have_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not a power of two"):
        prepare_dataset(tmp_path, tmp_path / "o", res=48)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, size in enumerate([16, 16, 32]):
        Image.new("RGB", (size, size)).save(mixed / f"{i}.png")
    with pytest.raises(ValueError, match=r"mixes image sizes \(16x16: 2 .*32x32: 1.*gan dataset"):
        load_image_folder(mixed)
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.new("RGB", (24, 24)).save(odd / "a.png")
    with pytest.raises(ValueError, match="square power-of-two"):
        load_image_folder(odd)
    with pytest.raises(ValueError, match="--res is 32"):
        load_image_folder(_one(tmp_path), 32)
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_dataset(tmp_path, mixed, res=16)


def _one(tmp_path):
    folder = tmp_path / "one16"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "a.png")
    return folder


def test_cli_reports_bad_resolution(tmp_path, capsys):
    code, _, err = gan_cli(["dataset", tmp_path, tmp_path / "o", "--res", "100"], capsys)
    assert code == 2 and "100 is not a power of two" in err
    data = _one(tmp_path)
    code, _, err = gan_cli(["train", "--data", data, "--out", tmp_path / "r", "--res", "24", "--preset", "cpu-tiny"],
                           capsys)
    assert code == 2 and "24 is not a power of two" in err
    assert not (tmp_path / "r").exists()


def _zip_with_a_damaged_member(path, good: int = 2):
    """A zip whose last member's stored CRC does not match its data (as a torn download leaves it)."""
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(good + 1):
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), (40 * i, 80, 160)).save(buf, format="PNG")
            zf.writestr(f"{i:06d}.png", buf.getvalue())
    raw = bytearray(path.read_bytes())
    entry = raw.rindex(b"PK\x01\x02")          # central-directory entry of the last member: CRC at offset 16
    raw[entry + 16] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_damaged_zip_member_is_rejected_and_the_rest_kept(tmp_path, capsys):
    archive = tmp_path / "corrupt.zip"
    _zip_with_a_damaged_member(archive)
    code, out, err = gan_cli(["dataset", archive, tmp_path / "ds", "--res", "32", "--quiet"], capsys)
    assert code == 0, err
    assert "kept 2 images" in out and "rejected 000002.png: damaged zip member (Bad CRC-32" in out
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["000000.png", "000001.png", "dataset.json"]


def test_a_zip_with_nothing_usable_leaves_nothing_behind(tmp_path, capsys):
    archive = tmp_path / "corrupt.zip"
    _zip_with_a_damaged_member(archive, good=0)
    code, _, err = gan_cli(["dataset", archive, tmp_path / "ds", "--res", "32", "--quiet"], capsys)
    assert code == 1 and "Traceback" not in err
    assert "no usable images" in err and "000000.png: damaged zip member" in err
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds*"))


def test_an_empty_source_folder_leaves_no_dataset_json_so_the_rerun_works(tmp_path, capsys):
    src, out = tmp_path / "empty", tmp_path / "ds"
    src.mkdir()
    code, _, err = gan_cli(["dataset", src, out, "--res", "16", "--quiet"], capsys)
    assert code == 1 and "no usable images" in err and "run the same command again" in err
    assert not out.exists()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(src / "a.png")
    code, out_text, err = gan_cli(["dataset", src, out, "--res", "16", "--quiet", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out_text)["count"] == 1


def test_avatars_are_deterministic(tmp_path):
    assert gan_main(["avatars", str(tmp_path / "a"), "--n", "4", "--res", "32", "--seed", "3"]) == 0
    assert gan_main(["avatars", str(tmp_path / "b"), "--n", "4", "--res", "32", "--seed", "3"]) == 0
    assert gan_main(["avatars", str(tmp_path / "c"), "--n", "4", "--res", "32", "--seed", "4"]) == 0
    a, b, c = (load_image_folder(tmp_path / x, 32).images for x in "abc")
    assert a.shape == (4, 3, 32, 32)
    assert (a == b).all() and not (a == c).all()
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["count"] == 4


def test_a_training_set_is_decoded_once_into_a_memory_mapped_cache(tmp_path, monkeypatch):
    import gan.dataset as dataset

    assert gan_main(["avatars", str(tmp_path / "a"), "--n", "6", "--res", "32", "--seed", "1"]) == 0
    first = load_image_folder(tmp_path / "a", 32)
    files = sorted((tmp_path / "a").glob("*.png"))
    decoded = np.stack([np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1) for f in files])
    assert np.array_equal(first.images.numpy(), decoded)
    assert first.cache_file.parent == dataset.dataset_cache_dir() and first.cache_file.exists()

    def no_decoding(*args, **kwargs):
        raise AssertionError("an unchanged data set must not be decoded again")

    monkeypatch.setattr(dataset.Image, "open", no_decoding)
    again = load_image_folder(tmp_path / "a", 32)
    assert again.cache_file == first.cache_file and torch.equal(again.images, first.images)
    again.images[0].zero_()                               # copy-on-write: the cache file is untouched
    assert np.array_equal(np.load(first.cache_file)[0], decoded[0])
    with pytest.raises(ValueError, match="are 32x32 but --res is 64"):
        load_image_folder(tmp_path / "a", 64)
    monkeypatch.undo()

    Image.new("RGB", (32, 32), (255, 0, 0)).save(files[2])   # an edited image: a new cache, the old one goes
    edited = load_image_folder(tmp_path / "a", 32)
    assert edited.cache_file != first.cache_file and not first.cache_file.exists()
    assert (edited.images[2] == torch.tensor([255, 0, 0], dtype=torch.uint8)[:, None, None]).all()
    assert torch.equal(edited.images[3], torch.from_numpy(decoded[3]))


def test_a_file_that_cannot_be_decoded_is_named_and_leaves_no_cache(tmp_path):
    import gan.dataset as dataset

    assert gan_main(["avatars", str(tmp_path / "a"), "--n", "3", "--res", "32", "--seed", "1"]) == 0
    broken = sorted((tmp_path / "a").glob("*.png"))[1]
    broken.write_bytes(broken.read_bytes()[:200])           # header intact, pixel data cut off
    before = set(dataset.dataset_cache_dir().glob("*"))
    with pytest.raises(ValueError, match=f"{broken.name} cannot be decoded"):
        load_image_folder(tmp_path / "a", 32)
    assert set(dataset.dataset_cache_dir().glob("*")) == before
