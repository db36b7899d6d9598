"""The participant bootstrap (HYPE: 95% intervals from resampling evaluators): participants are
drawn with replacement, so every interval carries the spread between people."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def bootstrap_sums(columns: Sequence[Sequence[float]], *, resamples: int = 10000, seed: int = 0) -> np.ndarray:
    """Participant bootstrap: each column holds one count per participant; for every resample of the
    participants (with replacement) the column sums. Shape (resamples, len(columns)).

    Every statistic here is a ratio (or a function) of such sums, so one multinomial draw of how
    often each participant is picked, times the participants × columns matrix, gives all of them
    from the same resamples (the single design's error rates, d′ and c share one draw).
    scipy.stats.bootstrap would resample whole rows and call a statistic per statistic."""
    data = np.asarray(columns, dtype=float).T          # participants x columns
    n = data.shape[0]
    rng = np.random.default_rng(seed)
    sums = np.empty((resamples, data.shape[1]))
    chunk = max(1, 2_000_000 // n)  # bound memory: chunk x n counts at a time
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        counts = rng.multinomial(n, np.full(n, 1 / n), size=size)
        sums[start:start + size] = counts @ data
    return sums


def percentile_interval(estimates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval (scipy.stats.bootstrap's method="percentile")."""
    a = (1 - level) / 2
    low, high = np.quantile(estimates, [a, 1 - a])
    return (float(low), float(high))


def bootstrap_ratio(numerator: Sequence[float], denominator: Sequence[float], *, resamples: int = 10000,
                    level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of sum(numerator) / sum(denominator) over resampled participants (one
    value of each per participant), e.g. pooled accuracy (correct / trials, as HYPE) or a mean
    threshold (thresholds / ones)."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    if numerator.size == 0 or denominator.sum() == 0:
        return (math.nan, math.nan)
    sums = bootstrap_sums([numerator, denominator], resamples=resamples, seed=seed)
    return percentile_interval(sums[:, 0] / np.maximum(sums[:, 1], 1), level)

