"""`python -m bench gpu`: the one prepared GPU check, at most 8 minutes on one GPU including start-up.

    python -m bench gpu [--dry-run] [--out DIR] [--budget-s 420]

In order, each step in a fresh process with a time limit, all inside one budget:
1. the `cuda`-marked tests (tests/gan/test_cuda.py; evalkit's too when the Inception weights are there);
2. 256 px training throughput of both discriminators (the `gpu` preset: SG2ADA `--cfg=auto` at 256 px,
   batch 16, ADA p = 0.2 fixed, lazy R1 and path length included) in the default precision and in
   fp32, then the speed switches (--channels-last, --fused-adam) on the ResNet row: s/kimg is the
   median over windows of 16 steps after warm-up (each window holds every lazy phase once);
3. a 10k-image FID, evalkit against clean-fid (mode "clean", the same Inception file through
   `custom_feat_extractor`, so clean-fid never downloads) on the same GPU and the same images:
   both FIDs, their relative difference and images/s;
4. peak GPU memory of every row.
It prints one table and writes `bench-gpu.json` (to $OUT if set, else results/), with the GPU name
and the published anchors: StyleGAN2-ADA at 256 px, one GPU, 12.53 s/kimg on an A100 (StyleGAN3
docs/configs.md) and 20.84 on a V100; target: at most 1.25x the anchor.

`--dry-run` runs every step at toy size on the CPU (one row per discriminator with the smoke
networks at 32 px, 8 + 8 images for FID), so the script itself is tested where there is no GPU
(tests/gan/test_bench_gpu.py).

On the lent GPU machine the Inception weights (87 MB) and the clean-fid wheel must travel with the
call; see the README's "GPU check" paragraph for the commands.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANCHORS = {"A100": 12.53, "V100": 20.84}   # s/kimg, StyleGAN2-ADA, 256 px, one GPU (see module docstring)
TARGET_RATIO = 1.25
ROWS = [("resnet", "auto", ()), ("resnet", "fp32", ()), ("vit", "auto", ()), ("vit", "fp32", ()),
        ("resnet", "auto", ("channels_last",)), ("resnet", "auto", ("fused_adam",))]
INCEPTION_FILE = "inception-2015-12-05.pt"
ROOT = Path(__file__).resolve().parent.parent


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def _python(code_or_module: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_module], capture_output=True, text=True, cwd=ROOT,
                          timeout=max(timeout, 1), env={**os.environ, **(env or {})})


def environment() -> dict:
    import platform

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": None, "native_bf16": False, "cpu_cores": os.cpu_count()}
    if torch.cuda.is_available():
        from gan.precision import native_bf16

        device = torch.device("cuda:0")
        info.update(gpu=torch.cuda.get_device_name(device), native_bf16=native_bf16(device),
                    gpu_memory_gib=torch.cuda.get_device_properties(device).total_memory / 2 ** 30)
    return info


def weights_dir() -> Path:
    from harness_base.home import weights_dir as home_weights

    return home_weights()


def run_tests(budget: Budget, dry_run: bool) -> dict:
    """pytest -m cuda; evalkit's fixtures need the Inception weights, so its tests join when they are
    here. Collection errors (a package missing on the machine) are reported without stopping the rest."""
    import re

    targets = ["tests/gan"] + (["tests/evalkit"] if (weights_dir() / INCEPTION_FILE).is_file() else [])
    limit = min(budget.left() - 30, 200)
    cmd = ["-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
           "-o", "addopts=--import-mode=importlib", *targets]
    try:
        done = _python(cmd, limit)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {limit:.0f} s", "targets": targets}
    lines = done.stdout.splitlines()
    summary = next((l for l in reversed(lines) if re.search(r"\d+ (passed|failed|skipped|deselected|error)", l)), "")
    counts = {word.rstrip("s"): int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)",
                                                                 summary)}
    return {"status": "ok" if done.returncode in (0, 5) else "failed", "returncode": done.returncode,
            "summary": summary.strip("= "), "targets": targets, **counts,
            "failures": [l for l in lines if l.startswith(("FAILED", "ERROR"))][:20]}


ROW_CODE = r"""
import json, sys
from bench.gan import measure_training
disc, res, device, warmup, steps, precision, switches, preset = json.loads(sys.argv[1])
print(json.dumps(measure_training(disc, res, device, warmup, steps, precision=precision, switches=tuple(switches),
                                  preset_name=preset)))
