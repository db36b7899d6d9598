"""Bad input to `gan`: one test per case, each checking the exit code, the message (one paragraph,
no traceback) and that nothing was computed or left half-written.

Read-only and full output folders are real file systems: a read-only and a 64 kB tmpfs mounted in a
private mount namespace (`unshare -m`) for the command alone; skipped where that is not permitted.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from gan.api import list_snapshots, load_generator
from gan.checkpoint import FORMAT

from .conftest import FLAGS, gan_cli, toy_images, write_images

TRAIN = FLAGS + ["--kimg", "0.016", "--snap", "0.008", "--quiet"]


def one_paragraph(err: str) -> bool:
    return "Traceback" not in err and err.strip().count("\n") == 0 and err.startswith("gan ")


@functools.lru_cache(maxsize=1)
def _mount_namespaces_work() -> bool:
    probe = "/tmp"
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=4k none {probe}"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def gan_with_mount(mount_point, options: str, args, timeout: int = 240) -> subprocess.CompletedProcess:
    """`python -m gan ARGS` with a fresh tmpfs mounted (with `options`) on `mount_point`, seen by it alone."""
    if not shutil.which("unshare") or not _mount_namespaces_work():
        pytest.skip("mounting a file system in a private mount namespace (unshare -m) is not permitted here")
    mount_point.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {options} none "{mount_point}" && exec "$0" "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, sys.executable, "-m", "gan", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_train_into_a_read_only_folder_fails_before_any_work(tmp_path, toy_data):
    done = gan_with_mount(tmp_path / "ro", "ro,size=64k", ["train", *TRAIN, "--data", toy_data,
                                                          "--out", tmp_path / "ro" / "run"])
    assert done.returncode == 1 and one_paragraph(done.stderr), done.stderr
    assert "the file system is read-only" in done.stderr and "--out" in done.stderr
    assert "G " not in done.stderr           # stopped before the networks were built (no first log line)


def test_generate_into_a_read_only_folder(tiny_run, tmp_path):
    done = gan_with_mount(tmp_path / "ro", "ro,size=64k", ["generate", tiny_run[0], "--seeds", "0-3",
                                                          "--out", tmp_path / "ro" / "g", "--quiet"])
    assert done.returncode == 1 and one_paragraph(done.stderr), done.stderr
    assert f"cannot write {tmp_path / 'ro' / 'g'}: the file system is read-only" in done.stderr


def test_a_full_disk_during_training_never_leaves_a_grid_without_its_checkpoint(tmp_path, toy_data):
    tiny = tmp_path / "tiny"
    script = (f'mount -t tmpfs -o size=64k none "{tiny}" && "$0" "$@"; code=$?; '
              f'ls -a "{tiny}/run/checkpoints" "{tiny}/run/samples"; exit $code')
    if not shutil.which("unshare") or not _mount_namespaces_work():
        pytest.skip("mounting a file system in a private mount namespace (unshare -m) is not permitted here")
    tiny.mkdir()
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, sys.executable, "-m", "gan", "train", *TRAIN,
                           "--data", str(toy_data), "--out", str(tiny / "run")],
                          capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "no space left on the device" in done.stderr
    listing = done.stdout.split()           # what the tmpfs held when the command ended
    grids = [n for n in listing if n.startswith("samples-")]
    snapshots = [n for n in listing if n.startswith("snapshot-")]
    for grid in grids:                      # every sample grid has its checkpoint
        assert f"snapshot-{grid[len('samples-'):-len('.png')]}.safetensors" in snapshots
    assert not [n for n in listing if ".tmp-" in n]     # no half-written file


def test_cuda_without_a_gpu_is_one_message_before_any_work(tmp_path, toy_data, tiny_run, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = gan_cli(["train", *TRAIN, "--data", toy_data, "--out", tmp_path / "run", "--device", "cuda"], capsys)
    assert code == 1 and one_paragraph(err) and "Run with --device cpu" in err
    assert not (tmp_path / "run").exists()
    code, _, err = gan_cli(["generate", tiny_run[0], "--seeds", "0-1", "--out", tmp_path / "g", "--device", "cuda:0"],
                           capsys)
    assert code == 1 and one_paragraph(err) and "CUDA is not usable here" in err
    assert not (tmp_path / "g").exists()


def test_ctrl_c_keeps_the_last_snapshot_and_says_how_to_continue(tmp_path, toy_data):
    run = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "gan", "train", *FLAGS, "--data", str(toy_data), "--out", str(run),
                              "--kimg", "100", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.time() + 240
        while not list(run.glob("checkpoints/snapshot-*.safetensors")):
            assert child.poll() is None, child.stderr.read()
            assert time.time() < deadline, "no snapshot within 240 s"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        err = child.communicate(timeout=120)[1]
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, err
    last = list_snapshots(run)[-1].path
    assert err.splitlines()[-1] == (f"gan train: interrupted. Kept the last complete snapshot, {last}; "
                                    f"`gan train --resume {run}` continues from it.")
    assert "Traceback" not in err
    assert not list(run.rglob(".*.tmp-*"))


@pytest.mark.parametrize("command", [
    ["generate", "--seeds", "0-3", "--psi", "nan"], ["generate", "--seeds", "0-3", "--psi", "inf"],
    ["truncation-grid", "--psi", "1,0.5,-inf"], ["style-mix", "--rows", "0", "--cols", "1", "--psi", "nan"],
])
def test_psi_must_be_finite_at_parse_time(tiny_run, tmp_path, capsys, command):
    out = tmp_path / "out"
    code, _, err = gan_cli([command[0], tiny_run[0], *command[1:], "--out", out], capsys)
    assert code == 2 and "is not a finite number" in err
    assert not out.exists()


def test_psi_must_be_finite_in_the_python_api(tiny_run):
    gen = load_generator(tiny_run[0])
    for psi in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="psi must be a finite number"):
            next(gen.images(seeds=[0], psi=psi))
        with pytest.raises(ValueError, match="psi must be a finite number"):
            gen.mapping(gen.z_for_seeds([0]), psi=psi)


def test_a_reversed_seed_range_says_so(tiny_run, tmp_path, capsys):
    code, _, err = gan_cli(["generate", tiny_run[0], "--seeds", "5-1", "--out", tmp_path / "g"], capsys)
    assert code == 2 and "'5-1' is a reversed range" in err and "write 1-5" in err


@pytest.mark.parametrize("args, message", [
    (["train", "--batch", "0"], "0 is out of range: a whole number >= 1"),
    (["train", "--threads", "-1"], "-1 is out of range: a whole number >= 1"),
    (["train", "--kimg", "0"], "0 is out of range: a finite number in (0"),
    (["train", "--aug-p", "1"], "1 is out of range"),
    (["train", "--glr", "nan"], "not a finite number"),
    (["avatars", "OUT", "--n", "0"], "0 is out of range"),
    (["dataset", "SRC", "OUT", "--res", "32", "--min-size", "0"], "0 is out of range"),
    (["generate", "RUN", "--seeds", "0", "--batch", "0"], "0 is out of range"),
])
def test_counts_and_sizes_are_range_checked(args, message, tmp_path, capsys):
    code, _, err = gan_cli([str(tmp_path / a) if a in ("OUT", "SRC", "RUN") else a for a in args], capsys)
    assert code == 2 and message in err
    assert list(tmp_path.iterdir()) == []


def test_training_on_two_images_warns_what_the_result_is_worth(tmp_path, capsys):
    write_images(tmp_path / "two", toy_images(16)[:2])
    code, _, err = gan_cli(["train", *TRAIN, "--kimg", "0.004", "--snap", "0.004", "--data", tmp_path / "two",
                            "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    assert "holds only 2 training images" in err and "at best reproduce them" in err


def test_resume_after_the_data_moved(tmp_path, capsys):
    data, moved = tmp_path / "data", tmp_path / "elsewhere" / "data"
    write_images(data, toy_images(16))
    run = tmp_path / "run"
    code, _, err = gan_cli(["train", *TRAIN, "--kimg", "0.004", "--snap", "0.004", "--data", data, "--out", run],
                           capsys)
    assert code == 0, err
    moved.parent.mkdir()
    data.rename(moved)
    code, _, err = gan_cli(["train", "--resume", run, "--kimg", "0.008", "--quiet"], capsys)
    assert code == 1 and one_paragraph(err)
    assert f"{data}, is not there any more" in err and f"--resume {run} --data NEW_PATH" in err
    other = tmp_path / "other"
    write_images(other, toy_images(16)[:5])
    code, _, err = gan_cli(["train", "--resume", run, "--kimg", "0.008", "--data", other, "--quiet"], capsys)
    assert code == 1 and "does not hold the training data" in err
    assert [s.kimg for s in list_snapshots(run)] == [0.004]
    code, _, err = gan_cli(["train", "--resume", run, "--kimg", "0.008", "--data", moved, "--quiet"], capsys)
    assert code == 0, err
    assert [s.kimg for s in list_snapshots(run)] == [0.004, 0.008]
    assert json.loads((run / "config.json").read_text())["data"] == str(moved)


def _fake_checkpoint(path, **metadata):
    save_file({"G_ema.w": torch.zeros(1)}, str(path), metadata=metadata)
    return path


def test_a_checkpoint_header_that_is_not_json_names_the_file(tmp_path, capsys):
    bad = _fake_checkpoint(tmp_path / "bad.safetensors", format=FORMAT, config="{not json", state="{}")
    code, _, err = gan_cli(["generate", bad, "--seeds", "0", "--out", tmp_path / "g"], capsys)
    assert code == 1 and one_paragraph(err)
    assert f"{bad}: the checkpoint header field 'config' is not valid JSON" in err
    assert not list((tmp_path / "g").glob("*.png"))


def test_a_checkpoint_of_the_previous_format_is_refused_with_the_reason(tmp_path, capsys):
    old = _fake_checkpoint(tmp_path / "old.safetensors", format="gan-harness-checkpoint/1", config="{}", state="{}")
    code, _, err = gan_cli(["truncation-grid", old, "--out", tmp_path / "t.png"], capsys)
    assert code == 1 and one_paragraph(err)
    assert "written by an older version of gan" in err and "upsampling convolution" in err
    assert not (tmp_path / "t.png").exists()


def test_a_corrupt_snapshot_image_grid_is_never_needed_to_sample(tiny_run, tmp_path, capsys):
    """Sampling reads checkpoints only: a run dir whose sample grids are gone still generates."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run[0], copy)
    shutil.rmtree(copy / "samples")
    code, out, err = gan_cli(["generate", copy, "--seeds", "0-1", "--out", tmp_path / "g", "--quiet", "--json"],
                             capsys)
    assert code == 0, err
    assert json.loads(out)["images"] == 2 and sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        "seed0000.png", "seed0001.png"]
    assert Image.open(tmp_path / "g" / "seed0000.png").size == (16, 16)
