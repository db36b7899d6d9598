"""One proportion k/n against chance: intervals, the exact binomial test and the exact TOST.

Trial-level results: every trial counts as independent. Their participant-level counterparts are
in `clustering` and `resampling`.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from scipy.special import ndtri


def clopper_pearson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval for k successes in n trials."""
    if n == 0:
        return (math.nan, math.nan)
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return (float(ci.low), float(ci.high))


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (Brown, Cai & DasGupta 2001 recommend it for small n).

    The same interval as scipy's `binomtest(k, n).proportion_ci(level, "wilson")` (to 1e-15;
    tests/study_app/test_stats.py checks it), written out because binomtest first computes an
    exact two-sided p-value: 2-4 ms per call against ~4 µs here (z from scipy.special.ndtri,
    which is what norm.ppf evaluates), and `image_stats` needs one interval per image."""
    if n == 0:
        return (math.nan, math.nan)
    z = float(ndtri(1 - (1 - level) / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def binomial_test(k: int, n: int, p0: float = 0.5) -> float:
    """Exact two-sided binomial test of k/n against p0."""
    if n == 0:
        return math.nan
    return float(sps.binomtest(k, n, p0).pvalue)


def two_sided_pvalues(n: int, p0: float) -> np.ndarray:
    """The exact two-sided p-value of every k in 0..n at once: the 'minlike' rule of R's
    binom.test and scipy's binomtest (outcomes no more likely than k, with binomtest's relative
    tolerance 1e-7), which gives one k per call. Power needs all n + 1 of them for each n it
    tries (power.power_binomial)."""
    pmf = sps.binom.pmf(np.arange(n + 1), n, p0)
    order = np.sort(pmf)
    cum = np.cumsum(order)
    idx = np.searchsorted(order, pmf * (1 + 1e-7), side="right")
    return np.minimum(1.0, cum[idx - 1])


def tost_pvalues(k, n: int, margin: float, p0: float = 0.5):
    """Exact TOST p-value for 'the true proportion lies within p0 ± margin' (small = equivalent),
    for one k or an array of them: the larger of the one-sided exact p-values against the two
    bounds, i.e. of binomtest(k, n, p0 − margin, alternative="greater") and binomtest(k, n,
    p0 + margin, alternative="less"), computed from the binomial tails so that arrays work too."""
    p_low = sps.binom.sf(np.asarray(k) - 1, n, p0 - margin)    # H0: p <= p0 - margin
    p_high = sps.binom.cdf(k, n, p0 + margin)                 # H0: p >= p0 + margin
    return np.maximum(p_low, p_high)


def tost_binomial(k: int, n: int, margin: float, p0: float = 0.5) -> float:
    """Exact TOST p-value of k/n for equivalence within p0 ± margin (small = equivalent)."""
    if n == 0:
        return math.nan
    return float(tost_pvalues(k, n, margin, p0))
