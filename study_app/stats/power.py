"""Power and sample size of the exact binomial test and the exact TOST, with the design effect of
trials clustered within participants. Exact-test power is a saw-tooth in n, so sample sizes come
from a search that finds the first n reaching the target, not just any."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .clustering import design_effect
from .proportions import tost_pvalues, two_sided_pvalues


def power_binomial(n: int, p_true: float, p0: float = 0.5, alpha: float = 0.05) -> float:
    """Power of the exact two-sided binomial test with n independent trials."""
    if n <= 0:
        return 0.0
    reject = two_sided_pvalues(n, p0) <= alpha
    return float(sps.binom.pmf(np.arange(n + 1), n, p_true)[reject].sum())


def power_tost(n: int, margin: float, p_true: float = 0.5, p0: float = 0.5, alpha: float = 0.05) -> float:
    """Power of the exact binomial TOST (equivalence within p0 ± margin) with n independent trials."""
    if n <= 0:
        return 0.0
    k = np.arange(n + 1)
    reject = tost_pvalues(k, n, margin, p0) < alpha
    return float(sps.binom.pmf(k, n, p_true)[reject].sum())


def _smallest_n(power_fn, target: float, max_n: int) -> int | None:
    """Smallest n with power_fn(n) ≥ target, or None beyond max_n.

    Exact-test power saw-tooths as n grows, so a search that assumes it rises (doubling, then
    bisection) lands on *a* crossing; a unit-step scan of the few hundred n below it then finds the
    first one. Beyond a few thousand trials the saw-tooth is negligible."""
    hi = 16
    while power_fn(hi) < target:
        if hi >= max_n:
            return None
        hi = min(2 * hi, max_n)
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_fn(mid) >= target:
            hi = mid
        else:
            lo = mid
    if hi > 5000:
        return hi
    return next(n for n in range(max(1, hi - 300), hi + 1) if power_fn(n) >= target)


@functools.lru_cache(maxsize=256)
def trials_needed(p_true: float, power: float = 0.8, p0: float = 0.5, alpha: float = 0.05,
                  max_n: int = 200_000) -> int | None:
    """Independent trials needed for the exact binomial test to detect p_true with this power."""
    if p_true == p0:
        return None
    return _smallest_n(lambda n: power_binomial(n, p_true, p0, alpha), power, max_n)


@functools.lru_cache(maxsize=256)
def trials_needed_tost(margin: float, power: float = 0.8, p_true: float = 0.5, p0: float = 0.5,
                       alpha: float = 0.05, max_n: int = 200_000) -> int | None:
    """Independent trials needed for the exact TOST to show equivalence within ±margin."""
    if abs(p_true - p0) >= margin:
        return None
    return _smallest_n(lambda n: power_tost(n, margin, p_true, p0, alpha), power, max_n)


def participants_needed(independent_trials: int, trials_per_participant: int, icc: float) -> int:
    """Participants × trials_per_participant worth independent_trials once clustering is counted."""
    return math.ceil(independent_trials * design_effect(trials_per_participant, icc) / trials_per_participant)


def power_clustered(participants: int, trials_per_participant: int, p_true: float, icc: float,
                    p0: float = 0.5, alpha: float = 0.05) -> float:
    """Approximate power with participants × trials, using the effective number of independent trials."""
    n_eff = int(participants * trials_per_participant / design_effect(trials_per_participant, icc))
    return power_binomial(n_eff, p_true, p0, alpha)


@dataclass
class PowerPlan:
    trials_per_participant: int
    icc: float
    icc_source: str                      # "observed" or "assumed"
    design_effect: float
    alpha: float
    target_power: float
    detect_accuracy: float
    trials_to_detect: int | None         # independent trials
    participants_to_detect: int | None
    margin: float
    trials_for_equivalence: int | None
    participants_for_equivalence: int | None


def power_plan(trials_per_participant: int, icc: float, *, margin: float, alpha: float = 0.05,
               target_power: float = 0.8, detect_accuracy: float | None = None,
               icc_source: str = "assumed") -> PowerPlan:
    """Sample sizes for detecting `detect_accuracy` (default 50% + margin) and for showing
    equivalence within ±margin when the truth is 50%, with clustering within participants."""
    detect = 0.5 + margin if detect_accuracy is None else detect_accuracy
    n_detect = trials_needed(detect, target_power, alpha=alpha)
    n_equiv = trials_needed_tost(margin, target_power, alpha=alpha)
    m = trials_per_participant
    return PowerPlan(
        trials_per_participant=m, icc=icc, icc_source=icc_source, design_effect=design_effect(m, icc),
        alpha=alpha, target_power=target_power, detect_accuracy=detect, trials_to_detect=n_detect,
        participants_to_detect=participants_needed(n_detect, m, icc) if n_detect else None,
        margin=margin, trials_for_equivalence=n_equiv,
        participants_for_equivalence=participants_needed(n_equiv, m, icc) if n_equiv else None)


@dataclass
class PairwisePowerPlan:
    """Sample size for the pairwise design's head-to-head test of one pair of conditions: the exact
    binomial test of that pair's comparisons against 50%, at α divided by the number of pairs
    (Bonferroni, which Holm's first step equals), with the design effect of comparisons_per_pair
    comparisons of that pair per participant."""
    conditions: int
    pairs: int
    comparisons_per_pair: int          # per participant
    p_beats: float                     # true P(the better condition's image is chosen)
    icc: float
    design_effect: float
    alpha: float
    alpha_per_pair: float
    target_power: float
    comparisons_needed: int | None     # independent comparisons of the pair
    participants_needed: int | None


def pairwise_power_plan(conditions: int, comparisons_per_pair: int, p_beats: float, icc: float, *,
                        alpha: float = 0.05, target_power: float = 0.8) -> PairwisePowerPlan:
    """Participants needed to detect P(a beats b) = p_beats for any one pair of `conditions`."""
    if conditions < 2:
        raise ValueError("the pairwise design needs at least two conditions")
    pairs = conditions * (conditions - 1) // 2
    alpha_pair = alpha / pairs
    n = trials_needed(p_beats, target_power, alpha=alpha_pair)
    return PairwisePowerPlan(
        conditions=conditions, pairs=pairs, comparisons_per_pair=comparisons_per_pair, p_beats=p_beats, icc=icc,
        design_effect=design_effect(comparisons_per_pair, icc), alpha=alpha, alpha_per_pair=alpha_pair,
        target_power=target_power, comparisons_needed=n,
        participants_needed=participants_needed(n, comparisons_per_pair, icc) if n else None)
