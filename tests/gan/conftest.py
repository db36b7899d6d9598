"""Fixtures for the gan tests: a toy data set written at test time and one tiny trained run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gan.config import preset

# The CI machine has 2 cores shared with other suites; one intra-op thread avoids OpenMP
# oversubscription, which made steps 4-10x slower in our measurements.
torch.set_num_threads(1)

TOY_COLOURS = np.array([[230, 40, 40], [40, 60, 220], [40, 200, 80], [240, 220, 50]], np.uint8)


def toy_images(res: int = 16) -> np.ndarray:
    """8 trivially learnable images: 4 solid colours and 4 two-colour (left/right) splits."""
    images = []
    for i, colour in enumerate(TOY_COLOURS):
        solid = np.empty((res, res, 3), np.uint8)
        solid[:] = colour
        split = solid.copy()
        split[:, res // 2:] = TOY_COLOURS[(i + 1) % len(TOY_COLOURS)]
        images += [solid, split]
    return np.stack(images)


def write_images(folder, images: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")


def tiny_config(data, disc: str = "resnet", res: int = 16, **train):
    """The cpu-tiny preset shrunk further so a step takes a few tens of milliseconds."""
    cfg = preset("cpu-tiny", res, disc)
    cfg.data = str(data)
    cfg.G.z_dim = cfg.G.w_dim = 32
    cfg.G.channel_max = cfg.resnet.channel_max = 32
    cfg.vit.dim, cfg.vit.heads = 32, 2
    cfg.train.batch = 4
    cfg.train.grid_size = 2
    cfg.train.r1_gamma = 0.05
    cfg.train.d_reg_interval = 4
    cfg.train.pl_weight = 1.0         # exercise path-length regularisation too
    cfg.train.g_reg_interval = 4
    cfg.augment.p = 0.2               # so the augmentation path is part of every step
    cfg.augment.ada_kimg = 2.0
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg.validate()


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy") / "data"
    write_images(folder, toy_images(16))
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, toy_data):
    """A finished 16 px run (2 snapshots) and the trainer object as it was at the end."""
    from gan.train import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = tiny_config(toy_data, total_kimg=0.048, snapshot_kimg=0.024, log_kimg=0.008)
    captured = {}
    train(cfg, run_dir, progress=False, device="cpu", on_step=lambda t: captured.update(trainer=t))
    return run_dir, captured["trainer"], cfg


def gan_cli(argv, capsys) -> tuple[int, str, str]:
    """Run `gan ARGV` in this process as the console script would: (exit code, stdout, stderr)."""
    from gan.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


# Shared here, not imported from sibling test modules: the tests directory is named like the
# product package, so a relative import of a not-yet-collected test module resolves into `gan`.
def small_cfg(res, disc="resnet", mapping="standard"):
    cfg = preset("cpu-tiny", res, disc)
    cfg.G.z_dim = cfg.G.w_dim = 32
    cfg.G.channel_max = cfg.resnet.channel_max = 32
    cfg.G.mapping = mapping
    cfg.vit.dim, cfg.vit.heads = 32, 2
    return cfg.validate()


# `gan train` flags for a 16 px run that snapshots every 24 images (the resume and bad-input tests).
FLAGS = ["--preset", "cpu-tiny", "--res", "16", "--batch", "4", "--z-dim", "32", "--w-dim", "32",
         "--cmax", "32", "--d-cmax", "32", "--gamma", "0.05", "--pl-weight", "1", "--aug-p", "0.2",
         "--ada-kimg", "2", "--snap", "0.024", "--log-kimg", "0.008",
         "--set", "train.d_reg_interval=4", "--set", "train.grid_size=2"]
