"""evalkit's metrics against the reference tools, in one run:

    python -m bench metrics [--sections prdc,suite,sweep] [--sizes 10000,20000] [--n 1000]
                            [--sweep-real 300] [--sweep-num-gen 100] [--device cpu|cuda]

1. prdc:  P/R/D/C time and peak memory, evalkit vs the `prdc` package, at 10k and 20k random
          2048-d features (targets: >= 3x faster, <= 1/4 of its peak memory).
2. suite: the whole `evalkit metrics` suite (FID, KID, P/R, D/C) against FID alone, on the same two
          folders, each from a cold feature cache (target: <= 1.2x the time of FID alone).
3. sweep: a 7-value truncation sweep (every metric per psi, real features once) against 7 separate
          clean-fid runs (FID only; each re-extracts the real set) on the same checkpoint, seeds and
          real folder (target: >= 3x faster).
Every timed part runs in its own subprocess.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import run_json

PSIS = (1.2, 1.0, 0.7, 0.5, 0.0, -0.5, -1.0)

SUITE = r"""
import json, sys, time, torch
from evalkit import api
from evalkit.reports.evaluate import evaluate
a, b, what, device = sys.argv[1], sys.argv[2], sys.argv[3], torch.device(sys.argv[4])
t = time.perf_counter()
if what == "fid":
    value = api.fid(a, b, device=device, progress=False)["fid"]
else:
    value = evaluate(a, b, device=device, progress=False)["fid"]
print(json.dumps({"seconds": time.perf_counter() - t, "fid": value,
                  "rss_mb": peak_rss_mb()}))
"""

OUR_SWEEP = r"""
import json, sys, time, torch
from evalkit.sources import GenerationOptions
from evalkit.reports.sweep import truncation_sweep
ckpt, real, out, n, device = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), torch.device(sys.argv[5])
psis = [float(p) for p in sys.argv[6].split(",")]
t = time.perf_counter()
r = truncation_sweep(ckpt, real, psis, GenerationOptions(num_gen=n), out, device=device, progress=False,
                     log=lambda *a: None)
print(json.dumps({"seconds": time.perf_counter() - t, "fid": {str(row["psi"]): row["fid"] for row in r["rows"]},
                  "rss_mb": peak_rss_mb()}))
"""

CLEAN_FID_SWEEP = r"""
import json, sys, time, numpy as np, torch
from cleanfid import fid as cfid
from evalkit.extract import weights
from gan.api import load_generator
ckpt, real, n, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), torch.device(sys.argv[4])
psis = [float(p) for p in sys.argv[5].split(",")]
path, _ = weights.require("inception")
jit = torch.jit.load(str(path), map_location=device).eval()
layers = jit.net.layers if hasattr(jit, "net") else jit.layers
def extract(x):
    return layers.forward((x - 128) / 128).view(x.shape[0], 2048)
G = load_generator(ckpt, device=device)
seeds_z = G.z_for_seeds(range(n)).to(device)   # the same latents evalkit uses, fed in order
t = time.perf_counter()
values = {}
for psi in psis:
    cursor = [0]
    def gen(z, psi=psi):
        zb = seeds_z[cursor[0]:cursor[0] + z.shape[0]]
        cursor[0] += z.shape[0]
        img = G.synthesis(G.mapping(zb, psi=psi))
        return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    values[str(psi)] = float(cfid.compute_fid(gen=gen, fdir2=real, mode="clean", num_gen=n, batch_size=n,
                                              z_dim=G.z_dim, device=device, custom_feat_extractor=extract,
                                              num_workers=0, verbose=False))
print(json.dumps({"seconds": time.perf_counter() - t, "fid": values,
                  "rss_mb": peak_rss_mb()}))
