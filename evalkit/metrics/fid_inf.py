"""FID∞ and KID∞: the metric extrapolated to infinitely many images (Chong & Forsyth, "Effectively
Unbiased FID and Inception Score and where to find them", CVPR 2020).

FID estimated from N images is biased upward, and the bias is O(1/N) at every N with a constant that
depends on the generator: two models compared at the same N can swap ranks at another N. Chong &
Forsyth evaluate FID_N on random subsets at several N, fit FID_N = FID∞ + slope / N by least squares
and report the intercept. Their code (mchong6/FID_IS_infinity, `calculate_FID_infinity`) draws
N = linspace(5000, 50000, 15) generated images, a fresh random subset for each N, against fixed
reference statistics: that is `reference="fixed"` here. Its intercept still carries the reference
set's own O(1/N_ref) bias, which is small with 50k reference images but not with a few thousand
training images, and that bias also depends on the generator. The default, `reference="subsample"`,
draws the reference subset at the same fraction as the generated one (N_ref = round(N · n_ref / n)),
so that both bias terms are proportional to 1/N and the intercept estimates the FID between the two
populations.

The grid: `num_points` values of N from min(5000, n // 2) to n, the full generated count (15 points as
the reference code). Keeping N >= n/2 keeps every subset above the feature dimension whenever the full
set is at least twice it (below that, the covariance is rank-deficient and FID_N is no longer linear
in 1/N). Subsets are drawn without replacement from `np.random.default_rng(seed)`, for each N first
the generated subset, then the reference subset. Each FID is exact (float64 statistics of the subset
rows of the once-centred sets; Tr √ by the cheaper of `bootstrap.py`'s exact routes for the largest
point: the cross-Gram route for sets small against the dimension, the d x d route otherwise, with
singular values as fall-back). Measured with `python -m bench.intervals` (2-core CPU, one BLAS
thread): on Inception features of 1000 + 1000 cartoon faces, 0.96 s for the 15 points against 3.0 s
for one FID from features.

`residual` is the root-mean-square deviation of the points from the fitted line (how well 1/N
describes them); `stderr` is the least-squares standard error of the intercept. The subsets overlap,
so the points are not independent and `stderr` understates the sampling error of FID∞; it also
leaves out the sampling error of the full sets themselves. `total_error(stderr, boot_std)` adds the
FID bootstrap's standard deviation for that: on Gaussians with a known population FID (60
repetitions each at 8-d/300, 32-d/160 and 16-d/1000 images per set), FID∞ ± 1.96 × total_error
covered the population FID in 98%, 95% and 92% of repetitions, ± 1.96 × stderr alone in 72–78%.

KID is already unbiased at every N (Bińkowski et al. 2018), so KID∞ should agree with KID within its
noise and its slope should be near 0; it is computed the same way, for a check of that, with the KID
subsets divided over the grid so that KID∞ costs about as much as one KID.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .arrays import feature_pair
from .backend import NumpyOps, TorchOps
from .bootstrap import _Centred, _fid, cross_gram_if_cheaper

__all__ = ["Extrapolated", "fid_infinity", "kid_infinity", "default_grid", "total_error"]


@dataclass(frozen=True)
class Extrapolated:
    value: float           # the intercept: the metric at 1/N = 0
    slope: float           # d metric / d(1/N): the bias at N is about slope / N
    residual: float        # rms deviation of the points from the fitted line
    ns: list = field(default_factory=list)        # generated-set sizes of the points
    values: list = field(default_factory=list)    # the metric at each N
    covers: str = ""       # what the value estimates, in words
    stderr: float = float("nan")   # least-squares standard error of the intercept (see the module doc)
    n_reference: list = field(default_factory=list)   # reference-set sizes of the points

    def to_dict(self) -> dict:
        return asdict(self)


def total_error(stderr: float, boot_std: float) -> float:
    """Approximate standard error of FID∞: the fit's intercept error and the FID bootstrap's standard
    deviation (the full sets' sampling error) combined in quadrature (see the module doc)."""
    return float(math.hypot(stderr, boot_std))


def default_grid(n: int, num_points: int = 15) -> list[int]:
    """`num_points` distinct sizes from min(5000, n // 2) to n (Chong & Forsyth's grid for n = 50k)."""
    if n < 4:
        raise ValueError(f"extrapolation in 1/N needs at least 4 generated samples, got {n}")
    lo = min(5000, n // 2)
    return sorted({int(v) for v in np.linspace(lo, n, num_points).round()})


def _check(ns, n, num_points):
    if ns is None:
        ns = default_grid(n, num_points)
    ns = sorted({int(v) for v in ns})
    if len(ns) < 3:
        raise ValueError(f"extrapolation in 1/N needs at least 3 distinct sizes, got {ns}")
    if ns[0] < 2 or ns[-1] > n:
        raise ValueError(f"the sizes must lie between 2 and the {n} generated samples, got {ns[0]}..{ns[-1]}")
    return ns


def _fit(ns, values):
    """Least-squares line in x = 1/N: (intercept, slope, rms residual, intercept standard error)."""
    x = 1.0 / np.asarray(ns, np.float64)
    y = np.asarray(values, np.float64)
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = len(x) - 2
    s2 = float(resid @ resid) / dof if dof > 0 else float("nan")
    se = math.sqrt(s2 * np.linalg.inv(design.T @ design)[0, 0]) if dof > 0 else float("nan")
    return float(coef[0]), float(coef[1]), float(np.sqrt(np.mean(resid ** 2))), se


def _subsets(n_real, n_fake, ns, reference, seed):
    if reference not in ("subsample", "fixed"):
        raise ValueError(f"reference must be 'subsample' or 'fixed', got {reference!r}")
    rng = np.random.default_rng(seed)
    for n in ns:
        i_fake = rng.choice(n_fake, n, replace=False)
        if reference == "fixed":
            yield i_fake, None
        else:
            m = max(2, round(n * n_real / n_fake))
            yield i_fake, rng.choice(n_real, m, replace=False)


def _covers(metric, reference, ns, n_real, n_fake):
    grid = f"linear fit in 1/N over N = {ns[0]}…{ns[-1]} generated images ({len(ns)} points)"
    if reference == "fixed":
        return (f"{metric}∞: {metric} extrapolated to infinitely many generated images against this reference "
                f"set's statistics ({n_real} images; its own O(1/N) bias remains), {grid}; Chong & Forsyth 2020")
    return (f"{metric}∞: {metric} extrapolated to infinitely many generated and reference images (the reference "
            f"subsampled at the same fraction, from {n_real}), {grid}; estimates the {metric} between the "
            "generator's and the reference population; Chong & Forsyth 2020")


def fid_infinity(real, fake, ns=None, num_points: int = 15, seed: int = 0, *,
                 reference: str = "subsample", device=None) -> Extrapolated:
    """FID∞ (module doc). `ns`: generated-set sizes (default `default_grid(len(fake), num_points)`);
    `device`: run the algebra with torch in float64 there (numpy on the CPU when None)."""
    r, f = feature_pair(real, fake, "FID∞")
    ns = _check(ns, len(f), num_points)
    la = NumpyOps() if device is None else TorchOps(device)
    cr, cf = _Centred(la, r), _Centred(la, f)
    # the largest point costs most: its sizes decide the route for all of them
    m_ref = len(r) if reference == "fixed" else max(2, round(ns[-1] * len(r) / len(f)))
    cross = cross_gram_if_cheaper(la, cr, cf, m_ref, ns[-1])
    light = cross is not None
    full_real = None
    values, n_ref = [], []
    for i_fake, i_real in _subsets(len(r), len(f), ns, reference, seed):
        if i_real is None:
            if full_real is None:
                full_real = cr.draw(np.arange(cr.n), light)
                full_low = la.cholesky(full_real.cov) if full_real.cov is not None else None
            sr, low = full_real, full_low
        else:
            sr = cr.draw(i_real, light)
            low = la.cholesky(sr.cov) if sr.cov is not None else None
        values.append(_fid(la, sr, cf.draw(i_fake, light), low, cross))
        n_ref.append(int(len(r) if i_real is None else len(i_real)))
    value, slope, residual, se = _fit(ns, values)
    return Extrapolated(value=value, slope=slope, residual=residual, ns=ns, values=[float(v) for v in values],
                        covers=_covers("FID", reference, ns, len(r), len(f)), stderr=se, n_reference=n_ref)


def kid_infinity(real, fake, ns=None, num_points: int = 15, seed: int = 0, *, num_subsets: int = 100,
                 max_subset_size: int = 1000, reference: str = "subsample", device=None) -> Extrapolated:
    """KID∞ (module doc): KID on the same kind of subsets, `num_subsets` divided over the grid."""
    from .kid import kid

    r, f = feature_pair(real, fake, "KID∞")
    ns = _check(ns, len(f), num_points)
    per_point = max(1, math.ceil(num_subsets / len(ns)))
    values, n_ref = [], []
    for j, (i_fake, i_real) in enumerate(_subsets(len(r), len(f), ns, reference, seed)):
        rr = r if i_real is None else r[i_real]
        values.append(kid(rr, f[i_fake], num_subsets=per_point, max_subset_size=max_subset_size,
                          seed=seed + j, device=device).mean)
        n_ref.append(len(rr))
    value, slope, residual, se = _fit(ns, values)
    return Extrapolated(value=value, slope=slope, residual=residual, ns=ns, values=[float(v) for v in values],
                        covers=_covers("KID", reference, ns, len(r), len(f)), stderr=se, n_reference=n_ref)
