"""`python -m bench gpu --dry-run`: the GPU check's script runs end to end on the CPU and writes its
report (the GPU run itself cannot happen here). The FID step is left out: two Inception runs on the
CPU take minutes on a loaded 2-core machine; `python -m bench gpu --dry-run` runs it by hand."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(tmp_path, *extra) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-m", "bench", "gpu", "--dry-run", "--out", str(tmp_path), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / "bench-gpu.json").read_text()), done.stdout


def test_the_gpu_check_runs_as_a_dry_run_and_reports(tmp_path):
    report, table = _dry_run(tmp_path, "--skip-fid")
    assert report["dry_run"] is True and report["anchors_s_kimg"] == {"A100": 12.53, "V100": 20.84}
    tests = report["tests"]
    assert tests["status"] == "ok" and tests["skipped"] >= 10 and tests.get("failed", 0) == 0   # no GPU: skipped
    rows = report["training"]
    assert [(r["disc"], r["status"]) for r in rows] == [("resnet", "ok"), ("vit", "ok")]
    for row in rows:
        assert row["s_kimg"] > 0 and row["img_s"] > 0 and row["params_G"] > 0 and row["precision"] == "fp32"
        assert row["ratio_to_a100_anchor"] == pytest.approx(row["s_kimg"] / 12.53)
    assert report["fid"]["status"] == "skipped (--skip-fid)"
    assert "cuda-marked tests: " in table and "x A100 anchor" in table and "wrote " in table