"""


def run_training(budget: Budget, dry_run: bool, res: int, warmup: int, steps: int) -> list[dict]:
    device = "cpu" if dry_run else "cuda"
    rows = []
    for disc, precision, switches in (ROWS[::3] if dry_run else ROWS):   # dry run: one row per D, same code
        limit = min(budget.left() - 100, 150)   # leave time for the FID step
        row = {"disc": disc, "requested_precision": precision, "switches": list(switches)}
        if limit < 30:
            rows.append({**row, "status": "skipped (time budget)"})
            continue
        args = [disc, res, device, warmup, steps, precision, list(switches), "smoke" if dry_run else "gpu"]
        try:
            done = _python(["-c", ROW_CODE, json.dumps(args)], limit)
        except subprocess.TimeoutExpired:
            rows.append({**row, "status": f"timeout after {limit:.0f} s"})
            continue
        if done.returncode != 0:
            rows.append({**row, "status": "failed", "error": done.stderr.strip().splitlines()[-3:]})
            continue
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        anchor = ANCHORS["A100"]
        rows.append({**row, **measured, "status": "ok", "anchor_a100_s_kimg": anchor,
                     "ratio_to_a100_anchor": measured["s_kimg"] / anchor,
                     "within_target": measured["s_kimg"] <= TARGET_RATIO * anchor})
    return rows


def _write_image(args) -> None:
    """A smooth random colour field (8x8 noise, bicubic to res), set B darker and warmer than set A."""
    import numpy as np
    from PIL import Image

    path, seed, res, warm = args
    rng = np.random.default_rng(seed)
    low = rng.random((8, 8, 3))
    if warm:
        low = low ** 1.6 * np.array([1.0, 0.8, 0.6])
    img = Image.fromarray((low * 255).astype(np.uint8)).resize((res, res), Image.BICUBIC)
    img.save(path, compress_level=1)


def make_image_sets(work: Path, n: int, res: int) -> tuple[Path, Path]:
    from multiprocessing import Pool

    a, b = work / f"set-a-{n}-{res}", work / f"set-b-{n}-{res}"
    jobs = []
    for folder, offset, warm in ((a, 0, False), (b, 10 ** 6, True)):
        folder.mkdir(parents=True, exist_ok=True)
        jobs += [(folder / f"{i:06d}.png", offset + i, res, warm) for i in range(n)]
    with Pool(min(16, os.cpu_count() or 1)) as pool:
        pool.map(_write_image, jobs, chunksize=64)
    return a, b


def run_fid(budget: Budget, dry_run: bool, n: int, res: int, work: Path) -> dict:
    from bench.fid import CLEAN_FID, EVALKIT
    from bench.measure import run_json
    from harness_base.home import HOME_ENV

    if not (weights_dir() / INCEPTION_FILE).is_file():
        return {"status": f"skipped: {weights_dir() / INCEPTION_FILE} is not on this machine"}
    try:
        import cleanfid  # noqa: F401
    except ImportError:
        return {"status": "skipped: clean-fid is not installed (carry its wheel, see the README)"}
    if budget.left() < (30 if dry_run else 90):
        return {"status": "skipped (time budget)"}
    device = "cpu" if dry_run else "cuda"
    t = time.perf_counter()
    a, b = make_image_sets(work, n, res)
    made = time.perf_counter() - t
    home = work / "harness-home"            # an empty feature cache; the installed weights
    home.mkdir(exist_ok=True)
    if not (home / "weights").exists():
        (home / "weights").symlink_to(weights_dir(), target_is_directory=True)
    env = {**os.environ, HOME_ENV: str(home)}
    try:
        workers = 0 if dry_run else min(12, os.cpu_count() or 1)     # clean-fid's default is 12
        ref = run_json(CLEAN_FID, [str(a), str(b), device, str(workers)], env)
        ours = run_json(EVALKIT, [str(a), str(b), device], env)
    except RuntimeError as exc:
        return {"status": "failed", "error": str(exc)[-2000:]}
    rel = abs(ours["fid"] - ref["fid"]) / abs(ref["fid"])
    images = 2 * n
    return {"status": "ok", "images": images, "res": res, "make_images_s": made,
            "clean_fid": {"fid": ref["fid"], "seconds": ref["seconds"], "img_s": images / ref["seconds"],
                          "peak_gpu_mib": ref["gpu_mb"]},
            "evalkit": {"fid": ours["fid"], "seconds": ours["seconds"], "img_s": images / ours["seconds"],
                        "peak_gpu_mib": ours["gpu_mb"]},
            "relative_difference": rel, "speedup": ref["seconds"] / ours["seconds"],
            "targets": {"relative_difference": 1e-4, "speedup": 5.0}}


def table(report: dict) -> str:
    env = report["environment"]
    lines = [f"GPU: {env.get('gpu') or 'none (dry run on the CPU)'}; torch {env['torch']}, CUDA {env['cuda']}, "
             f"native bf16: {env['native_bf16']}; budget {report['budget_s']:.0f} s, used {report['seconds']:.0f} s "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in report['step_seconds'].items())})"]
    tests = report["tests"]
    lines.append(f"cuda-marked tests: {tests.get('summary', tests['status'])}")
    for failure in tests.get("failures", []):
        lines.append(f"  {failure}")
    head = (f"{'disc':<7}{'precision':<10}{'switches':<15}{'batch':>6}{'s/kimg':>9}{'img/s':>8}{'peak MiB':>10}"
            f"{'x A100 anchor':>15}")
    lines += ["", f"training at {report['train_res']} px (anchor: SG2ADA 1 GPU {ANCHORS['A100']} s/kimg A100, "
                  f"{ANCHORS['V100']} V100; target <= {TARGET_RATIO}x)", head, "-" * len(head)]
    for row in report["training"]:
        name = f"{row['disc']:<7}{row.get('precision', row['requested_precision']):<10}{','.join(row['switches']) or '-':<15}"
        if row["status"] != "ok":
            lines.append(f"{name}{row['status']}")
            continue
        lines.append(f"{name}{row['batch']:>6}{row['s_kimg']:>9.2f}{row['img_s']:>8.1f}{row['peak_mib']:>10.0f}"
                     f"{row['ratio_to_a100_anchor']:>15.2f}")
    fid = report["fid"]
    lines.append("")
    if fid["status"] == "ok":
        lines.append(f"FID on {fid['images']} images at {fid['res']} px: evalkit {fid['evalkit']['fid']:.6f} "
                     f"({fid['evalkit']['img_s']:.1f} img/s), clean-fid {fid['clean_fid']['fid']:.6f} "
                     f"({fid['clean_fid']['img_s']:.1f} img/s); relative difference {fid['relative_difference']:.2e} "
                     f"(target <= 1e-4), speed-up {fid['speedup']:.1f}x (target >= 5x)")
    else:
        lines.append(f"FID: {fid['status']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU: tests the script itself")
    parser.add_argument("--out", default=None, help="folder for bench-gpu.json (default: $OUT, else results/)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="time for all steps; the machine's start-up takes the rest of 8 minutes")
    parser.add_argument("--fid-n", type=int, default=None, help="images per FID set (default 10000; dry run 8)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per row (default 64; dry run 1)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps per row (default 20; dry run 1)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out step 1")
    parser.add_argument("--skip-fid", action="store_true", help="leave out step 3")
    args = parser.parse_args(argv)

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("python -m bench gpu: no CUDA GPU here; use --dry-run to test the script on the CPU", file=sys.stderr)
        return 2
    start, budget = time.monotonic(), Budget(args.budget_s)
    dry = args.dry_run
    res = 32 if dry else 256
    fid_n = args.fid_n or (8 if dry else 10000)
    report = {"dry_run": dry, "budget_s": args.budget_s, "environment": environment(), "train_res": res,
              "anchors_s_kimg": ANCHORS, "target_ratio": TARGET_RATIO}
    timings = report["step_seconds"] = {}

    def timed(name, fn, *a):
        t = time.monotonic()
        result = fn(*a)
        timings[name] = time.monotonic() - t
        return result
    report["tests"] = {"status": "skipped (--skip-tests)"} if args.skip_tests else timed("tests", run_tests, budget, dry)
    report["training"] = timed("training", run_training, budget, dry, res,
                               args.warmup if args.warmup is not None else (1 if dry else 20), args.steps or (1 if dry else 64))
    if args.skip_fid:
        report["fid"] = {"status": "skipped (--skip-fid)"}
    else:
        with tempfile.TemporaryDirectory(prefix="bench-gpu-") as work:
            report["fid"] = timed("fid", run_fid, budget, dry, fid_n, 32 if dry else 256, Path(work))
    report["seconds"] = time.monotonic() - start
    out_dir = Path(args.out or os.environ.get("OUT") or ROOT / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench-gpu.json").write_text(json.dumps(report, indent=1))
    print(table(report))
    print(f"\nwrote {out_dir / 'bench-gpu.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
