"""C_T's power and false-alarm rate, by simulation, and the calibrated LPIPS copy check's false-alarm
rate on cartoon faces: `python -m bench.copying [--sizes 500 2000 10000] [--no-faces]`.

Training, held-out and generated sets of N samples each are drawn from one 64-d mixture of 10
Gaussians (C_T's PCA to 64 dimensions is then a rotation); a share s of the generated samples is
replaced by exact copies of training samples. C_T runs with the default cell count
(`default_cells`: min(n_test, n_gen) // 50, at most 50) and the verdict of `data_copying_ct`
(standardised z < −3: copying).

* false alarm: the share of honest runs (s = 0) called "copying" (and the sd of z, ≈ 1 by design);
* power: per copy share, the share of runs called "copying"; the smallest share detected in at
  least 90% of runs is the figure quoted in README ("What each copy test can see").

Rough expectation: each copy adds a distance of 0 below every held-out one, shifting U by about
n/2, so z ≈ −(s/2)·√(6N) whatever the cell count, and z < −3 needs s ≳ √(6/N): 11% at N = 500,
5.5% at 2k, 2.4% at 10k. These are features from a Gaussian mixture, not images: the figures say
what C_T can detect in its feature space, not which image-level copies land close in it.

Faces: 100 training, 500 calibration and 500 fresh python-avatars faces at 64 px (one distribution,
disjoint indices); the LPIPS threshold is calibrated for 1% on all 500 calibration faces and on three
disjoint subsets of 150, and the share of fresh faces flagged is counted (candidates: 16 x 16 pixels,
10 per face, re-ranked by LPIPS-AlexNet, as in tests/evalkit/test_copy_calibration.py).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

SHARES = (0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2)


def _sets(rng, n, share, means):
    def draw(k):
        return means[rng.integers(len(means), size=k)] + rng.standard_normal((k, means.shape[1]))

    train, test, gen = draw(n), draw(n), draw(n)
    c = int(round(share * n))
    gen[:c] = train[rng.choice(n, c, replace=False)]
    return train, test, gen


def run(n: int, reps_null: int, reps_power: int, seed: int = 0, dims: int = 64) -> dict:
    from evalkit.metrics.copying import data_copying_ct

    rng = np.random.default_rng(seed + n)
    means = rng.normal(0, 1.5, (10, dims))
    t0 = time.perf_counter()
    null = [data_copying_ct(*_sets(rng, n, 0.0, means), seed=r, device="cpu") for r in range(reps_null)]
    z = np.array([r.z for r in null])
    power = {}
    for share in SHARES:
        res = [data_copying_ct(*_sets(rng, n, share, means), seed=r, device="cpu") for r in range(reps_power)]
        power[share] = (np.mean([r.verdict == "copying" for r in res]), np.mean([r.z for r in res]))
        if power[share][0] == 1.0 and share >= 0.05:
            break
    detected = [s for s, (p, _) in power.items() if p >= 0.9]
    return {"n": n, "cells": null[0].n_cells, "false_alarm": float(np.mean([r.verdict == "copying" for r in null])),
            "reps_null": reps_null, "z_sd": float(z.std(ddof=1)), "z_mean": float(z.mean()),
            "c_t_sd": float(np.std([r.c_t for r in null], ddof=1)), "null_sd": float(np.mean([r.null_sd for r in null])),
            "power": power, "reps_power": reps_power, "smallest_detected": min(detected) if detected else None,
            "seconds": time.perf_counter() - t0}


def faces(n_train: int = 100, n_cal: int = 500, n_fresh: int = 500, seed: int = 0) -> None:
    import torch

    from gan.avatars import avatar_array

    from evalkit.extract.lpips import pair_distance_fn
    from evalkit.metrics.copying import calibrated_threshold, nearest_training

    t0 = time.perf_counter()
    cpu = torch.device("cpu")
    imgs = avatar_array(n_train + n_cal + n_fresh, seed=seed, res=64)
    train, cal, fresh = np.split(imgs, [n_train, n_train + n_cal])

    def pixels(x):
        return x.reshape(len(x), 16, 4, 16, 4, 3).mean(axis=(2, 4)).reshape(len(x), -1)

    def nn(x):
        return nearest_training(pixels(x), pixels(train), pair_distance_fn(x, train, cpu), 10, 1, cpu).distances[:, 0]

    d_cal, d_fresh = nn(cal), nn(fresh)
    subsets = [("all", d_cal)] + [(f"subset {i + 1}", d_cal[i * 150:(i + 1) * 150]) for i in range(3)]
    for name, d in subsets:
        th = calibrated_threshold(d, 0.01)
        print(f"faces: calibrated on {th.n} held-out faces ({name}) for 1%: τ = {th.value:.4f}, expected false "
              f"alarm {th.false_alarm:.2%}; flagged {int((d_fresh <= th.value).sum())} of {n_fresh} fresh faces "
              f"({(d_fresh <= th.value).mean():.2%})")
    print(f"    fresh faces' smallest LPIPS to a training face: {np.sort(d_fresh)[:5].round(4).tolist()}   "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 10000])
    ap.add_argument("--reps-null", type=int, nargs="+", default=[400, 200, 40])
    ap.add_argument("--reps-power", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-faces", action="store_true", help="skip the LPIPS copy check on cartoon faces")
    ap.add_argument("--no-ct", action="store_true", help="skip the C_T simulation")
    args = ap.parse_args(argv)
    if not args.no_faces:
        faces(seed=args.seed)
    if args.no_ct:
        return 0
    reps = dict(zip(args.sizes, args.reps_null + [args.reps_null[-1]] * len(args.sizes)))
    for n in args.sizes:
        r = run(n, reps[n], args.reps_power, args.seed)
        print(f"N = {n} per set, {r['cells']} cells: false alarm {r['false_alarm']:.2%} over {r['reps_null']} honest "
              f"runs (z mean {r['z_mean']:+.2f}, sd {r['z_sd']:.2f}; sd(C_T) {r['c_t_sd']:.3f} vs predicted "
              f"√Σw²/Σw {r['null_sd']:.3f})")
        for s, (p, zm) in r["power"].items():
            print(f"    copy share {s:6.1%}: called copying in {p:6.1%} of {r['reps_power']} runs (mean z {zm:+.2f})")
        print(f"    smallest copy share detected in ≥ 90% of runs: "
              f"{'none tried' if r['smallest_detected'] is None else format(r['smallest_detected'], '.1%')}"
              f"   ({r['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