"""


def _fresh_home(work: Path, name: str) -> dict:
    """An environment whose feature cache is empty (weights are the installed ones)."""
    import shutil

    from harness_base.home import HOME_ENV, harness_home

    home = work / name
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / "weights").symlink_to(harness_home() / "weights", target_is_directory=True)
    return {**os.environ, HOME_ENV: str(home)}


def section_prdc(args) -> None:
    from bench import metrics_prdc

    print("\n## P/R/D/C: evalkit vs prdc (random 2048-d features; prdc computes all four at k=5)", flush=True)
    rows = metrics_prdc.run(sizes=tuple(args.sizes), dims=2048, device=args.prdc_device)
    metrics_prdc.print_table(rows)


def section_suite(args, work: Path, device: str) -> None:
    from gan.avatars import write_avatars

    a, b = work / f"suite-a-{args.n}", work / f"suite-b-{args.n}"
    for folder, seed in ((a, 0), (b, 1)):
        if len(list(folder.glob("*.png"))) != args.n:
            write_avatars(folder, args.n, seed=seed, res=64)
    print(f"\n## full metrics suite vs FID alone ({args.n} + {args.n} images at 64 px, cold cache each)", flush=True)
    fid_only = run_json(SUITE, [a, b, "fid", device], _fresh_home(work, "home-fid"))
    suite = run_json(SUITE, [a, b, "all", device], _fresh_home(work, "home-suite"))
    print(f"{'run':<38} {'seconds':>9} {'peak RSS MB':>12}")
    print(f"{'evalkit fid (FID alone)':<38} {fid_only['seconds']:>9.1f} {fid_only['rss_mb']:>12.0f}")
    print(f"{'evalkit metrics (FID+KID+P/R+D/C)':<38} {suite['seconds']:>9.1f} {suite['rss_mb']:>12.0f}")
    print(f"ratio: {suite['seconds'] / fid_only['seconds']:.2f}x (target <= 1.2x); same FID: "
          f"{abs(suite['fid'] - fid_only['fid']) < 1e-9}")


def _bench_checkpoint(work: Path, res: int) -> Path:
    """A small trained generator (cpu-tiny, a few hundred images) to sample from."""
    from gan.api import list_snapshots
    from gan.avatars import write_avatars
    from gan.config import preset
    from gan.train import train

    run = work / f"sweep-run-{res}"
    if (run / "checkpoints").is_dir() and list_snapshots(run):
        return list_snapshots(run)[-1].path
    data = work / f"sweep-train-{res}"
    write_avatars(data, 200, seed=5, res=res)
    cfg = preset("cpu-tiny", res, "resnet")
    cfg.data = str(data)
    cfg.train.total_kimg = 0.2
    cfg.train.snapshot_kimg = 0.2
    train(cfg.validate(), run, device="cpu", progress=False)
    return list_snapshots(run)[-1].path


def section_sweep(args, work: Path, device: str) -> None:
    from gan.avatars import write_avatars

    ckpt = Path(args.checkpoint) if args.checkpoint else _bench_checkpoint(work, 32)
    real = work / f"sweep-real-{args.sweep_real}"
    if len(list(real.glob("*.png"))) != args.sweep_real:
        write_avatars(real, args.sweep_real, seed=11, res=32)
    psis = ",".join(f"{p:g}" for p in PSIS)
    print(f"\n## 7-value truncation sweep vs 7 clean-fid runs ({args.sweep_num_gen} samples per psi, "
          f"{args.sweep_real} real images, {ckpt.name})", flush=True)
    ours = run_json(OUR_SWEEP, [ckpt, real, work / "sweep-out", args.sweep_num_gen, device, psis],
                _fresh_home(work, "home-sweep"))
    ref = run_json(CLEAN_FID_SWEEP, [ckpt, real, args.sweep_num_gen, device, psis], _fresh_home(work, "home-cf"))
    print(f"{'run':<46} {'seconds':>9} {'peak RSS MB':>12}")
    print(f"{'evalkit sweep (all metrics, real features once)':<46} {ours['seconds']:>9.1f} {ours['rss_mb']:>12.0f}")
    print(f"{'7 x clean-fid compute_fid (FID only)':<46} {ref['seconds']:>9.1f} {ref['rss_mb']:>12.0f}")
    print(f"speedup: {ref['seconds'] / ours['seconds']:.2f}x (target >= 3x)")
    worst = max(abs(ours["fid"][k] - ref["fid"][k]) / abs(ref["fid"][k]) for k in ref["fid"])
    print(f"largest relative FID difference over the 7 psi values: {worst:.2e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench metrics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="prdc,suite,sweep")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 20_000])
    parser.add_argument("--prdc-device", default=None, help="device for evalkit's P/R/D/C (default: numpy on CPU)")
    parser.add_argument("--n", type=int, default=1000, help="images per set for the suite comparison")
    parser.add_argument("--sweep-real", type=int, default=300)
    parser.add_argument("--sweep-num-gen", type=int, default=100)
    parser.add_argument("--checkpoint", help="checkpoint for the sweep (default: train a tiny one)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-metrics-"))
    work.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU, {os.cpu_count()} cores"
    print(f"device: {name}; torch {torch.__version__}; workdir {work}")
    sections = args.sections.split(",")
    started = time.perf_counter()
    if "prdc" in sections:
        section_prdc(args)
    if "suite" in sections:
        section_suite(args, work, device)
    if "sweep" in sections:
        section_sweep(args, work, device)
    print(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
