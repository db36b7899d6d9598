"""Bad input: each case gives a clear message naming the files and the fix, or is handled as clean-fid
handles it (converted to RGB, resized) and reported."""
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit import api
from evalkit.errors import BadImagesError, SampleSizeError, SourceError
from evalkit.sources import open_source

CPU = {"device": torch.device("cpu"), "progress": False}


def _write_images(d, n, size=(32, 32), seed=0, mode="RGB"):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(d / f"img{i:03d}.png")
    return d


def test_missing_path(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "nope")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="is empty"):
        open_source(tmp_path / "empty")


def test_folder_without_images_names_what_it_found(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "notes.txt").write_text("hi")
    (d / "data.csv").write_text("a,b")
    with pytest.raises(SourceError, match=r"No images found .*notes\.txt"):
        open_source(d)


def test_unsupported_file_type(tmp_path):
    f = tmp_path / "model.pkl"
    f.write_bytes(b"x")
    with pytest.raises(SourceError, match="unsupported type '.pkl'"):
        open_source(f)


def test_truncated_and_corrupt_files_are_named_and_skippable(tmp_path):
    d = _write_images(tmp_path / "set", 6)
    good = (d / "img000.png").read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) // 2])
    (d / "garbage.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(BadImagesError) as info:
        api.source_stats(d, **CPU)
    message = str(info.value)
    assert "2 file(s)" in message and "truncated.png" in message and "garbage.jpg" in message
    assert "--skip-bad" in message
    stats = api.source_stats(d, skip_bad=True, **CPU)
    assert stats.num == 6
    assert sorted(stats.summary()["skipped_unreadable"]) == ["garbage.jpg", "truncated.png"]
    assert any("left out 2 unreadable" in w for w in stats.notes)


def test_grayscale_rgba_palette_are_converted_like_clean_fid(tmp_path):
    """Features of L/RGBA/P files equal those of the same images converted to RGB beforehand."""
    rng = np.random.default_rng(3)
    mixed, converted = tmp_path / "mixed", tmp_path / "converted"
    mixed.mkdir()
    converted.mkdir()
    images = {
        "gray.png": Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), mode="L"),
        "rgba.png": Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), mode="RGBA"),
        "palette.png": Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).convert("P"),
        "rgb.png": Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)),
    }
    for name, img in images.items():
        img.save(mixed / name)
        img.convert("RGB").save(converted / name)
    a = api.source_stats(mixed, **CPU)
    b = api.source_stats(converted, **CPU)
    assert np.allclose(a.features, b.features, rtol=0, atol=1e-5)
    assert a.meta["modes"] == {"L": 1, "RGBA": 1, "P": 1, "RGB": 1}
    note = next(w for w in a.notes if "converted to RGB" in w)
    assert "RGBA (alpha dropped" in note and "L (grayscale" in note


def test_mixed_sizes_are_resized_and_reported(tmp_path):
    d = _write_images(tmp_path / "mixed", 3, size=(32, 32))
    _write_images(d / "big", 2, size=(64, 48), seed=1)
    stats = api.source_stats(d, **CPU)
    assert stats.num == 5
    note = next(w for w in stats.notes if "sizes" in w)
    assert "2 sizes" in note and "32x32: 3" in note and "64x48: 2" in note


def test_upper_case_extensions_are_counted_and_the_clean_fid_difference_is_said(tmp_path):
    import glob

    from cleanfid.fid import EXTENSIONS

    d = _write_images(tmp_path / "set", 5)
    first = sorted(d.iterdir())[0]
    first.rename(first.with_suffix(".Png"))
    stats = api.source_stats(d, **CPU)
    seen_by_clean_fid = {f for ext in EXTENSIONS for f in glob.glob(str(d / f"**/*.{ext}"), recursive=True)}
    assert stats.num == 5 and len(seen_by_clean_fid) == 4
    note = next(w for w in stats.notes if "upper-case" in w)
    assert first.with_suffix(".Png").name in note and "clean-fid" in note


def test_zip_matches_folder_and_reports_non_image_members(tmp_path):
    d = _write_images(tmp_path / "set", 5)
    z = tmp_path / "set.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(d.iterdir()):
            zf.write(p, f"images/{p.name}")
        zf.writestr("README.txt", "not an image")
        zf.writestr("meta/labels.json", "{}")
    from_zip = api.source_stats(z, **CPU)
    from_dir = api.source_stats(d, **CPU)
    assert np.array_equal(from_zip.features, from_dir.features)
    note = next(w for w in from_zip.notes if "non-image" in w)
    assert "README.txt" in note and "labels.json" in note


def test_zip_without_images_and_broken_zip(tmp_path):
    z = tmp_path / "docs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.txt", "x")
    with pytest.raises(SourceError, match="contains no images"):
        open_source(z)
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SourceError, match="not a readable zip"):
        open_source(bad)


def test_single_image_is_an_error_for_fid(tmp_path):
    one = _write_images(tmp_path / "one", 1)
    two = _write_images(tmp_path / "two", 3, seed=5)
    with pytest.raises(SampleSizeError, match="at least 2 images"):
        api.fid(one, two, **CPU)


def test_few_images_warn_about_rank_deficiency(tmp_path):
    a = _write_images(tmp_path / "a", 4)
    b = _write_images(tmp_path / "b", 4, seed=9)
    result = api.fid(a, b, **CPU)
    assert sum("rank-deficient" in w for w in result["warnings"]) == 2
    assert np.isfinite(result["fid"]) and result["fid"] > 0
