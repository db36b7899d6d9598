"""The calibrated copy check on cartoon faces, with the real LPIPS-AlexNet weights.

Training, calibration (held-out) and fresh faces are python-avatars renders at 64 px (one
distribution, disjoint indices). Planted copies of training faces: exact, ±4-level noise, a 1 px
shift, JPEG at quality 75, and a 2 px crop resized back. The threshold is calibrated on the
held-out faces for a 1% false-alarm rate; the copies must be flagged (≥ 95% of each kind) and the
fresh faces at about the nominal rate.

Candidates come from 16 x 16 downsampled pixels instead of Inception, to keep the test well under
a minute on a CPU; the LPIPS re-ranking and the threshold are the product's. Which copies
Inception candidates reach is the end-to-end test in test_copying.py and the copycheck CLI test.
"""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit.metrics import copying

CPU = torch.device("cpu")
N_TRAIN, N_HELDOUT, N_FRESH, PER_KIND = 100, 150, 150, 20


def _pixels(images: np.ndarray) -> np.ndarray:
    """16 x 16 box-downsampled RGB, flattened: cheap candidate features."""
    n, s = images.shape[:2]
    f = s // 16
    return images.reshape(n, 16, f, 16, f, 3).mean(axis=(2, 4)).reshape(n, -1)


