"""Feature cache reuse and atomicity, weight verification, and the CLI's --json schema."""
import json
import shutil

import numpy as np
import pytest
import torch

import evalkit.extract.features as features_mod
from evalkit import api, cli
from evalkit.extract import weights
from evalkit.extract.cache import CachedFeatures, FeatureCache
from evalkit.errors import WeightsError
from harness_base.home import HOME_ENV

CPU = {"device": torch.device("cpu"), "progress": False}


def test_second_call_reuses_cached_features(avatars_a, avatars_b, monkeypatch):
    first = api.fid(avatars_a, avatars_b, **CPU)

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted again")
    monkeypatch.setattr(features_mod, "extract_source", no_extraction)
    second = api.fid(avatars_a, avatars_b, **CPU)
    assert second["fid"] == first["fid"]
    assert all(s["from_cache"] for s in second["sources"])


def test_changed_content_invalidates_the_cache(tmp_path, avatars_a):
    d = tmp_path / "copy"
    shutil.copytree(avatars_a, d)
    before = api.source_stats(d, **CPU)
    (d / "000000.png").write_bytes((avatars_a / "000001.png").read_bytes())  # same name, new content
    after = api.source_stats(d, **CPU)
    assert not after.from_cache
    assert not np.allclose(before.mu, after.mu)


def test_killed_write_leaves_no_entry_and_corrupt_entries_are_recomputed(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    entry = CachedFeatures(np.ones((3, 4), np.float32), ["a", "b", "c"], [], {"source": "x"})

    def dies_mid_write(file, **arrays):
        with open(file, "wb") as f:
            f.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt  # as if the process were killed here
    monkeypatch.setattr(np, "savez", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        cache.save("k", entry)
    monkeypatch.undo()
    assert cache.load("k") is None
    assert list((tmp_path / "cache").iterdir()) == []  # no partial file left behind
    cache.save("k", entry)
    loaded = cache.load("k")
    assert np.array_equal(loaded.features, entry.features) and loaded.names == ["a", "b", "c"]
    cache.path("k").write_bytes(b"corrupted on disk")
    assert cache.load("k") is None and not cache.path("k").exists()


def test_cache_list_and_clear_cli(avatars_a, capsys):
    api.source_stats(avatars_a, **CPU)
    assert cli.main(["cache", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["source"] == str(avatars_a) and r["num_images"] == 60 for r in rows)
    assert cli.main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out
    assert cli.main(["cache", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_fid_json_schema(avatars_a, avatars_b, capsys):
    assert cli.main(["fid", str(avatars_a), str(avatars_b), "--json", "--quiet", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["fid"], float) and out["fid"] > 0
    assert out["num_images"] == [60, 60]
    assert out["feature_extractor"]["id"] == "inception-v3-tf-2015-12-05/pool3"
    assert out["feature_extractor"]["weights_sha256"] == weights.require("inception")[1]
    assert out["feature_extractor"]["dims"] == 2048
    assert out["resize"] == "clean"
    assert [s["kind"] for s in out["sources"]] == ["folder", "folder"]
    assert isinstance(out["warnings"], list)


def test_stats_file_round_trip_and_clean_fid_style_npz(tmp_path, avatars_a, avatars_b, capsys):
    stats_a = tmp_path / "a.npz"
    assert cli.main(["stats", str(avatars_a), "-o", str(stats_a), "--quiet", "--device", "cpu"]) == 0
    direct = api.fid(avatars_a, avatars_b, **CPU)["fid"]
    via_file = api.fid(stats_a, avatars_b, **CPU)
    assert via_file["fid"] == pytest.approx(direct, rel=1e-12)
    assert via_file["sources"][0]["kind"] == "stats" and via_file["num_images"][0] == 60
    with np.load(stats_a) as data:  # a file with only mu/sigma, as clean-fid writes
        np.savez(tmp_path / "plain.npz", mu=data["mu"], sigma=data["sigma"])
    plain = api.fid(tmp_path / "plain.npz", avatars_b, **CPU)
    assert plain["fid"] == pytest.approx(direct, rel=1e-12)
    assert any("without provenance" in w for w in plain["warnings"])


def test_error_exit_code_and_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["fid", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 1  # a runtime error
    err = capsys.readouterr().err
    assert err.startswith("evalkit fid: error: ") and "is empty" in err and "Traceback" not in err


def test_missing_weights_name_the_fix(env_without_weights, avatars_a):
    with pytest.raises(WeightsError, match=r"evalkit weights install"):
        api.fid(avatars_a, avatars_a, **CPU)


def test_corrupted_weight_file_is_rejected(tmp_path, monkeypatch, real_weights_dir):
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    corrupt = home / "weights" / "inception-2015-12-05.pt"
    shutil.copyfile(real_weights_dir / "inception-2015-12-05.pt", corrupt)
    with open(corrupt, "r+b") as f:  # flip one byte in the middle of the tensors
        f.seek(40_000_000)
        byte = f.read(1)
        f.seek(40_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv(HOME_ENV, str(home))
    weights.clear_process_cache()
    with pytest.raises(WeightsError, match=r"matches none of the accepted files.*--force"):
        weights.require("inception")
    with pytest.raises(WeightsError, match="not an accepted inception file"):
        weights.install("inception", local_file=corrupt)
    assert cli.main(["weights", "status"]) == 1


def test_install_from_a_local_file_verifies_and_copies(tmp_path, monkeypatch, real_weights_dir, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV, str(home))
    weights.clear_process_cache()
    source = real_weights_dir / "lpips-alexnet.ckpt"
    assert cli.main(["weights", "install", "--only", "lpips-alex", "--lpips-alex", str(source)]) == 0
    installed = home / "weights" / "lpips-alexnet.ckpt"
    assert weights.sha256_file(installed) == weights.LPIPS_ALEX.variants[0].sha256
    assert weights.status("lpips-alex").ok
