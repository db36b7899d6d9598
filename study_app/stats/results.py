"""What an analysis returns: plain dataclasses, JSON-ready with `StudyReport.to_dict()` and tables
with `StudyReport.to_frame()`."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .hype_time import HypeTimeResult
from .pairwise import HeadToHead, RankingReport
from .power import PowerPlan


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
class BaseConditionResult:
    """What both designs report for one condition: accuracy (50% = chance) with trial-level and
    participant-level tests, intervals and TOSTs, and the verdict drawn from them."""
    condition: str
    participants: int
    trials: int                       # main trials (pairs, or single images)
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
    dprime: float                     # the design's d′: see the subclass
    tost_p_trials: float              # exact binomial TOST within 50% ± margin
    tost_p_participants: float        # t-based TOST on per-participant accuracy
    tost_p_adjusted: float            # the larger of the two, adjusted across conditions
    icc: float
    design_effect: float
    different: bool
    equivalent: bool
    verdict: str


@dataclass
class ConditionResult(BaseConditionResult):
    """One condition of a paired (2AFC) study; dprime = √2·z(PC)."""
    dprime_ci: tuple[float, float]    # from the exact interval
    left_choice_rate: float
    position_p_value: float           # exact binomial test of 'left' answers vs 50%
    position_bias_c: float            # criterion; < 0 = bias toward the left image
    dprime_bias_corrected: float


@dataclass
class SingleConditionResult(BaseConditionResult):
    """One condition of a single-image study; accuracy = share classified correctly (1 − accuracy =
    HYPE∞ error rate), dprime = z(H) − z(F) with log-linear corrected H and F. Real trials belong
    to a condition's block (each condition gets its own half of real images), so real-image error
    is reported per condition too."""
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
    dprime_ci_bootstrap: tuple[float, float]
    criterion_c: float                # −(z(H) + z(F)) / 2; > 0 = bias toward answering "generated"
    criterion_ci_bootstrap: tuple[float, float]
    sdt_correction: str
    real_answer_rate: float           # share of "real" answers
    real_answer_p_value: float        # exact binomial test of "real" answers vs the share of real images


@dataclass
class PairwiseConditionResult(BaseConditionResult):
    """One condition of a pairwise study: accuracy = its win rate (the share of its comparisons in
    which its image was chosen as more real; 50% = as real as the conditions it met), with the base
    class's tests of that share against 50%; dprime is NaN. rank and strength come from the
    Bradley–Terry fit (RankingReport)."""
    rank: int
    strength: float                   # Bradley–Terry log-strength, mean 0 over conditions
    strength_ci: tuple[float, float]  # participant bootstrap 95%


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


FRAME_TABLES = ("conditions", "images", "mixed_model", "hype_time", "ranking")


def _no_removals() -> dict:
    return {"participants": 0, "trials": 0, "by_reason": {}, "incomplete_participants": 0, "incomplete_trials": 0}


def _no_quality() -> dict:
    return {"main_trials": 0, "reexposed_main_trials": 0, "too_fast_attempts": 0, "timing_flagged_trials": 0}


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
    conditions: list[ConditionResult] | list[SingleConditionResult] | list[PairwiseConditionResult]
    images: list[ImageStat]
    power: PowerPlan
    verdict: str
    notes: list[str] = field(default_factory=list)
    design: str = "paired"                    # "paired" (2AFC) or "single" (one image per trial)
    correction: str = "holm"                  # across conditions: "holm" or "bh"
    mixed_model: MixedModelReport | None = None
    hype_time: list[HypeTimeResult] = field(default_factory=list)   # staircase studies only
    ranking: RankingReport | None = None                           # pairwise studies only
    # What the pre-declared rule and the completeness rule removed: participants and their answers,
    # excluded participants per reason ("attention checks", "response time").
    removed: dict = field(default_factory=_no_removals)
    # Of the analysed participants' answers: main trials, those shown more than once (views > 1),
    # refused too-fast attempts, and answers whose browser timing the server contradicts.
    quality: dict = field(default_factory=_no_quality)

    def to_dict(self) -> dict:
        """Plain JSON-ready data (NaN and infinities become None)."""
        data = asdict(self)
        data["excluded"] = {str(k): v for k, v in self.excluded.items()}
        return _json_ready(data)

    def to_frame(self, table: str = "conditions"):
        """One of the report's tables as a pandas DataFrame, one row per item:

        - "conditions": per condition, every field of its ConditionResult / SingleConditionResult;
        - "images": per image, its views, fool (or real-judged) rate, Wilson interval and shrunk rate;
        - "mixed_model": per condition, the GLMM's typical accuracy (empty when it was not fitted);
        - "hype_time": per condition, the HYPE_time threshold (staircase studies; else empty);
        - "ranking": pairwise studies, per ordered pair of conditions (a, b): a's wins, the head-to-head
          test, the Bradley–Terry P(a beats b) with its bootstrap interval (else empty).

        An interval (low, high) becomes two columns, `<name>_low` and `<name>_high`; NaN stays NaN."""
        import pandas as pd

        if table not in FRAME_TABLES:
            raise ValueError(f"table must be one of {', '.join(FRAME_TABLES)}; got {table!r}")
        condition_type = {"single": SingleConditionResult, "pairwise": PairwiseConditionResult}.get(self.design,
                                                                                                ConditionResult)
        row_type, items = {
            "conditions": (condition_type, self.conditions),
            "images": (ImageStat, self.images),
            "mixed_model": (MixedModelCondition, self.mixed_model.conditions if self.mixed_model else []),
            "hype_time": (HypeTimeResult, self.hype_time),
            "ranking": (HeadToHead, self.ranking.pairs if self.ranking else [])}[table]
        intervals = {f.name for f in fields(row_type) if str(f.type).startswith("tuple")}
        columns = [c for f in fields(row_type)
                   for c in ((f"{f.name}_low", f"{f.name}_high") if f.name in intervals else (f.name,))]
        rows = []
        for item in items:
            row = asdict(item)
            for name in intervals:
                row[f"{name}_low"], row[f"{name}_high"] = row.pop(name)
            rows.append(row)
        return pd.DataFrame(rows, columns=columns)


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
