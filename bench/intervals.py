"""Cost of FID∞ and of the paired ΔFID bootstrap against FID alone, on random 2048-d features:

    python -m bench.intervals [--sizes 1000,5000] [--dims 2048] [--replicates 10] [--device cpu|cuda]
                              [--features FEATURES.npz]

For each N (reference, A and B all of N images) and two synthetic feature spectra — "flat" (a random
mixing of unit-variance Gaussians) and "decaying" (the k-th principal variance ∝ k^-1.5, more
ill-conditioned than Inception pool3 features of cartoon faces: the bootstrap's eigenvalue error
bound fails and its exact singular-value fall-back runs) — and, with `--features` (an .npz written by
`evalkit stats --features`), on real features (its first 3N rows split into reference, A and B), it
times, in this process: FID from features
(`fid_from_features`, statistics + Fréchet distance), FID∞ (`fid_infinity`, 15 points), and
`--replicates` replicates of `paired_fid_difference`, scaled to its default 200. Feature extraction is
not included: add the extractor's time for 3N images (Inception ≈ 22 img/s on the development CPU)
to put these figures against the whole `evalkit metrics` run, or pass `--extract-rate` (images/s measured
for the extractor, e.g. from `evalkit stats`) for the "end-to-end" column: two models, each with N
generated images extracted and scored (the reference's features cached), against the same plus FID∞ of
each and one paired comparison with `--report-replicates` resamples. Timings are not asserted anywhere.
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
    p.add_argument("--features", default=None, help="an .npz from `evalkit stats --features` (3N rows needed)")
    p.add_argument("--extract-rate", type=float, default=None,
                   help="measured extractor images/s: adds the end-to-end ratio for two models (see the doc)")
    p.add_argument("--report-replicates", type=int, default=50,
                   help="paired resamples in the end-to-end column (evalkit report's --bootstrap default)")
    args = p.parse_args(argv)

    import warnings

    from evalkit.metrics.fid import SmallSampleWarning, fid_from_features
    from evalkit.metrics.fid_inf import fid_infinity
    from evalkit.metrics.paired import paired_fid_difference

    warnings.simplefilter("ignore", SmallSampleWarning)
    d = args.dims
    rng = np.random.default_rng(0)
    mix = np.eye(d) + rng.normal(size=(d, d)) * 0.3 / np.sqrt(d)
    decay = np.arange(1, d + 1) ** -0.75   # standard deviations: variances ∝ k^-1.5
    print(f"{'N':>7} {'spectrum':>9} {'FID s':>8} {'FID∞ s':>8} {'paired s (200)':>15} {'FID∞/FID':>9} "
          f"{'paired/FID':>11}" + (f" {'end-to-end':>10}" if args.extract_rate else ""))
    loaded = np.load(args.features)["features"] if args.features else None
    spectra = ("flat", "decaying") + (("real",) if loaded is not None else ())
    for n, spectrum in ((int(s), sp) for s in args.sizes.split(",") for sp in spectra):
        if spectrum == "real":
            if len(loaded) < 3 * n:
                print(f"{n:>7} {spectrum:>9}  (needs {3 * n} rows, the file has {len(loaded)})")
                continue
            real, a, b = loaded[:n], loaded[n:2 * n], loaded[2 * n:3 * n]
        else:
            cols = np.ones(d) if spectrum == "flat" else decay
            real, a, b = ((rng.normal(size=(n, d)) * cols @ mix * scale).astype(np.float32)
                          for scale in (1.0, 1.1, 1.2))
        t_fid = _time(lambda: fid_from_features(real, a))
        t_inf = _time(lambda: fid_infinity(real, a, device=args.device))
        reps = max(2, args.replicates)
        t_pair = _time(lambda: paired_fid_difference(real, a, b, num_bootstrap=reps, device=args.device))
        t_pair *= 200 / (reps + 1)   # reps replicates + the full-sample difference, scaled to 200
        line = (f"{n:>7} {spectrum:>9} {t_fid:>8.2f} {t_inf:>8.2f} {t_pair:>15.1f} {t_inf / t_fid:>9.1f} "
                f"{t_pair / t_fid:>11.1f}")
        if args.extract_rate:   # two models: each N generated images extracted + FID; then FID∞ each + one paired
            alone = 2 * (n / args.extract_rate + t_fid)
            extra = 2 * t_inf + t_pair * args.report_replicates / 200
            line += f" {(alone + extra) / alone:>9.2f}×"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
