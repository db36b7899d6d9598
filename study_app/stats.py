"""Statistics for real-vs-fake studies: pure functions on numbers and trial rows.

Two designs. Paired (2AFC): accuracy = share of pairs in which the participant picked the real
image. Single image (HYPE∞ style): accuracy = share of images classified correctly, real as real
and generated as generated (1 − accuracy is the HYPE∞ error rate); errors on real images and on
generated images (the fool rate) are reported separately, with hit and false-alarm rates, d′ and
the criterion c. In both designs 50% is chance.
Trials are clustered within participants, so every trial-level result (exact binomial test,
Wilson / Clopper–Pearson intervals, exact TOST) comes with a participant-level counterpart
(bootstrap over participants, t-tests on per-participant accuracy), and claims need both.
"Indistinguishable" is claimed only when an equivalence test (TOST) against the pre-declared
margin succeeds, never from a non-significant difference test.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np
from scipy import stats as sps

from . import glmm
from . import hype_time as _hype_time

# -- intervals and tests for one proportion --------------------------------------------------------


def clopper_pearson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval for k successes in n trials."""
    if n == 0:
        return (math.nan, math.nan)
    a = 1 - level
    low = 0.0 if k == 0 else float(sps.beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(sps.beta.ppf(1 - a / 2, k + 1, n - k))
    return (low, high)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    z = float(sps.norm.ppf(1 - (1 - level) / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _two_sided_pvalues(n: int, p0: float) -> np.ndarray:
    """Exact two-sided p-value for every k in 0..n (the 'minlike' rule of R and scipy's binomtest)."""
    pmf = sps.binom.pmf(np.arange(n + 1), n, p0)
    order = np.sort(pmf)
    cum = np.cumsum(order)
    idx = np.searchsorted(order, pmf * (1 + 1e-7), side="right")
    return np.minimum(1.0, cum[idx - 1])


def binomial_test(k: int, n: int, p0: float = 0.5) -> float:
    """Exact two-sided binomial test of k/n against p0."""
    if n == 0:
        return math.nan
    return float(sps.binomtest(k, n, p0).pvalue)


def tost_binomial(k: int, n: int, margin: float, p0: float = 0.5) -> float:
    """Exact TOST p-value for 'the true proportion lies within p0 ± margin' (small = equivalent)."""
    if n == 0:
        return math.nan
    p_low = float(sps.binom.sf(k - 1, n, p0 - margin))    # H0: p <= p0 - margin
    p_high = float(sps.binom.cdf(k, n, p0 + margin))      # H0: p >= p0 + margin
    return max(p_low, p_high)


# -- participant-level inference -------------------------------------------------------------------


def t_test_participants(accuracies: Sequence[float], p0: float = 0.5) -> float:
    """Two-sided one-sample t-test of mean per-participant accuracy against p0."""
    acc = np.asarray(accuracies, dtype=float)
    if acc.size < 2:
        return math.nan
    se = acc.std(ddof=1) / math.sqrt(acc.size)
    if se == 0:
        return 0.0 if acc.mean() != p0 else 1.0
    return float(2 * sps.t.sf(abs(acc.mean() - p0) / se, acc.size - 1))


def tost_participants(accuracies: Sequence[float], margin: float, p0: float = 0.5) -> float:
    """TOST on per-participant accuracy (one-sample t-tests against p0 - margin and p0 + margin)."""
    acc = np.asarray(accuracies, dtype=float)
    if acc.size < 2:
        return math.nan
    mean, se, df = acc.mean(), acc.std(ddof=1) / math.sqrt(acc.size), acc.size - 1
    if se == 0:
        return 0.0 if abs(mean - p0) < margin else 1.0
    p_low = sps.t.sf((mean - (p0 - margin)) / se, df)
    p_high = sps.t.cdf((mean - (p0 + margin)) / se, df)
    return float(max(p_low, p_high))


def bootstrap_sums(columns: Sequence[Sequence[float]], *, resamples: int = 10000, seed: int = 0) -> np.ndarray:
    """Participant bootstrap: each column holds one count per participant; for every resample of the
    participants (with replacement) the column sums. Shape (resamples, len(columns))."""
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
    a = (1 - level) / 2
    low, high = np.quantile(estimates, [a, 1 - a])
    return (float(low), float(high))


def bootstrap_participants(correct: Sequence[int], trials: Sequence[int], *, resamples: int = 10000,
                           level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of pooled accuracy, resampling participants with replacement (HYPE)."""
    correct = np.asarray(correct, dtype=float)
    trials = np.asarray(trials, dtype=float)
    if correct.size == 0 or trials.sum() == 0:
        return (math.nan, math.nan)
    sums = bootstrap_sums([correct, trials], resamples=resamples, seed=seed)
    return percentile_interval(sums[:, 0] / np.maximum(sums[:, 1], 1), level)


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
    return 1 + (trials_per_participant - 1) * icc


# -- signal detection -------------------------------------------------------------------------------


def dprime_2afc(proportion_correct: float, n: int | None = None) -> float:
    """d′ of an unbiased observer in 2AFC: √2·z(PC); PC of 0 or 1 is moved in by 1/(2n)."""
    pc = proportion_correct
    if n:
        pc = min(max(pc, 1 / (2 * n)), 1 - 1 / (2 * n))
    if not 0 < pc < 1:
        return math.copysign(math.inf, pc - 0.5)
    return float(math.sqrt(2) * sps.norm.ppf(pc))


def position_sdt(real_left_chose_left: int, real_left: int, real_right_chose_left: int,
                 real_right: int) -> tuple[float, float]:
    """(d′, c) of a 2AFC observer with a possible side bias, from hit and false-alarm rates of
    'left' answers (log-linear correction, Hautus 1995). c < 0: a bias toward the left image."""
    h = (real_left_chose_left + 0.5) / (real_left + 1)
    f = (real_right_chose_left + 0.5) / (real_right + 1)
    zh, zf = sps.norm.ppf(h), sps.norm.ppf(f)
    return float((zh - zf) / math.sqrt(2)), float(-(zh + zf) / 2)


SDT_CORRECTION = ("log-linear correction (Hautus 1995): H = (hits + 0.5) / (real trials + 1), "
                  "F = (false alarms + 0.5) / (fake trials + 1), applied to every table")


def loglinear_rate(k, n):
    """(k + 0.5) / (n + 1): the log-linear correction, which keeps rates of 0 and 1 finite in z."""
    return (np.asarray(k, dtype=float) + 0.5) / (np.asarray(n, dtype=float) + 1)


def sdt_yes_no(hits: int, signal_trials: int, false_alarms: int, noise_trials: int) -> tuple[float, float]:
    """(d′, c) of a yes/no observer: d′ = z(H) − z(F), c = −(z(H) + z(F)) / 2.

    Single-image design: the "signal" is a real image and "yes" the answer "real", so H is the share
    of real images judged real and F the share of generated images judged real (the fool rate).
    c > 0 is a bias toward answering "generated", c < 0 toward "real". H and F use the log-linear
    correction (Hautus 1995) on every table, not only on rates of 0 or 1, so that d′ is finite and
    has no jump where a count reaches 0 or n."""
    if signal_trials <= 0 or noise_trials <= 0:
        return (math.nan, math.nan)
    zh = float(sps.norm.ppf(loglinear_rate(hits, signal_trials)))
    zf = float(sps.norm.ppf(loglinear_rate(false_alarms, noise_trials)))
    return (zh - zf, -(zh + zf) / 2)


# -- multiple comparisons -----------------------------------------------------------------------------


def _adjust_in_order(pvalues: Sequence[float], adjust_ascending) -> list[float]:
    """Apply `adjust_ascending` (ascending p-values -> adjusted) to the non-NaN p-values; NaN stays
    NaN and is not counted in m."""
    p = np.asarray(pvalues, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.full(p.shape, np.nan)
    adjusted[order] = adjust_ascending(p[order])
    return adjusted.tolist()


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values: running max of (m − i)·p_(i), capped at 1."""
    def step_down(p):
        return np.maximum.accumulate(np.minimum(1.0, (p.size - np.arange(p.size)) * p))
    return _adjust_in_order(pvalues, step_down)


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg step-up adjusted p-values (false discovery rate): q_(i) = min over j ≥ i of
    m·p_(j) / j, capped at 1."""
    def step_up(p):
        q = p.size * p / np.arange(1, p.size + 1)
        return np.minimum(1.0, np.minimum.accumulate(q[::-1])[::-1])
    return _adjust_in_order(pvalues, step_up)


CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg}
CORRECTION_NAMES = {"holm": "Holm (family-wise error)", "bh": "Benjamini–Hochberg (false discovery rate)"}


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Adjust p-values across conditions by the configured correction ("holm" or "bh")."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, got {method!r}")
    return CORRECTIONS[method](pvalues)


# -- power and sample size ------------------------------------------------------------------------------


def power_binomial(n: int, p_true: float, p0: float = 0.5, alpha: float = 0.05) -> float:
    """Power of the exact two-sided binomial test with n independent trials."""
    if n <= 0:
        return 0.0
    reject = _two_sided_pvalues(n, p0) <= alpha
    return float(sps.binom.pmf(np.arange(n + 1), n, p_true)[reject].sum())


def power_tost(n: int, margin: float, p_true: float = 0.5, p0: float = 0.5, alpha: float = 0.05) -> float:
    """Power of the exact binomial TOST (equivalence within p0 ± margin) with n independent trials."""
    if n <= 0:
        return 0.0
    k = np.arange(n + 1)
    p_low = sps.binom.sf(k - 1, n, p0 - margin)
    p_high = sps.binom.cdf(k, n, p0 + margin)
    reject = np.maximum(p_low, p_high) < alpha
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


# -- study analysis -------------------------------------------------------------------------------------


@dataclass
class ImageStat:
    image: str
    role: str                 # "fake": rate = fool rate; "real": rate = how often it was picked as real
    condition: str
    views: int
    judged_real: int
    rate: float
    ci_low: float             # Wilson 95%
    ci_high: float
    shrunk_rate: float        # beta-binomial empirical-Bayes estimate within its condition and role
    undersampled: bool


@dataclass
class ConditionResult:
    condition: str
    participants: int
    trials: int
    correct: int
    accuracy: float
    p_value: float                    # exact binomial, two-sided, vs 50%
    p_value_adjusted: float
    ci_exact: tuple[float, float]     # Clopper–Pearson 95%
    ci_wilson: tuple[float, float]
    ci_bootstrap: tuple[float, float] # participants resampled
    participant_mean_accuracy: float
    participant_p_value: float        # t-test of per-participant accuracy vs 50%
    participant_p_value_adjusted: float
    dprime: float                     # √2·z(PC)
    dprime_ci: tuple[float, float]    # from the exact interval
    left_choice_rate: float
    position_p_value: float           # exact binomial test of 'left' answers vs 50%
    position_bias_c: float            # criterion; < 0 = bias toward the left image
    dprime_bias_corrected: float
    tost_p_trials: float              # exact binomial TOST within 50% ± margin
    tost_p_participants: float        # t-based TOST on per-participant accuracy
    tost_p_adjusted: float                # the larger of the two, adjusted across conditions
    icc: float
    design_effect: float
    different: bool
    equivalent: bool
    verdict: str


@dataclass
class SingleConditionResult:
    """One condition of a single-image study. Real trials belong to a condition's block (each condition
    gets its own half of real images), so real-image error is reported per condition too."""
    condition: str
    participants: int
    trials: int                       # real + generated images (main trials)
    correct: int
    accuracy: float                   # share classified correctly; 1 − accuracy = HYPE∞ error rate
    p_value: float                    # exact binomial, two-sided, vs 50%
    p_value_adjusted: float
    ci_exact: tuple[float, float]     # Clopper–Pearson 95%
    ci_wilson: tuple[float, float]
    ci_bootstrap: tuple[float, float] # participants resampled
    participant_mean_accuracy: float
    participant_p_value: float        # t-test of per-participant accuracy vs 50%
    participant_p_value_adjusted: float
    real_trials: int
    real_judged_fake: int
    real_error: float                 # share of real images judged generated
    real_error_ci_exact: tuple[float, float]
    real_error_ci_wilson: tuple[float, float]
    real_error_ci_bootstrap: tuple[float, float]
    fake_trials: int
    fake_judged_real: int
    fake_error: float                 # share of generated images judged real = fool rate
    fake_error_ci_exact: tuple[float, float]
    fake_error_ci_wilson: tuple[float, float]
    fake_error_ci_bootstrap: tuple[float, float]
    hit_rate: float                   # H: real images judged real (= 1 − real_error), uncorrected
    false_alarm_rate: float           # F: generated images judged real (= fake_error), uncorrected
    dprime: float                     # z(H) − z(F), log-linear corrected H and F
    dprime_ci_bootstrap: tuple[float, float]
    criterion_c: float                # −(z(H) + z(F)) / 2; > 0 = bias toward answering "generated"
    criterion_ci_bootstrap: tuple[float, float]
    sdt_correction: str
    real_answer_rate: float           # share of "real" answers
    real_answer_p_value: float        # exact binomial test of "real" answers vs the share of real images
    tost_p_trials: float              # exact binomial TOST within 50% ± margin
    tost_p_participants: float        # t-based TOST on per-participant accuracy
    tost_p_adjusted: float                # the larger of the two, adjusted across conditions
    icc: float
    design_effect: float
    different: bool
    equivalent: bool
    verdict: str


@dataclass
class MixedModelCondition:
    condition: str
    accuracy: float                   # typical participant on a typical image: expit(coefficient)
    ci: tuple[float, float]           # Wald 95% on the logit scale, back-transformed
    coefficient: float                # logit scale
    se: float
    p_value: float                    # Wald test vs 50%
    p_value_adjusted: float
    tost_p: float                     # Wald TOST within 50% ± margin
    equivalent: bool                  # tost_p < α


@dataclass
class MixedModelReport:
    """correct ~ 0 + condition + (1 | participant) + (1 | image) [+ (1 | real image)], Laplace fit."""
    formula: str
    conditions: list[MixedModelCondition]
    random_sd: dict[str, float]       # logit-scale SD of each random intercept
    group_sizes: dict[str, int]
    trials: int
    converged: bool
    note: str = ""                    # why the model was not fitted, or a caution


@dataclass
class StudyReport:
    alpha: float
    margin: float
    exclusion_rule: str
    participants_total: int
    participants_analysed: int
    excluded: dict[int, str]                  # participant -> reason (pre-declared rule)
    incomplete: list[int]                     # participants left out because they did not finish
    attention_accuracy: float
    conditions: list[ConditionResult] | list[SingleConditionResult]
    images: list[ImageStat]
    power: PowerPlan
    verdict: str
    notes: list[str] = field(default_factory=list)
    design: str = "paired"                    # "paired" (2AFC) or "single" (one image per trial)
    correction: str = "holm"                  # across conditions: "holm" or "bh"
    mixed_model: MixedModelReport | None = None
    hype_time: list[_hype_time.HypeTimeResult] = field(default_factory=list)   # staircase studies only

    def to_dict(self) -> dict:
        """Plain JSON-ready data (NaN and infinities become None)."""
        data = asdict(self)
        data["excluded"] = {str(k): v for k, v in self.excluded.items()}
        return _json_ready(data)


def _json_ready(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    return value


def _exclusion_rule_text(min_attention: float, min_rt_ms: int) -> str:
    parts = [f"fewer than {min_attention:.0%} of attention checks correct"]
    if min_rt_ms:
        parts.append(f"median response time under {min_rt_ms} ms")
    return "exclude participants with " + " or ".join(parts)


def exclusions(rows: Iterable[dict], *, min_attention_correct: float, exclude_median_rt_below_ms: int = 0) -> dict[int, str]:
    """Participants excluded by the pre-declared rule, with the reason."""
    attention: dict[int, list[bool]] = {}
    rts: dict[int, list[float]] = {}
    for r in rows:
        pid = r["participant"]
        if r["trial_kind"] == "attention":
            attention.setdefault(pid, []).append(bool(r["correct"]))
        elif r["trial_kind"] == "main":
            rt = r.get("client_rt_ms") if r.get("client_rt_ms") is not None else r.get("rt_ms")  # browser timing first
            if rt is not None:
                rts.setdefault(pid, []).append(float(rt))
    out = {}
    for pid, answers in attention.items():
        share = sum(answers) / len(answers)
        if share + 1e-12 < min_attention_correct:
            out[pid] = f"attention checks {sum(answers)}/{len(answers)} correct"
    if exclude_median_rt_below_ms:
        for pid, values in rts.items():
            median = float(np.median(values))
            if pid not in out and median < exclude_median_rt_below_ms:
                out[pid] = f"median response time {median:.0f} ms"
    return out


def _beta_binomial_shrink(judged: np.ndarray, views: np.ndarray) -> np.ndarray:
    """Empirical-Bayes rates: each image pulled toward its group's mean by method-of-moments strength."""
    total = views.sum()
    if total == 0:
        return np.full(views.shape, np.nan)
    pbar = judged.sum() / total
    if views.size < 2 or pbar in (0.0, 1.0):
        return (judged + pbar) / (views + 1)
    rates = judged / np.maximum(views, 1)
    observed_var = np.sum(views * (rates - pbar) ** 2) / total
    tau2 = observed_var - pbar * (1 - pbar) * np.mean(1 / np.maximum(views, 1))
    strength = 1000.0 if tau2 <= 0 else float(np.clip(pbar * (1 - pbar) / tau2 - 1, 1.0, 1000.0))
    return (judged + strength * pbar) / (views + strength)


def is_single_row(row: dict) -> bool:
    """A trial row of the single-image design (real_side holds the correct answer, "real" or "fake")."""
    return row["real_side"] in ("real", "fake")


def image_stats(rows: Iterable[dict], *, min_views: int) -> list[ImageStat]:
    """Per-image counts from main trials: how often each fake fooled people (was picked as, or judged,
    real) and how often each real image was picked as or judged real."""
    counts: dict[tuple[str, str, str], list[int]] = {}
    for r in rows:
        if r["trial_kind"] != "main":
            continue
        if is_single_row(r):   # one image: judged real or not
            judged_real = r["chosen_side"] == "real"
            shown = (("real", r["real_image"]),) if r["real_side"] == "real" else (("fake", r["fake_image"]),)
            for role, image in shown:
                c = counts.setdefault((role, r["condition"], image), [0, 0])
                c[0] += 1
                c[1] += judged_real
            continue
        chose_real = bool(r["correct"])
        for role, image in (("fake", r["fake_image"]), ("real", r["real_image"])):
            c = counts.setdefault((role, r["condition"], image), [0, 0])
            c[0] += 1
            c[1] += (not chose_real) if role == "fake" else chose_real
    out: list[ImageStat] = []
    groups: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for (role, cond, image), (views, judged) in counts.items():
        groups.setdefault((role, cond), []).append((image, views, judged))
    for (role, cond), items in sorted(groups.items()):
        views = np.array([v for _, v, _ in items], dtype=float)
        judged = np.array([j for _, _, j in items], dtype=float)
        shrunk = _beta_binomial_shrink(judged, views)
        for (image, v, j), s in zip(items, shrunk):
            low, high = wilson_interval(j, v)
            out.append(ImageStat(image=image, role=role, condition=cond, views=v, judged_real=j, rate=j / v,
                                 ci_low=low, ci_high=high, shrunk_rate=float(s), undersampled=v < min_views))
    out.sort(key=lambda s: (s.condition, s.role, -s.rate, s.image))
    return out


_WORDS = {
    "paired": {"unit": "pairs", "better": "people picked the real image more often than chance"},
    "single": {"unit": "images", "better": "people classified the images (real as real, generated as generated) "
                                           "correctly more often than chance"},
}


def _verdict(res, margin: float, alpha: float, plan: PowerPlan, design: str = "paired") -> str:
    words = _WORDS[design]
    acc = f"accuracy {res.accuracy:.1%} (95% CI {res.ci_exact[0]:.1%}–{res.ci_exact[1]:.1%}, " \
          f"participant bootstrap {res.ci_bootstrap[0]:.1%}–{res.ci_bootstrap[1]:.1%})"
    if res.different and res.equivalent:
        return (f"DISTINGUISHABLE, BUT ONLY SLIGHTLY: {acc} differs from 50% (p_adj={res.p_value_adjusted:.3g}) "
                f"yet lies within the ±{margin:.0%} equivalence margin (TOST p_adj={res.tost_p_adjusted:.3g}).")
    if res.different and res.accuracy > 0.5:
        return (f"DISTINGUISHABLE: {words['better']}; {acc}; exact binomial "
                f"p_adj={res.p_value_adjusted:.3g}, participant-level p_adj={res.participant_p_value_adjusted:.3g}. "
                "'Indistinguishable' is not supported.")
    if res.different:
        return (f"FAKES JUDGED MORE REAL THAN REAL IMAGES: {acc} is below chance (p_adj={res.p_value_adjusted:.3g}).")
    if res.equivalent:
        return (f"INDISTINGUISHABLE WITHIN ±{margin:.0%} IS SUPPORTED: {acc}; equivalence test (TOST) against "
                f"50% ± {margin:.0%}: p_adj={res.tost_p_adjusted:.3g} at trial and participant level.")
    need = plan.participants_for_equivalence
    advice = (f" About {need} participants × {plan.trials_per_participant} {words['unit']} would give "
              f"{plan.target_power:.0%} power to show equivalence within ±{margin:.0%}." if need else "")
    return (f"INCONCLUSIVE — 'indistinguishable' is NOT supported: {acc}; no significant difference from 50% "
            f"(p_adj={res.p_value_adjusted:.3g}), but equivalence within ±{margin:.0%} is not shown either "
            f"(TOST p_adj={res.tost_p_adjusted:.3g}). A non-significant test is not evidence of no difference.{advice}")


def _single_stats(main: list[dict], resamples: int, seed: int) -> dict:
    """The single-design fields of one condition: error rates on real and on generated images, H, F, d′, c,
    each with intervals; the bootstrap resamples participants (one draw shared by every statistic)."""
    per: dict[int, list[int]] = {}
    for r in main:  # participant -> [correct, trials, real trials, real judged fake, fake trials, fake judged real]
        c = per.setdefault(r["participant"], [0, 0, 0, 0, 0, 0])
        c[0] += bool(r["correct"])
        c[1] += 1
        if r["real_side"] == "real":
            c[2] += 1
            c[3] += r["chosen_side"] != "real"
        else:
            c[4] += 1
            c[5] += r["chosen_side"] == "real"
    cols = np.array(list(per.values()), dtype=float).reshape(-1, 6).T
    _, _, nr, er, nf, fr = (int(v) for v in cols.sum(axis=1))
    nan2 = (math.nan, math.nan)
    boot = {"ci_bootstrap": nan2, "real_error_ci_bootstrap": nan2, "fake_error_ci_bootstrap": nan2,
            "dprime_ci_bootstrap": nan2, "criterion_ci_bootstrap": nan2}
    if per:
        sums = bootstrap_sums(cols, resamples=resamples, seed=seed)
        boot["ci_bootstrap"] = percentile_interval(sums[:, 0] / np.maximum(sums[:, 1], 1))
        if nr:
            boot["real_error_ci_bootstrap"] = percentile_interval(sums[:, 3] / np.maximum(sums[:, 2], 1))
        if nf:
            boot["fake_error_ci_bootstrap"] = percentile_interval(sums[:, 5] / np.maximum(sums[:, 4], 1))
        if nr and nf:
            zh = sps.norm.ppf(loglinear_rate(sums[:, 2] - sums[:, 3], sums[:, 2]))
            zf = sps.norm.ppf(loglinear_rate(sums[:, 5], sums[:, 4]))
            boot["dprime_ci_bootstrap"] = percentile_interval(zh - zf)
            boot["criterion_ci_bootstrap"] = percentile_interval(-(zh + zf) / 2)
    dprime, criterion = sdt_yes_no(nr - er, nr, fr, nf)
    real_answers = (nr - er) + fr
    return dict(
        real_trials=nr, real_judged_fake=er, real_error=er / nr if nr else math.nan,
        real_error_ci_exact=clopper_pearson_interval(er, nr), real_error_ci_wilson=wilson_interval(er, nr),
        fake_trials=nf, fake_judged_real=fr, fake_error=fr / nf if nf else math.nan,
        fake_error_ci_exact=clopper_pearson_interval(fr, nf), fake_error_ci_wilson=wilson_interval(fr, nf),
        hit_rate=(nr - er) / nr if nr else math.nan, false_alarm_rate=fr / nf if nf else math.nan,
        dprime=dprime, criterion_c=criterion, sdt_correction=SDT_CORRECTION,
        real_answer_rate=real_answers / (nr + nf) if nr + nf else math.nan,
        real_answer_p_value=binomial_test(real_answers, nr + nf, nr / (nr + nf)) if nr and nf else math.nan,
        **boot)


MIN_MIXED_MODEL_PARTICIPANTS = 5


def mixed_model_results(kept: Sequence[dict], conditions: Sequence[str], design: str, *, alpha: float,
                        margin: float, correction: str) -> MixedModelReport:
    """Fit the crossed-effects GLMM to the analysed main trials. Items: the generated image, and in the
    paired design also the real image it was paired with (both vary in how telling they are)."""
    main = [r for r in kept if r["trial_kind"] == "main" and r["condition"] in set(conditions)]
    groups = {"participant": [r["participant"] for r in main]}
    if design == "single":
        groups["image"] = [("real", r["real_image"]) if r["real_side"] == "real" else ("fake", r["fake_image"])
                           for r in main]
        formula = "correct ~ 0 + condition + (1 | participant) + (1 | image)"
    else:
        groups["fake image"] = [r["fake_image"] for r in main]
        groups["real image"] = [r["real_image"] for r in main]
        formula = "correct ~ 0 + condition + (1 | participant) + (1 | fake image) + (1 | real image)"
    empty = MixedModelReport(formula=formula, conditions=[], random_sd={}, group_sizes={}, trials=len(main),
                             converged=False)
    people = len(set(groups["participant"]))
    if people < MIN_MIXED_MODEL_PARTICIPANTS:
        empty.note = (f"not fitted: {people} analysed participants; the mixed model needs at least "
                      f"{MIN_MIXED_MODEL_PARTICIPANTS} to estimate the spread between them.")
        return empty
    try:
        fit = glmm.fit_crossed_logistic([bool(r["correct"]) for r in main], [r["condition"] for r in main], groups)
    except glmm.MixedModelError as exc:
        empty.note = f"not fitted: {exc}"
        return empty
    index = {name: i for i, name in enumerate(fit.fixed_names)}
    fitted = [label for label in conditions if label in index]
    adjusted = adjust([fit.p_value(index[label]) for label in fitted], correction)
    rows = []
    for label, p_adj in zip(fitted, adjusted):
        i = index[label]
        tost = fit.tost_p(i, margin)
        rows.append(MixedModelCondition(
            condition=label, accuracy=fit.accuracy(i), ci=fit.interval(i), coefficient=float(fit.coef[i]),
            se=float(fit.se[i]), p_value=fit.p_value(i), p_value_adjusted=p_adj, tost_p=tost,
            equivalent=bool(tost < alpha)))
    return MixedModelReport(
        formula=formula, conditions=rows, random_sd=dict(zip(fit.group_names, map(float, fit.sd))),
        group_sizes=dict(zip(fit.group_names, fit.group_sizes)), trials=fit.trials, converged=fit.converged,
        note="" if fit.converged else "the optimiser of the variance components did not report convergence.")


def analyse(rows: Sequence[dict], *, conditions: Sequence[str], design: str = "paired", alpha: float = 0.05,
            margin: float = 0.05, min_attention_correct: float = 1.0, exclude_median_rt_below_ms: int = 0,
            include_incomplete: bool = False, min_views_per_image: int = 10, bootstrap_resamples: int = 10000,
            trials_per_participant: int = 20, assumed_icc: float = 0.027, target_power: float = 0.8,
            correction: str = "holm", mixed_model: bool = True, staircase_floor_ms: int | None = None,
            seed: int = 0) -> StudyReport:
    """Analyse exported trial rows (keys: participant, participant_status, trial_kind, condition,
    real_image, fake_image, real_side, chosen_side, correct, rt_ms) of a "paired" or "single" study.
    staircase_floor_ms: set (to design.staircase_min_ms) for a study run with the HYPE_time staircase,
    which adds each condition's exposure threshold; None otherwise."""
    if design not in _WORDS:
        raise ValueError(f"design must be 'paired' or 'single', got {design!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, got {correction!r}")
    rows = list(rows)
    early_notes = []
    other = [r for r in rows if is_single_row(r) != (design == "single")]
    if other:  # the config's design was changed after these answers were given
        rows = [r for r in rows if is_single_row(r) == (design == "single")]
        early_notes.append(f"{len(other)} answers from the other design ({len({r['participant'] for r in other})} "
                           f"participants) are left out: this is a {design} study.")
    all_participants = sorted({r["participant"] for r in rows})
    incomplete = sorted({r["participant"] for r in rows if r["participant_status"] != "completed"})
    incomplete_set = set() if include_incomplete else set(incomplete)
    excluded = {pid: reason for pid, reason in exclusions(
        [r for r in rows if r["participant"] not in incomplete_set],
        min_attention_correct=min_attention_correct, exclude_median_rt_below_ms=exclude_median_rt_below_ms).items()}
    dropped = incomplete_set | set(excluded)
    kept = [r for r in rows if r["participant"] not in dropped]
    attention = [bool(r["correct"]) for r in kept if r["trial_kind"] == "attention"]

    partial = []
    for label in conditions:
        main = [r for r in kept if r["trial_kind"] == "main" and r["condition"] == label]
        per: dict[int, list[int]] = {}
        for r in main:
            c = per.setdefault(r["participant"], [0, 0])
            c[0] += bool(r["correct"])
            c[1] += 1
        k = np.array([c[0] for c in per.values()], dtype=int)
        n = np.array([c[1] for c in per.values()], dtype=int)
        partial.append((label, main, k, n))

    # A small study estimates the ICC poorly (often 0): plan with the larger of observed and assumed.
    observed_iccs = [icc_binary(k, n) for *_, k, n in partial if k.size >= 10]
    observed_iccs = [v for v in observed_iccs if not math.isnan(v)]
    observed = float(np.mean(observed_iccs)) if observed_iccs else math.nan
    use_observed = not math.isnan(observed) and observed > assumed_icc
    plan = power_plan(trials_per_participant, observed if use_observed else assumed_icc, margin=margin, alpha=alpha,
                      target_power=target_power,
                      icc_source="observed" if use_observed else
                      ("assumed" if math.isnan(observed) else f"assumed; observed {observed:.3f} is lower"))

    results = []
    for label, main, k, n in partial:
        trials, correct = int(n.sum()), int(k.sum())
        acc = correct / trials if trials else math.nan
        per_acc = k / np.maximum(n, 1)
        ci = clopper_pearson_interval(correct, trials)
        icc = icc_binary(k, n)
        common = dict(
            condition=label, participants=int(k.size), trials=trials, correct=correct, accuracy=acc,
            p_value=binomial_test(correct, trials), ci_exact=ci, ci_wilson=wilson_interval(correct, trials),
            participant_mean_accuracy=float(per_acc.mean()) if k.size else math.nan,
            participant_p_value=t_test_participants(per_acc),
            tost_p_trials=tost_binomial(correct, trials, margin), tost_p_participants=tost_participants(per_acc, margin),
            icc=icc, design_effect=design_effect(float(n.mean()) if n.size else 1.0, 0.0 if math.isnan(icc) else icc))
        if design == "single":
            results.append(dict(common, **_single_stats(main, bootstrap_resamples, seed)))
            continue
        left = sum(r["chosen_side"] == "left" for r in main)
        rl = [r for r in main if r["real_side"] == "left"]
        rr = [r for r in main if r["real_side"] == "right"]
        d_pos, c_pos = position_sdt(sum(r["chosen_side"] == "left" for r in rl), len(rl),
                                    sum(r["chosen_side"] == "left" for r in rr), len(rr))
        results.append(dict(
            common, ci_bootstrap=bootstrap_participants(k, n, resamples=bootstrap_resamples, seed=seed),
            dprime=dprime_2afc(acc, trials) if trials else math.nan,
            dprime_ci=(dprime_2afc(ci[0], trials), dprime_2afc(ci[1], trials)) if trials else (math.nan, math.nan),
            left_choice_rate=left / trials if trials else math.nan,
            position_p_value=binomial_test(left, trials), position_bias_c=c_pos, dprime_bias_corrected=d_pos))

    p_adj = adjust([r["p_value"] for r in results], correction)
    pp_adj = adjust([r["participant_p_value"] for r in results], correction)
    tost_adj = adjust([max(r["tost_p_trials"], r["tost_p_participants"]) for r in results], correction)
    result_class = SingleConditionResult if design == "single" else ConditionResult
    condition_results = []
    for r, ph, pph, th in zip(results, p_adj, pp_adj, tost_adj):
        different = bool(ph < alpha and pph < alpha)   # NaN compares False: one participant proves nothing
        equivalent = bool(th < alpha)
        res = result_class(**r, p_value_adjusted=ph, participant_p_value_adjusted=pph, tost_p_adjusted=th,
                           different=different, equivalent=equivalent, verdict="")
        res.verdict = _verdict(res, margin, alpha, plan, design) if res.trials else "NO DATA for this condition yet."
        condition_results.append(res)

    supported = [c.condition for c in condition_results if c.equivalent and not c.different]
    if not any(c.trials for c in condition_results):
        verdict = "No analysable answers yet."
    elif supported and len(supported) == len(condition_results):
        verdict = f"'Indistinguishable' (within ±{margin:.0%}) is supported for every condition."
    elif supported:
        verdict = (f"'Indistinguishable' (within ±{margin:.0%}) is supported only for: {', '.join(supported)}; "
                   "not for the other conditions.")
    else:
        verdict = f"'Indistinguishable' (within ±{margin:.0%}) is NOT supported for any condition."

    notes = list(early_notes)
    if len(conditions) > 1:
        notes.append(f"{CORRECTION_NAMES[correction]} correction across {len(conditions)} conditions (α = {alpha}).")
    if any(s.undersampled for s in image_stats(kept, min_views=min_views_per_image)):
        notes.append(f"Some images were seen fewer than {min_views_per_image} times: their fool rates are noisy.")
    return StudyReport(
        alpha=alpha, margin=margin,
        exclusion_rule=_exclusion_rule_text(min_attention_correct, exclude_median_rt_below_ms),
        participants_total=len(all_participants),
        participants_analysed=len({r["participant"] for r in kept}),
        excluded=excluded, incomplete=incomplete if not include_incomplete else [],
        attention_accuracy=sum(attention) / len(attention) if attention else math.nan,
        conditions=condition_results, images=image_stats(kept, min_views=min_views_per_image),
        power=plan, verdict=verdict, notes=notes, design=design, correction=correction,
        mixed_model=mixed_model_results(kept, conditions, design, alpha=alpha, margin=margin,
                                        correction=correction) if mixed_model else None,
        hype_time=[] if staircase_floor_ms is None else _hype_time.hype_time(
            kept, conditions, include_incomplete=True, floor_ms=staircase_floor_ms,
            resamples=bootstrap_resamples, seed=seed))


def _pct(x: float) -> str:
    return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}%"


def _needed(trials: int | None, participants: int | None) -> str:
    return f"{trials} independent trials ≈ {participants} participants" if trials else "not reachable"


def _ci(ci: tuple[float, float]) -> str:
    return f"{_pct(ci[0]).strip()}–{_pct(ci[1]).strip()}"


def _num_ci(ci: tuple[float, float]) -> str:
    return "n/a" if any(v is None or math.isnan(v) for v in ci) else f"{ci[0]:.2f} to {ci[1]:.2f}"


def _report_lines(report: StudyReport, description: list[str], columns: str, cells, details) -> list[str]:
    """What both designs print: the participant counts, the design's `description`, one table row per
    condition (shared columns, then the design's `columns` header and `cells(c)`), and each
    condition's verdict followed by `details(c)`."""
    lines = [
        f"Participants: {report.participants_total} with answers, {report.participants_analysed} analysed, "
        f"{len(report.excluded)} excluded, {len(report.incomplete)} incomplete (not analysed).",
        f"Exclusion rule (pre-declared): {report.exclusion_rule}.",
        f"Attention checks of analysed participants: {_pct(report.attention_accuracy).strip()} correct.",
        *description,
        "",
        f"{'condition':<16} {'people':>6} {'trials':>6} {'acc':>6} {'exact 95% CI':>15} {'bootstrap CI':>15} "
        f"{'p':>7} {'p_adj':>7} " + columns,
    ]
    for c in report.conditions:
        if not c.trials:
            lines.append(f"{c.condition:<16} {0:>6} {0:>6}   (no answers yet)")
            continue
        lines.append(
            f"{c.condition:<16} {c.participants:>6} {c.trials:>6} {_pct(c.accuracy)} "
            f"{_pct(c.ci_exact[0])}–{_pct(c.ci_exact[1]).strip():>6} {_pct(c.ci_bootstrap[0])}–{_pct(c.ci_bootstrap[1]).strip():>6} "
            f"{c.p_value:>7.3g} {c.p_value_adjusted:>7.3g}" + cells(c))
    lines.append("")
    for c in report.conditions:
        lines.append(f"[{c.condition}] {c.verdict}")
        if c.trials:
            lines += details(c)
    return lines


def _single_lines(report: StudyReport) -> list[str]:
    """Header, table and per-condition details of a single-image study."""
    description = [
        "Design: single image per trial (real or generated?). Accuracy = share of images classified correctly "
        f"(real as real, generated as generated); 50% is chance; HYPE∞ error = 1 − accuracy. α = {report.alpha}, "
        f"equivalence margin ±{report.margin:.0%}.",
        "Real error = real images judged generated; fake error (fool rate) = generated images judged real. "
        "H = real judged real, F = generated judged real; d′ = z(H) − z(F), c = −(z(H) + z(F))/2 "
        "(c > 0: bias toward 'generated'), with the " + SDT_CORRECTION + ".",
    ]
    columns = f"{'realerr':>7} {'fakeerr':>7} {'d′':>6} {'c':>6} {'TOST p':>7}"

    def cells(c):
        return (f"  {_pct(c.real_error)}  {_pct(c.fake_error)} "
                f"{c.dprime:>6.2f} {c.criterion_c:>+6.2f} {c.tost_p_adjusted:>7.3g}")

    def details(c):
        return [
            f"    Wilson 95% CI {_ci(c.ci_wilson)}; HYPE∞ error {_pct(1 - c.accuracy).strip()}; mean participant "
            f"accuracy {_pct(c.participant_mean_accuracy).strip()} (t-test p = {c.participant_p_value:.3g}); "
            f"ICC = {c.icc:.3f}, design effect {c.design_effect:.2f}.",
            f"    Real images judged generated: {c.real_judged_fake}/{c.real_trials} = {_pct(c.real_error).strip()} "
            f"(exact 95% CI {_ci(c.real_error_ci_exact)}, Wilson {_ci(c.real_error_ci_wilson)}, "
            f"bootstrap {_ci(c.real_error_ci_bootstrap)}).",
            f"    Generated images judged real (fool rate): {c.fake_judged_real}/{c.fake_trials} = "
            f"{_pct(c.fake_error).strip()} (exact 95% CI {_ci(c.fake_error_ci_exact)}, Wilson {_ci(c.fake_error_ci_wilson)}, "
            f"bootstrap {_ci(c.fake_error_ci_bootstrap)}).",
            f"    H = {_pct(c.hit_rate).strip()}, F = {_pct(c.false_alarm_rate).strip()}: d′ = {c.dprime:.2f} "
            f"(bootstrap 95% CI {_num_ci(c.dprime_ci_bootstrap)}), c = {c.criterion_c:+.2f} "
            f"(bootstrap 95% CI {_num_ci(c.criterion_ci_bootstrap)}); 'real' answers {_pct(c.real_answer_rate).strip()} "
            f"(p = {c.real_answer_p_value:.3g} against the share of real images).",
        ]

    return _report_lines(report, description, columns, cells, details)


def _paired_lines(report: StudyReport) -> list[str]:
    """Header, table and per-condition details of a paired (2AFC) study."""
    description = [f"Accuracy = share of pairs in which the real image was picked; 50% is chance. α = {report.alpha}, "
                   f"equivalence margin ±{report.margin:.0%}."]
    columns = f"{'d′':>6} {'left':>6} {'TOST p':>7}"

    def cells(c):
        return f" {c.dprime:>6.2f} {_pct(c.left_choice_rate)} {c.tost_p_adjusted:>7.3g}"

    def details(c):
        return [f"    Wilson 95% CI {_pct(c.ci_wilson[0]).strip()}–{_pct(c.ci_wilson[1]).strip()}; "
                f"d′ 95% CI {c.dprime_ci[0]:.2f} to {c.dprime_ci[1]:.2f}; side bias c = {c.position_bias_c:+.2f} "
                f"(left answers p = {c.position_p_value:.3g}); ICC = {c.icc:.3f}, design effect {c.design_effect:.2f}; "
                f"mean participant accuracy {_pct(c.participant_mean_accuracy).strip()} (t-test p = {c.participant_p_value:.3g})."]

    return _report_lines(report, description, columns, cells, details)


def _mixed_model_lines(mm: MixedModelReport | None, margin: float) -> list[str]:
    if mm is None:
        return []
    lines = ["", f"Mixed model (GLMM, Laplace): {mm.formula}"]
    if not mm.conditions:
        return lines + [f"    {mm.note}"]
    sds = ", ".join(f"{name} {sd:.2f} ({mm.group_sizes[name]} levels)" for name, sd in mm.random_sd.items())
    lines.append(f"    {mm.trials} main trials; random-intercept SD on the logit scale: {sds}.")
    for c in mm.conditions:
        lines.append(f"    {c.condition:<16} typical accuracy {_pct(c.accuracy).strip()} (95% CI {_ci(c.ci)}), "
                     f"p = {c.p_value:.3g}, p_adj = {c.p_value_adjusted:.3g}, TOST ±{margin:.0%} p = {c.tost_p:.3g}"
                     f"{' (equivalent)' if c.equivalent else ''}.")
    if mm.note:
        lines.append(f"    Note: {mm.note}")
    return lines


def format_report(report: StudyReport, *, max_images: int = 10) -> str:
    """Plain-text report for the terminal and the admin page."""
    unit = _WORDS[report.design]["unit"]
    lines = _single_lines(report) if report.design == "single" else _paired_lines(report)
    p = report.power
    lines += [
        "",
        f"Power plan ({p.trials_per_participant} {unit} per participant, ICC {p.icc:.3f} {p.icc_source}, "
        f"design effect {p.design_effect:.2f}, α = {p.alpha}, power {p.target_power:.0%}):",
        f"    to detect {p.detect_accuracy:.0%} accuracy: {_needed(p.trials_to_detect, p.participants_to_detect)}",
        f"    to show equivalence within ±{p.margin:.0%}: "
        f"{_needed(p.trials_for_equivalence, p.participants_for_equivalence)}",
    ]
    lines += _mixed_model_lines(report.mixed_model, report.margin)
    hype = _hype_time.format_hype_time(report.hype_time)
    lines += [""] + hype if hype else []
    fakes = [s for s in report.images if s.role == "fake"]
    if fakes:
        under = sum(s.undersampled for s in fakes)
        lines += ["", f"Most convincing fakes (fool rate, Wilson 95% CI; {under} of {len(fakes)} fakes under-sampled):"]
        for s in sorted(fakes, key=lambda s: -s.shrunk_rate)[:max_images]:
            flag = "  (under-sampled)" if s.undersampled else ""
            lines.append(f"    {s.image:<40} {s.judged_real:>3}/{s.views:<3} {_pct(s.rate)} "
                         f"[{_pct(s.ci_low).strip()}–{_pct(s.ci_high).strip()}] shrunk {_pct(s.shrunk_rate).strip()}{flag}")
    if report.excluded:
        lines += ["", "Excluded: " + "; ".join(f"participant {k}: {v}" for k, v in sorted(report.excluded.items()))]
    lines += [""] + report.notes + ["", f"VERDICT: {report.verdict}"]
    return "\n".join(lines)
