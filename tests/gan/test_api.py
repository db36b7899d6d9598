"""Run dir layout, checkpoints and the public API that evalkit uses."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gan.api import (LoadedGenerator, list_snapshots, load_generator, read_run_config, resolve_checkpoint)
from gan.checkpoint import FORMAT, load_tensors, read_metadata
from gan.config import RunConfig
from gan.sample import synthesize


def test_run_dir_layout(tiny_run, toy_data):
    run_dir, trainer, cfg = tiny_run
    snaps = list_snapshots(run_dir)
    assert [s.kimg for s in snaps] == [0.024, 0.048]
    assert [s.path.name for s in snaps] == ["snapshot-000000.024.safetensors", "snapshot-000000.048.safetensors"]
    config = read_run_config(run_dir)
    assert config["data"] == str(toy_data.resolve()) and config["resolution"] == 16
    assert config["disc"] == "resnet"
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "reals.png", "samples-000000.024.png", "samples-000000.048.png"]
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["nimg"] for e in lines] == [8, 16, 24, 32, 40, 48]
    assert {"loss_G", "loss_D", "ada_p", "r_t", "img_per_s", "s_per_kimg", "kimg"} <= set(lines[-1])
    assert lines[-1]["ada_p"] == pytest.approx(trainer.augment_pipe.p)


def test_checkpoint_holds_full_training_state(tiny_run):
    run_dir, trainer, cfg = tiny_run
    path = resolve_checkpoint(run_dir)
    assert path == list_snapshots(run_dir)[-1].path
    meta = read_metadata(path)
    assert RunConfig.from_dict(meta["config"]) == cfg
    state = meta["state"]
    assert state["nimg"] == 48 and state["step"] == 12
    assert state["ada_p"] == trainer.augment_pipe.p and state["pl_mean"] == pytest.approx(float(trainer.loss.pl_mean))
    prefixes = {key.split(".")[0] for key in load_tensors_all(path)}
    assert prefixes == {"G", "D", "G_ema", "opt_G", "opt_D"}
    torch.testing.assert_close(load_tensors(path, "D")["blocks.0.conv0.weight"],
                               trainer.D.blocks[0].conv0.weight.detach(), rtol=0, atol=0)
    exp_avg = load_tensors(path, "opt_G")["state.0.exp_avg"]
    assert exp_avg.abs().sum() > 0


def load_tensors_all(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def test_save_load_gives_identical_images(tiny_run):
    run_dir, trainer, _ = tiny_run
    gen = load_generator(run_dir)
    assert isinstance(gen, LoadedGenerator)
    assert (gen.resolution, gen.z_dim, gen.num_ws, gen.kimg) == (16, 32, 6, 0.048)
    assert gen.config["disc"] == "resnet" and gen.device == torch.device("cpu")
    seeds = [5, 0, 17, 3, 9]
    loaded = np.concatenate(list(gen.images(seeds=seeds, psi=0.7, batch_size=2)))
    original = np.concatenate(list(synthesize(trainer.G_ema, gen.z_for_seeds(seeds), psi=0.7)))
    assert loaded.dtype == np.uint8 and loaded.shape == (5, 16, 16, 3)
    np.testing.assert_array_equal(loaded, original)
    torch.testing.assert_close(gen.w_avg, trainer.G_ema.mapping.w_avg, rtol=0, atol=0)


def test_images_api_contract(tiny_run):
    gen = load_generator(tiny_run[0])
    z = gen.z_for_seeds([1, 2, 3])
    np.testing.assert_array_equal(z.numpy(), np.stack([np.random.RandomState(s).randn(32) for s in [1, 2, 3]])
                                  .astype(np.float32))
    by_seed = np.concatenate(list(gen.images(seeds=[1, 2, 3])))
    by_z = np.concatenate(list(gen.images(z=z, batch_size=1)))
    np.testing.assert_array_equal(by_seed, by_z)
    one = next(gen.images(seeds=[3]))
    np.testing.assert_array_equal(one[0], by_seed[2])  # seed order, independent of batching
    batches = list(gen.images(seeds=range(5), batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    # mapping + synthesis by hand equals images(), with StyleGAN2-ADA quantisation
    with torch.inference_mode():
        ws = gen.mapping(z, psi=-0.5)
        x = gen.synthesis(ws, noise_mode="const")
        manual = (x * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(manual, np.concatenate(list(gen.images(z=z, psi=-0.5))))
    assert ws.shape == (3, gen.num_ws, 32) and x.dtype == torch.float32
    psi0 = np.concatenate(list(gen.images(seeds=[1, 2], psi=0)))
    np.testing.assert_array_equal(psi0[0], psi0[1])  # psi = 0: every seed is w_avg
    assert not np.array_equal(*np.concatenate(list(gen.images(seeds=[1, 2], psi=1.3))))
    with pytest.raises(ValueError, match="exactly one of seeds or z"):
        next(gen.images(seeds=[1], z=z))
    with pytest.raises(ValueError, match="noise_mode"):
        next(gen.images(seeds=[1], noise_mode="loud"))


def test_list_snapshots_ignores_partial_files_and_rejects_non_run_dirs(tiny_run, tmp_path):
    run_dir = tiny_run[0]
    partial = run_dir / "checkpoints" / ".snapshot-000000.072.safetensors.tmp-abc"
    partial.write_bytes(b"half a file")
    try:
        assert [s.kimg for s in list_snapshots(run_dir)] == [0.024, 0.048]
    finally:
        partial.unlink()
    with pytest.raises(FileNotFoundError, match="not a gan run dir"):
        list_snapshots(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a gan run dir"):
        read_run_config(tmp_path)


def test_load_generator_rejects_foreign_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04 this is a pickle, not a checkpoint")
    with pytest.raises(ValueError, match="not a gan checkpoint"):
        load_generator(junk)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "someone-else"})
    with pytest.raises(ValueError, match=f"format={FORMAT!r}"):
        load_generator(other)
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "missing.safetensors")
