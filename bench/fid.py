"""evalkit fid vs clean-fid on the same images: throughput, FID agreement, peak memory, cached re-run.

    python -m bench fid [--n 200] [--res 64] [--device cpu|cuda] [--workdir DIR]

Both tools run in their own subprocess (so peak RSS is theirs alone) on two folders of cartoon
faces, with the same Inception weight file: clean-fid in mode="clean" with its loader, resize and
TorchScript network (pointed at the harness's verified file through `custom_feat_extractor`), and
evalkit with an empty feature cache, then again with the cache warm.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.measure import run_json

CLEAN_FID = r"""
import json, sys, time, torch
from cleanfid import fid as cfid
from evalkit.extract import weights
a, b, device, workers = sys.argv[1], sys.argv[2], torch.device(sys.argv[3]), int(sys.argv[4])
path, _ = weights.require("inception")
jit = torch.jit.load(str(path), map_location=device).eval()
layers = jit.net.layers if hasattr(jit, "net") else jit.layers
def extract(x):  # clean-fid's InceptionV3W.forward with resize_inside=False
    return layers.forward((x - 128) / 128).view(x.shape[0], 2048)
if device.type == "cuda": torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
value = cfid.compute_fid(a, b, mode="clean", device=device, num_workers=workers, batch_size=32,
                         custom_feat_extractor=extract, verbose=False)
seconds = time.perf_counter() - t
gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
print(json.dumps({"fid": float(value), "seconds": seconds,
                  "rss_mb": peak_rss_mb(), "gpu_mb": gpu}))
"""

EVALKIT = r"""
import json, sys, time, torch
from evalkit import api
a, b, device = sys.argv[1], sys.argv[2], torch.device(sys.argv[3])
if device.type == "cuda": torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
result = api.fid(a, b, device=device, progress=False)
seconds = time.perf_counter() - t
gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
print(json.dumps({"fid": result["fid"], "seconds": seconds,
                  "rss_mb": peak_rss_mb(), "gpu_mb": gpu,
                  "cached": all(s["from_cache"] for s in result["sources"])}))
"""


def _device_name(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="images per set")
    parser.add_argument("--res", type=int, default=64, help="image resolution")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--clean-fid-workers", type=int, default=12, help="clean-fid's num_workers (its default: 12)")
    parser.add_argument("--workdir", default=None, help="keep the images here instead of a temporary folder")
    args = parser.parse_args(argv)

    import torch

    from gan.avatars import write_avatars
    from harness_base.home import HOME_ENV, harness_home

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-fid-"))
    a, b = work / f"avatars-{args.res}-a", work / f"avatars-{args.res}-b"
    for folder, seed in ((a, 0), (b, 1)):
        if not folder.is_dir() or len(list(folder.glob("*.png"))) != args.n:
            write_avatars(folder, args.n, seed=seed, res=args.res, progress=True)

    # evalkit gets an empty feature cache of its own; the weights are the installed ones
    home = work / "harness-home"
    (home / "features").mkdir(parents=True, exist_ok=True)
    if not (home / "weights").exists():
        (home / "weights").symlink_to(harness_home() / "weights", target_is_directory=True)
    env = {**os.environ, HOME_ENV: str(home)}
    import shutil
    shutil.rmtree(home / "features")

    print(f"device: {_device_name(device)}; {args.n} + {args.n} images at {args.res}px", flush=True)
    ref = run_json(CLEAN_FID, [str(a), str(b), device, str(args.clean_fid_workers)], env)
    cold = run_json(EVALKIT, [str(a), str(b), device], env)
    warm = run_json(EVALKIT, [str(a), str(b), device], env)
    assert warm["cached"], "the second evalkit run should have used the feature cache"

    total = 2 * args.n
    rows = [
        ("clean-fid (mode=clean)", ref),
        ("evalkit fid (cold cache)", cold),
        ("evalkit fid (warm cache)", warm),
    ]
    print(f"\n{'tool':<26} {'seconds':>8} {'img/s':>8} {'process s':>10} {'peak RSS MB':>12} {'peak GPU MB':>12}"
          f" {'FID':>14}")
    for name, r in rows:
        gpu = f"{r['gpu_mb']:.0f}" if r["gpu_mb"] is not None else "-"
        print(f"{name:<26} {r['seconds']:>8.2f} {total / r['seconds']:>8.2f} {r['process_s']:>10.2f} {r['rss_mb']:>12.0f}"
              f" {gpu:>12} {r['fid']:>14.6f}")
    rel = abs(cold["fid"] - ref["fid"]) / abs(ref["fid"])
    print(f"\nthroughput ratio evalkit/clean-fid: {ref['seconds'] / cold['seconds']:.2f}x "
          f"(target >= {'5' if device.startswith('cuda') else '1.5'}x)")
    print(f"FID difference: {cold['fid'] - ref['fid']:+.3e} absolute, {rel:.2e} relative (target <= 1e-4)")
    print(f"cached re-run: {warm['seconds']:.2f} s = {warm['seconds'] / cold['seconds']:.1%} of the cold run")
    return 0 if rel <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
