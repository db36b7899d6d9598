"""Feature extraction sharded over two torchrun processes (gloo, CPU) equals one process."""
import os
import socket
import subprocess
import sys

import numpy as np
import torch

from evalkit import api


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_sharding_matches_one_process(tmp_path, avatars_b, isolated_home):
    out = tmp_path / "sharded.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GAN_HARNESS_HOME": str(isolated_home)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "evalkit", "stats", str(avatars_b), "-o", str(out), "--features", "--no-cache", "--device", "cpu",
           "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = api.source_stats(avatars_b, device=torch.device("cpu"), progress=False)
    with np.load(out) as data:
        sharded = data["features"]
        assert np.allclose(data["mu"], single.mu, rtol=0, atol=1e-6)
    assert sharded.shape == single.features.shape == (60, 2048)
    # same images, same order; each rank runs the same network, so rows agree to float rounding
    assert np.abs(sharded - single.features).max() < 1e-4
