"""Exact resume after a kill (even mid-snapshot), and refusing to resume into another config."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open

from gan.api import list_snapshots
from gan.checkpoint import read_metadata
from gan.cli import main as gan_main
from gan.train import train

from .conftest import FLAGS, gan_cli, tiny_config


def all_tensors(path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("disc", ["resnet", "vit"])
def test_kill_and_resume_matches_uninterrupted_run(tmp_path, toy_data, disc):
    flags = FLAGS + ["--disc", disc, "--data", str(toy_data)]
    # Reference: 0.072 kimg (18 steps) without interruption, in this process.
    reference = tmp_path / "reference"
    assert gan_main(["train", *flags, "--out", str(reference), "--kimg", "0.072", "--no-progress"]) == 0

    # Same run in a child process asked for far more images, SIGKILLed once it wrote a snapshot.
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-c", "import torch, sys; torch.set_num_threads(1); "
                              "from gan.cli import main; sys.exit(main(sys.argv[1:]))",
                              "train", *flags, "--out", str(killed), "--kimg", "100", "--no-progress"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while not list(killed.glob("checkpoints/snapshot-*.safetensors")):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.time() < deadline, "no snapshot within 240 s"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # What a kill in the middle of writing the next snapshot leaves behind: a torn temp file.
    torn = killed / "checkpoints" / ".snapshot-000000.048.safetensors.tmp-x1"
    torn.write_bytes(b"\0" * 100)
    assert len(list_snapshots(killed)) >= 1

    assert gan_main(["train", "--resume", str(killed), "--kimg", "0.072", "--no-progress"]) == 0
    assert not torn.exists()

    final_ref, final_resumed = list_snapshots(reference)[-1].path, list_snapshots(killed)[-1].path
    assert final_ref.name == final_resumed.name == "snapshot-000000.072.safetensors"
    ref, res = all_tensors(final_ref), all_tensors(final_resumed)
    assert ref.keys() == res.keys()
    for key in ref:  # G, D, G_ema, both Adam states, ISN power-iteration vectors, w_avg
        torch.testing.assert_close(res[key], ref[key], rtol=0, atol=1e-6, msg=key)
    s_ref, s_res = read_metadata(final_ref)["state"], read_metadata(final_resumed)["state"]
    for key in ("nimg", "step", "ada_p", "ada_sign_sum", "ada_count", "pl_mean"):
        assert s_res[key] == pytest.approx(s_ref[key], abs=1e-9), key
    # log.jsonl: no duplicated lines from the part that was trained twice
    nimgs = [json.loads(line)["nimg"] for line in (killed / "log.jsonl").read_text().splitlines()]
    assert nimgs == sorted(set(nimgs)) and nimgs[-1] == 72


def test_resume_into_a_different_config_is_refused(tiny_run, capsys):
    run_dir = tiny_run[0]
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    code, _, err = gan_cli(["train", "--resume", run_dir, "--batch", "8"], capsys)
    assert code == 2 and re.search(r"cannot change the run's configuration.*train.batch: 4 vs 8", err)
    code, _, err = gan_cli(["train", "--resume", run_dir, "--disc", "vit"], capsys)
    assert code == 2 and "disc: 'resnet' vs 'vit'" in err
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before  # nothing touched


def test_snapshot_from_another_config_is_refused(tiny_run, tmp_path, toy_data):
    """A run dir whose config.json was edited after the snapshot was written."""
    run_dir = tiny_run[0]
    cfg = tiny_config(toy_data, total_kimg=0.06, snapshot_kimg=0.024, log_kimg=0.008)
    cfg.G.channel_max = 16
    copy_dir = tmp_path / "copy"
    import shutil
    shutil.copytree(run_dir, copy_dir)
    with pytest.raises(ValueError, match=r"different configuration: G.channel_max: 32 vs 16"):
        train(cfg, copy_dir, resume=True, progress=False, device="cpu")
    assert [s.kimg for s in list_snapshots(copy_dir)] == [0.024, 0.048]


def test_new_run_refuses_existing_run_dir(tiny_run, toy_data):
    run_dir, _, cfg = tiny_run
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, run_dir, progress=False, device="cpu")
