"""PPL throughput and `evalkit calibrate` wall time on the CPU: `python -m bench ppl [--train N --heldout M]`.

PPL: paths/s of `perceptual_path_length` (LPIPS-VGG16, both ends rendered) for freshly initialised
32 and 64 px generators of the smoke preset (untrained: speed does not depend on the weights).
Calibrate: wall time of `calibration_scale` with every stand-in on N training + M held-out cartoon
faces (64 px), split into feature extraction and the rest, and a linear extrapolation to
1000 + 200 images (Inception images scale with N + 11 M; the copy checks with 15 (min(N, 1000) + M)).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _checkpoint(res: int, root: Path) -> Path:
    from gan.avatars import write_avatars
    from gan.config import preset
    from gan.train import train

    data = root / f"data{res}"
    write_avatars(data, 8, seed=0, res=res)
    cfg = preset("smoke", res, "resnet")
    cfg.data = str(data)
    cfg.train.total_kimg = cfg.train.snapshot_kimg = cfg.train.log_kimg = 0.004
    train(cfg.validate(), root / f"run{res}", progress=False, device="cpu", threads=1)
    return root / f"run{res}"


def bench_ppl(root: Path, num: int) -> list[str]:
    from evalkit.reports.ppl import perceptual_path_length

    lines = []
    for res in (32, 64):
        run = _checkpoint(res, root)
        perceptual_path_length(run, num_samples=4, device="cpu")   # load weights and warm up
        t = time.perf_counter()
        r = perceptual_path_length(run, num_samples=num, device="cpu")
        dt = time.perf_counter() - t
        lines.append(f"PPL {res} px (LPIPS at {max(res, 64)} px): {num} paths in {dt:.1f} s = {num / dt:.1f} paths/s "
                     f"on CPU (ppl_wend {r.ppl:.3g}, untrained generator)")
    return lines


def bench_calibrate(root: Path, n_train: int, n_held: int) -> list[str]:
    import torch

    from evalkit.extract import features
    from evalkit.reports.calibrate import STANDINS, calibration_scale
    from gan.avatars import avatar_array, write_avatars

    write_avatars(root / "train", n_train, seed=0, res=64)
    write_avatars(root / "held", n_held, seed=1, res=64)
    x = avatar_array(16, seed=2, res=64)
    features.features_of_arrays([x[:2]], device=torch.device("cpu"))
    t = time.perf_counter()
    features.features_of_arrays([x], device=torch.device("cpu"))
    per_image = (time.perf_counter() - t) / len(x)
    t = time.perf_counter()
    calibration_scale(root / "train", root / "held", root / "out", device="cpu", progress=False, use_cache=False,
                      log=lambda *_: None)
    total = time.perf_counter() - t
    degraded = sum(s.kind in ("blur", "jpeg", "noise", "colour") for s in STANDINS)
    images = n_train + n_held * (1 + degraded)
    feat_time = images * per_image
    rest = max(total - feat_time, 0.0)
    copy_units = len(STANDINS) * (min(n_train, 1000) + n_held)
    big_images = 1000 + 200 * (1 + degraded)
    big = big_images * per_image + rest * len(STANDINS) * (1000 + 200) / copy_units
    return [f"calibrate {n_train} train + {n_held} held-out (64 px, all {len(STANDINS)} stand-ins, CPU): {total:.0f} s "
            f"({images} Inception images at {per_image:.2f} s/image ≈ {feat_time:.0f} s; copy checks and metrics "
            f"{rest:.0f} s)",
            f"calibrate 1000 + 200, extrapolated linearly from that run (not measured): ≈ {big / 60:.0f} min"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench ppl")
    p.add_argument("--paths", type=int, default=64)
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--heldout", type=int, default=50)
    p.add_argument("--skip-calibrate", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ppl-") as tmp:
        root = Path(tmp)
        lines = bench_ppl(root, args.paths)
        for line in lines:
            print(line, flush=True)
        if not args.skip_calibrate:
            for line in bench_calibrate(root / "cal", args.train, args.heldout):
                print(line, flush=True)
    return 0
