"""Participant-level inference: trials are clustered within participants, so each trial-level
result gets a counterpart on per-participant accuracy, and the intra-class correlation (ICC) says
how much the clustering costs (the design effect)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as sps


def _per_participant(accuracies: Sequence[float]) -> np.ndarray | None:
    """The accuracies as an array, or None when a t-test cannot be run (fewer than 2)."""
    acc = np.asarray(accuracies, dtype=float)
    return acc if acc.size >= 2 else None


def t_test_participants(accuracies: Sequence[float], p0: float = 0.5) -> float:
    """Two-sided one-sample t-test of mean per-participant accuracy against p0.
    Identical accuracies (no spread) give 0 when they differ from p0 and 1 when they equal it,
    where scipy's t statistic is undefined."""
    acc = _per_participant(accuracies)
    if acc is None:
        return math.nan
    if np.ptp(acc) == 0:
        return 0.0 if acc[0] != p0 else 1.0
    return float(sps.ttest_1samp(acc, p0).pvalue)


def tost_participants(accuracies: Sequence[float], margin: float, p0: float = 0.5) -> float:
    """TOST on per-participant accuracy: the larger p-value of the one-sided t-tests against
    p0 − margin (greater) and p0 + margin (less). No spread: 0 inside the margin, 1 outside."""
    acc = _per_participant(accuracies)
    if acc is None:
        return math.nan
    if np.ptp(acc) == 0:
        return 0.0 if abs(acc[0] - p0) < margin else 1.0
    above = sps.ttest_1samp(acc, p0 - margin, alternative="greater").pvalue
    below = sps.ttest_1samp(acc, p0 + margin, alternative="less").pvalue
    return float(max(above, below))


def icc_binary(correct: Sequence[int], trials: Sequence[int]) -> float:
    """ANOVA estimate of the intra-class correlation of correctness within participants (≥ 0)."""
    k = np.asarray(correct, dtype=float)
    n = np.asarray(trials, dtype=float)
    keep = n > 0
    k, n = k[keep], n[keep]
    groups, total = n.size, n.sum()
    if groups < 2 or total <= groups:
        return math.nan
    p = k / n
    pbar = k.sum() / total
    msb = np.sum(n * (p - pbar) ** 2) / (groups - 1)
    msw = np.sum(n * p * (1 - p)) / (total - groups)
    n0 = (total - np.sum(n ** 2) / total) / (groups - 1)
    denom = msb + (n0 - 1) * msw
    if denom <= 0:
        return 0.0
    return float(max(0.0, (msb - msw) / denom))


def design_effect(trials_per_participant: float, icc: float) -> float:
    """1 + (m − 1)·ICC: how many clustered trials are worth one independent trial (Kish 1965)."""
    return 1 + (trials_per_participant - 1) * icc
