"""`evalkit calibrate`: the stand-ins' ordering facts that must hold on cartoon faces, the
degradations themselves, the outputs, and bad input."""
import csv
import json

import numpy as np
import pytest

from evalkit import cli
from evalkit.reports import calibrate as cal


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    from gan.avatars import write_avatars

    d = tmp_path_factory.mktemp("calibrate") / "heldout"
    write_avatars(d, 24, seed=7, res=64)
    return d


def test_stand_ins_land_where_they_must(avatars_a, held_out, tmp_path, capsys):
    out = tmp_path / "scale"
    argv = ["calibrate", "--train", str(avatars_a), "--heldout", str(held_out), "--out", str(out),
            "--standins", "blur-2,copies-50", "--train-queries", "30", "--device", "cpu", "-q"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "heldout" in text and "blur-2" in text and "copy%" in text and "no intervals" in text
    result = json.loads((out / "calibrate.json").read_text())
    rows = {r["standin"]: r for r in result["rows"]}
    assert list(rows) == ["heldout", "blur-2", "copies-50"]          # the floor always, in the scale's order
    assert result["num_train"] == 60 and result["num_heldout"] == 24
    floor, blurred, copies = rows["heldout"], rows["blur-2"], rows["copies-50"]
    assert floor["fid"] < blurred["fid"] and floor["kid"] < blurred["kid"]
    assert blurred["precision"] < floor["precision"] and blurred["coverage"] < floor["coverage"]
    # copies are flagged, fresh real images are not: 12 exact copies among 24
    assert copies["copy_flagged"] >= 11 and floor["copy_flag_rate"] <= 1 / 24
    assert copies["fid"] < floor["fid"]   # FID against the training set rewards memorisation
    with open(out / "calibrate.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["standin"] for r in table] == list(rows) and float(table[1]["fid"]) == pytest.approx(blurred["fid"])
    assert (out / "calibrate.png").stat().st_size > 5000


def test_a_held_out_subset_and_a_stand_in_subset(avatars_a, held_out):
    res = cal.calibration_scale(avatars_a, held_out, num=10, standins=["half-random"], copy_check=False,
                                device="cpu", progress=False, log=lambda *_: None)
    assert res["num_heldout"] == 10 and [r["standin"] for r in res["rows"]] == ["heldout", "half-random"]
    assert [r["num"] for r in res["rows"]] == [10, 5] and "copy_flag_rate" not in res["rows"][0]
    assert res["rows"][1].get("precision") is None and res["rows"][1]["fid"] > 0   # 5 images: FID/KID only
    assert any("too few for precision/recall" in w for w in res["warnings"])
    with pytest.raises(Exception, match="unknown stand-in"):
        cal.calibration_scale(avatars_a, held_out, standins=["sharpen"])


def test_degradations_are_what_they_say():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    flat = np.full((1, 16, 16, 3), 100, np.uint8)
    np.testing.assert_array_equal(cal.blur(flat, 2.0), flat)         # blur keeps a constant image
    assert cal.blur(x, 2.0).std() < 0.5 * x.std()
    noisy = cal.noise(np.full((4, 64, 64, 3), 128, np.uint8), 16, seed=1).astype(float) - 128
    assert abs(noisy.std() - 16) < 0.5 and abs(noisy.mean()) < 0.5
    shifted = cal.colour_cast(np.full((1, 2, 2, 3), 100, np.uint8), 24)
    assert shifted[0, 0, 0].tolist() == [124, 100, 76]
    assert np.abs(cal.jpeg(x, 20).astype(int) - x).mean() > np.abs(cal.jpeg(x, 90).astype(int) - x).mean() > 0


def test_mode_dropping_removes_whole_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, size=(6, 5))
    feats = np.concatenate([c + rng.normal(0, 0.1, size=(10, 5)) for c in centres])
    keep = cal.mode_drop_indices(feats, clusters=6)
    kept_groups = set((keep // 10).tolist())
    assert len(kept_groups) == 3 and len(keep) == 30   # three whole groups kept, none partly


def test_overlapping_sets_are_refused(avatars_a, tmp_path, capsys):
    import shutil

    held = tmp_path / "held"
    shutil.copytree(avatars_a, held)
    assert cli.main(["calibrate", "--train", str(avatars_a), "--heldout", str(held), "--standins", "blur-2",
                     "--device", "cpu", "-q", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "pixel-identical to training images" in err and "Traceback" not in err

    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(avatars_a / sorted(p.name for p in avatars_a.iterdir())[0], broken / "a.png")
    (broken / "b.png").write_bytes(b"not an image")
    assert cli.main(["calibrate", "--train", str(held), "--heldout", str(broken), "--device", "cpu", "-q",
                     "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "b.png cannot be read" in err and "Traceback" not in err


def test_skip_bad_leaves_unreadable_files_out_and_says_so(held_out, avatars_a, tmp_path, capsys):
    import shutil

    held = tmp_path / "held"
    shutil.copytree(held_out, held)
    (held / "zz_broken.png").write_bytes(b"not an image")
    out = tmp_path / "o"
    assert cli.main(["calibrate", "--train", str(avatars_a), "--heldout", str(held), "--standins", "heldout",
                     "--no-copycheck", "--skip-bad", "--device", "cpu", "-q", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "--heldout: left out 1 unreadable file(s) (zz_broken.png)" in captured.out + captured.err
    saved = json.loads((out / "calibrate.json").read_text())
    n_good = len(list(held_out.glob("*.png")))
    assert saved["num_heldout"] == n_good and saved["rows"][0]["num"] == n_good
    assert any("zz_broken.png" in w for w in saved["warnings"])
