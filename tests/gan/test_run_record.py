"""What a run records about itself (config.json 'resolved', checkpoint header, first log line), the
dataset x-flip, and a run surviving a non-finite gradient."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gan.api import list_snapshots, load_generator
from gan.checkpoint import read_metadata
from gan.train import DataStream, train

from .conftest import tiny_config


def test_mirror_doubles_the_data_each_image_and_flip_once_per_epoch():
    images = torch.arange(5 * 3 * 2 * 4, dtype=torch.uint8).reshape(5, 3, 2, 4)  # 5 asymmetric images
    stream = DataStream(images, seed=3, mirror=True)
    assert len(stream) == 10 and len(DataStream(images, seed=3)) == 5
    epoch = torch.cat([stream.batch(nimg, 2) for nimg in range(0, 10, 2)])
    expected = sorted(x.numpy().tobytes() for x in torch.cat([images, images.flip(-1)]))
    assert sorted(x.numpy().tobytes() for x in epoch) == expected       # all 10, none twice
    assert torch.equal(images[0], torch.from_numpy(np.asarray(images[0])))  # the source is never modified


def test_a_run_records_precision_parameters_lr_and_data(tmp_path, toy_data, capsys):
    cfg = tiny_config(toy_data, total_kimg=0.008, snapshot_kimg=0.008, log_kimg=0.008)
    cfg.train.mirror = True
    run_dir = tmp_path / "run"
    train(cfg, run_dir, progress=False, device="cpu")
    first_line = capsys.readouterr().err.splitlines()[0]
    config = json.loads((run_dir / "config.json").read_text())
    resolved = config["resolved"]
    assert config["train"]["mirror"] is True
    assert resolved["data"] == {"images": 8, "mirror": True, "effective_images": 16,
                                "listing": resolved["data"]["listing"]}
    gen = load_generator(run_dir)
    G_params = sum(p.numel() for p in gen.G.parameters())
    nets = resolved["networks"]
    assert nets["G"]["params"] == G_params and nets["G"]["lr"] == cfg.train.g_lr
    assert nets["D"]["kind"] == "resnet" and nets["D"]["lr"] == cfg.train.d_lr and nets["D"]["mbstd_group"] == 4
    assert resolved["precision"]["reduced"] == "fp32" and resolved["tf32"] is False
    assert resolved["device"] == "cpu"
    assert read_metadata(list_snapshots(run_dir)[-1].path)["resolved"] == resolved
    assert first_line.startswith(f"G {G_params / 1e6:.2f}M params, lr {cfg.train.g_lr:g} (fp32); D resnet ")
    assert "TF32 off" in first_line and "data 8 images x2 mirrored = 16" in first_line


def test_vit_geometry_and_minibatch_std_are_recorded(tmp_path, toy_data):
    cfg = tiny_config(toy_data, total_kimg=0.004, snapshot_kimg=0.004, log_kimg=0.004)
    cfg.disc = "vit"
    cfg.vit.patch, cfg.vit.extend, cfg.vit.mbstd_group = 4, 1, 2
    train(cfg.validate(), tmp_path / "run", progress=False, device="cpu")
    d = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["networks"]["D"]
    assert {k: d[k] for k in ("kind", "patch", "extend", "window", "stride", "tokens", "mbstd_group")} == {
        "kind": "vit", "patch": 4, "extend": 1, "window": 6, "stride": 4, "tokens": 16, "mbstd_group": 2}


def test_the_default_vit_at_256px_patches_like_the_reference_vit_d():
    """16 px stride, 24 px windows (CcccYxx/stylegan2-ada-pytorch's ViT-D), padded so that 16x16
    tokens cover every pixel."""
    from gan.config import preset, vit_patch_geometry
    from gan.nets import build_discriminator

    cfg = preset("gpu", 256, "vit")
    assert vit_patch_geometry(cfg.vit, 256) == (16, 4)
    with torch.device("meta"):
        D = build_discriminator(cfg)
    assert D.num_patches == 256 and D.kernel == 24 and D.mbstd is not None


def test_an_injected_inf_gradient_does_not_end_the_run(tmp_path, toy_data):
    """The gradient of one D weight is set to +inf in one step's backward; nan_to_num turns it into
    1e5 before Adam's step (StyleGAN2-ADA), so the weights stay finite and the run finishes."""
    cfg = tiny_config(toy_data, total_kimg=0.024, snapshot_kimg=0.012, log_kimg=0.004)
    injected = []

    def inject(trainer):
        if trainer.step_index == 2 and not injected:
            param = trainer.D.blocks[0].conv0.weight
            handle = param.register_hook(lambda g: torch.full_like(g, float("inf")))
            injected.append((param, handle))
        elif injected and trainer.step_index == 4:
            injected[0][1].remove()

    last = train(cfg, tmp_path / "run", progress=False, device="cpu", on_step=inject)
    assert injected and last is not None
    assert [s.kimg for s in list_snapshots(tmp_path / "run")] == [0.012, 0.024]
    param = injected[0][0]
    assert torch.isfinite(param).all()
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["loss_D"]) for e in lines)


@pytest.mark.parametrize("fused", [False, True])
def test_speed_switches_train_on_the_cpu(tmp_path, toy_data, fused):
    """channels_last and fused Adam are GPU speed levers; on the CPU they must change nothing that
    matters (fused Adam is ignored off CUDA and recorded as such)."""
    cfg = tiny_config(toy_data, total_kimg=0.004, snapshot_kimg=0.004, log_kimg=0.004)
    cfg.train.channels_last, cfg.train.fused_adam = True, fused
    train(cfg, tmp_path / "run", progress=False, device="cpu")
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert resolved["channels_last"] is True and resolved["fused_adam"] is False