def _jpeg(x: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _crop(x: np.ndarray, px: int = 2) -> np.ndarray:
    s = x.shape[0]
    return np.asarray(Image.fromarray(x[px:s - px, px:s - px]).resize((s, s), Image.BICUBIC))


@pytest.fixture(scope="module")
def faces():
    from gan.avatars import avatar_array

    faces = avatar_array(N_TRAIN + N_HELDOUT + N_FRESH, seed=0, res=64)
    train, heldout, fresh = np.split(faces, [N_TRAIN, N_TRAIN + N_HELDOUT])
    rng = np.random.default_rng(0)
    src = {k: rng.choice(N_TRAIN, PER_KIND, replace=False) for k in ("exact", "noise", "shift", "jpeg", "crop")}
    kinds = {
        "exact": train[src["exact"]],
        "noise": np.clip(train[src["noise"]].astype(np.int16) + rng.integers(-4, 5, (PER_KIND, 64, 64, 3)),
                         0, 255).astype(np.uint8),
        "shift": np.concatenate([train[src["shift"]][:, :, :1], train[src["shift"]][:, :, :-1]], axis=2),
        "jpeg": np.stack([_jpeg(x) for x in train[src["jpeg"]]]),
        "crop": np.stack([_crop(x) for x in train[src["crop"]]]),
    }
    return train, heldout, fresh, kinds, src


@pytest.fixture(scope="module")
def calibrated(faces):
    from evalkit.extract.lpips import pair_distance_fn

    train, heldout, fresh, kinds, src = faces
    gen = np.concatenate([fresh, *kinds.values()])
    res = copying.copy_check(_pixels(gen), _pixels(train), gen_pairs=pair_distance_fn(gen, train, CPU),
                             candidates=10, keep=1, device=CPU, heldout_features=_pixels(heldout),
                             heldout_pairs=pair_distance_fn(heldout, train, CPU), false_alarm=0.01)
    return res, gen


def test_planted_copies_of_every_kind_are_flagged(faces, calibrated):
    train, heldout, fresh, kinds, src = faces
    res, _ = calibrated
    for i, (kind, images) in enumerate(kinds.items()):
        rows = N_FRESH + i * PER_KIND + np.arange(PER_KIND)
        hit = res.flags[rows].mean()
        assert hit >= 0.95, (kind, hit, res.nn_distances[rows].max(), res.tau)
        # and the nearest training face found is the source
        assert (res.neighbours.indices[rows, 0] == src[kind]).mean() >= 0.95, kind


def test_fresh_faces_are_flagged_at_about_the_nominal_rate(calibrated):
    res, _ = calibrated
    th = res.threshold
    assert th.calibrated and th.n == N_HELDOUT and th.warning is None
    # j = ⌊0.01 · 151⌋ = 1: τ is the smallest held-out distance, expected false alarm 1/151
    assert th.false_alarm == pytest.approx(1 / 151)
    assert res.tau == pytest.approx(res.heldout_nn_distances.min())
    assert th.rule.startswith("threshold calibrated on 150 held-out images for a 1% false-alarm rate")
    flagged = int(res.flags[:N_FRESH].sum())
    # measured: 4 of 150 fresh faces (2.7%; nominal 0.66%). With τ the minimum of 150 calibration
    # distances the realised rate is itself random (Beta(1, 150) around 1/151) and the avatar
    # generator's discrete attributes make a few fresh faces near-duplicates of training faces;
    # bench/copying.py measures the rate over more faces. 7 or more of 150 would be > 4.5%.
    assert flagged <= 6, flagged
    assert res.params["calibrated"] and res.params["false_alarm"] == pytest.approx(1 / 151)


def test_calibrated_threshold_order_statistic_and_small_sets():
    d = np.arange(1, 1000, dtype=float)[::-1]  # 999 distances 1..999
    th = copying.calibrated_threshold(d, 0.01)
    assert th.value == 10.0 and th.false_alarm == pytest.approx(10 / 1000) and th.n == 999
    th = copying.calibrated_threshold(d, 0.05)
    assert th.value == 50.0 and th.false_alarm == pytest.approx(0.05)
    small = copying.calibrated_threshold([0.3, 0.2, 0.5], 0.01)
    assert small.value == 0.2 and small.false_alarm == pytest.approx(0.25)
    assert "needs at least 99 held-out images" in small.rule
    with pytest.raises(copying.SampleSizeError, match="at least one held-out"):
        copying.calibrated_threshold([], 0.01)
    with pytest.raises(ValueError, match=r"false-alarm rate must be in \(0, 1\)"):
        copying.calibrated_threshold([0.1], 1.5)


def test_without_heldout_the_train_rule_warns_that_it_is_uncalibrated():
    rng = np.random.default_rng(1)
    train = rng.standard_normal((200, 8))
    res = copying.copy_check(rng.standard_normal((50, 8)), train, device=CPU)
    assert not res.threshold.calibrated and res.threshold.false_alarm is None
    assert res.threshold.warning == copying.UNCALIBRATED_WARNING and "uncalibrated" in res.rule
    assert res.tau == pytest.approx(0.5 * np.percentile(res.train_nn_distances, 5))


def test_copycheck_cli_with_heldout_calibrates_and_reports_ct(tmp_path, avatars32, capsys):
    """`evalkit copycheck --heldout`: the threshold is calibrated and says so, C_T comes with z and
    per-cell Z_U, and the output says what each test can see."""
    import json
    import shutil

    from gan.avatars import write_avatars

    from evalkit import cli

    generated = tmp_path / "generated"
    generated.mkdir()
    train_files = sorted(avatars32.glob("*.png"))
    for i, src in enumerate(train_files[:5]):
        shutil.copy(src, generated / f"copy{i}.png")
    write_avatars(generated / "fresh", 45, seed=99, res=32)
    heldout = tmp_path / "heldout"
    write_avatars(heldout, 60, seed=98, res=32)
    out = tmp_path / "copycheck"
    assert cli.main(["copycheck", str(generated), "--train", str(avatars32), "--heldout", str(heldout),
                     "--out", str(out), "--device", "cpu", "--quiet", "--false-alarm", "0.05"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "copycheck.json").read_text())
    assert summary["threshold_calibrated"] and summary["threshold_warning"] is None
    assert summary["threshold_rule"].startswith("threshold calibrated on 60 held-out images for a 5% false-alarm rate")
    assert summary["false_alarm"] == pytest.approx(3 / 61) and summary["threshold_n"] == 60
    assert "threshold calibrated on 60 held-out images" in printed
    assert summary["n_flagged"] >= 5
    ct = summary["c_t"]
    assert ct["extractor"] == "inception" and ct["n_cells"] == 1  # 50 samples: one cell
    assert ct["z"] == pytest.approx(ct["value"] / ct["null_sd"])
    assert [c["z_u"] for c in ct["cells"]][0] == pytest.approx(ct["value"])
    assert "per-cell Z_U" in printed and "C_T (inception features)" in printed
    sees = summary["what_each_test_sees"]
    assert "inception feature space" in sees["c_t"] and "pixel-level near copies" in sees["lpips_copy_check"]
    assert "what each test can see:" in printed


def test_copycheck_cli_refuses_an_unknown_ct_extractor(tmp_path, avatars32, avatars_b, capsys):
    from evalkit import cli

    code = cli.main(["copycheck", str(avatars32), "--train", str(avatars32), "--heldout", str(avatars_b),
                     "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet", "--ct-extractor", "nosuch"])
    assert code == 1
    assert "unknown feature extractor 'nosuch'" in capsys.readouterr().err


def test_copycheck_cli_without_heldout_warns_uncalibrated(tmp_path, avatars32, capsys):
    from evalkit import cli

    assert cli.main(["copycheck", str(avatars32), "--train", str(avatars32), "--out", str(tmp_path / "o"),
                     "--device", "cpu", "--quiet", "--train-queries", "48", "--num-gen", "8"]) == 0
    printed = capsys.readouterr()
    assert "copy threshold is uncalibrated" in printed.out + printed.err


def test_copycheck_cli_ct_extractor_comes_from_the_registry(tmp_path, avatars32, avatars_b, capsys,
                                                           env_without_weights):
    """`--ct-extractor dinov2` asks the registry for DINOv2's weights before any feature pass; without
    them the message names the extractor and the fix (exit 1, no traceback)."""
    from evalkit import cli

    code = cli.main(["copycheck", str(avatars32), "--train", str(avatars32), "--heldout", str(avatars_b),
                     "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet", "--ct-extractor", "dinov2"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "DINOv2" in err and "evalkit weights install" in err


def _pixels16_cpu(image: np.ndarray) -> np.ndarray:
    """A test feature space: one uint8 (H, W, 3) image box-resized to 16 x 16, as float32 (3, 16, 16)."""
    small = Image.fromarray(image).resize((16, 16), Image.BOX)
    return np.asarray(small, np.float32).transpose(2, 0, 1) / 255.0


def _pixels16_torch(batch):
    return torch.nn.functional.adaptive_avg_pool2d(batch.float() / 255.0, 16)


def _build_pixels16(path, device):
    # a fixed random projection of the 768 pixel values to 32 dimensions (the weight file is not read)
    proj = torch.nn.Linear(768, 32, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.from_numpy(np.random.default_rng(0).normal(size=(32, 768)).astype(np.float32)))
    return torch.nn.Sequential(torch.nn.Flatten(), proj).to(device).eval()


def test_ct_runs_in_the_feature_space_named_by_ct_extractor(tmp_path, avatars32, monkeypatch):
    """`ct_extractor` routes C_T (and only C_T) through another registry entry: its value equals
    data_copying_ct on that space's features of the same three sets, not the Inception one's."""
    from gan.avatars import write_avatars

    from evalkit.extract import registry
    from evalkit.extract.featureset import feature_set
    from evalkit.reports.copycheck import copy_report

    ex = registry.FeatureExtractor(
        name="test-pixels16", id="test-pixels16/projection-32", dims=32, weights="inception",
        preprocessing="box16", description="test only", build=_build_pixels16, preprocess_cpu=_pixels16_cpu,
        preprocess_torch=_pixels16_torch)
    monkeypatch.setitem(registry.EXTRACTORS, ex.name, ex)
    held, gen = tmp_path / "held", tmp_path / "gen"
    write_avatars(held, 40, seed=11, res=32)
    write_avatars(gen, 40, seed=12, res=32)
    opts = dict(device=CPU, progress=False, log=lambda *a: None, train_queries=48, num_workers=0)
    other = copy_report(gen, avatars32, held, out_dir=tmp_path / "a", ct_extractor=ex.name, **opts)
    inception = copy_report(gen, avatars32, held, out_dir=tmp_path / "b", **opts)
    assert other["c_t"]["extractor"] == "test-pixels16" and inception["c_t"]["extractor"] == "inception"
    feats = [feature_set(s, s.name, device=CPU, progress=False, num_workers=0, extractor=ex.name).features
             for s in (avatars32, held, gen)]
    assert feats[0].shape == (48, 32)
    direct = copying.data_copying_ct(*feats, seed=0, device=CPU)
    assert other["c_t"]["value"] == pytest.approx(direct.c_t, rel=1e-9)
    assert other["c_t"]["value"] != pytest.approx(inception["c_t"]["value"], rel=1e-3)
    assert other["copy_score"] == inception["copy_score"]   # the copy check itself stays on Inception
    assert "test-pixels16 feature space" in other["what_each_test_sees"]["c_t"]
