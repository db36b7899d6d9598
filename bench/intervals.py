"""Cost of FID∞ and of the paired ΔFID bootstrap against FID alone, on random 2048-d features:

    python -m bench.intervals [--sizes 1000,5000] [--dims 2048] [--replicates 10] [--device cpu|cuda]

For each N (reference, A and B all of N images) it times, in this process: FID from features
(`fid_from_features`, statistics + Fréchet distance), FID∞ (`fid_infinity`, 15 points), and
`--replicates` replicates of `paired_fid_difference`, scaled to its default 200. Feature extraction is
not included: add the extractor's time for 3N images (Inception ≈ 22 img/s on the development CPU)
to put these figures against the whole `evalkit metrics` run. Timings are not asserted anywhere.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _time(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.intervals")
    p.add_argument("--sizes", default="1000,5000")
    p.add_argument("--dims", type=int, default=2048)
    p.add_argument("--replicates", type=int, default=10)
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)

    import warnings

    from evalkit.metrics.fid import SmallSampleWarning, fid_from_features
    from evalkit.metrics.fid_inf import fid_infinity
    from evalkit.metrics.paired import paired_fid_difference

    warnings.simplefilter("ignore", SmallSampleWarning)
    d = args.dims
    rng = np.random.default_rng(0)
    mix = np.eye(d) + rng.normal(size=(d, d)) * 0.3 / np.sqrt(d)
    print(f"{'N':>7} {'FID s':>8} {'FID∞ s':>8} {'paired s (200)':>15} {'FID∞/FID':>9} {'paired/FID':>11}")
    for n in (int(s) for s in args.sizes.split(",")):
        real, a, b = ((rng.normal(size=(n, d)) @ mix * scale).astype(np.float32) for scale in (1.0, 1.1, 1.2))
        t_fid = _time(lambda: fid_from_features(real, a))
        t_inf = _time(lambda: fid_infinity(real, a, device=args.device))
        reps = max(2, args.replicates)
        t_pair = _time(lambda: paired_fid_difference(real, a, b, num_bootstrap=reps, device=args.device))
        t_pair *= 200 / (reps + 1)   # reps replicates + the full-sample difference, scaled to 200
        print(f"{n:>7} {t_fid:>8.2f} {t_inf:>8.2f} {t_pair:>15.1f} {t_inf / t_fid:>9.1f} {t_pair / t_fid:>11.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
