"""Statistics for real-vs-fake studies: pure functions on numbers and trial rows.

    proportions  one proportion against chance: Clopper–Pearson and Wilson intervals, exact
                 binomial test, exact TOST
    clustering   participant level: t-test and TOST on per-participant accuracy, ICC, design effect
    resampling   the participant bootstrap (HYPE) and percentile intervals
    sdt          d′ and criterion c: 2AFC (√2·z(PC), side bias) and yes/no (z(H) − z(F))
    multiple     Holm and Benjamini–Hochberg across conditions
    power        power and sample size of the exact tests, with clustering
    glmm         logistic mixed model with crossed participant and image intercepts (Laplace)
    hype_time    HYPE_time thresholds of staircase studies
    pairwise     the pairwise design: Bradley–Terry strengths, participant-bootstrap ranking
    rows         trial rows: their design, the pre-declared exclusions, the trusted response time
    images       per-image fool rates, Wilson intervals, shrunken rates
    results      the result dataclasses (StudyReport: .to_dict(), .to_frame())
    analysis     `analyse`: the whole pre-declared analysis of a study
    text         `format_report`: the plain-text report and the verdicts

Imports run one way, down this list: the modules above `rows` use only `proportions` and
`clustering` (power) or `resampling` (hype_time); results, images and text build on those;
analysis on all of them. Nothing imports analysis or text back (tests/study_app/test_imports.py).
"""
from .analysis import analyse, mixed_model_results
from .clustering import design_effect, icc_binary, t_test_participants, tost_participants
from .hype_time import HypeTimeResult, format_hype_time
from .images import image_stats
from .multiple import CORRECTION_NAMES, CORRECTIONS, adjust, benjamini_hochberg, holm
from .pairwise import HeadToHead, PairwiseMixedModel, RankingReport, bradley_terry, rank_conditions
from .power import (PairwisePowerPlan, PowerPlan, pairwise_power_plan, participants_needed, power_binomial,
                    power_clustered, power_plan, power_tost, trials_needed, trials_needed_tost)
from .proportions import binomial_test, clopper_pearson_interval, tost_binomial, wilson_interval
from .resampling import bootstrap_ratio, bootstrap_sums, percentile_interval
from .results import (BaseConditionResult, ConditionResult, ImageStat, MixedModelCondition, MixedModelReport,
                      PairwiseConditionResult, SingleConditionResult, StudyReport)
from .rows import CLIENT_RT_SLACK_MS, exclusion_rule_text, exclusions, is_single_row, rt_used, timing_check
from .sdt import SDT_CORRECTION, dprime_2afc, loglinear_rate, position_sdt, sdt_yes_no
from .text import format_report

__all__ = [
    "CLIENT_RT_SLACK_MS", "HeadToHead", "PairwiseConditionResult", "PairwiseMixedModel", "PairwisePowerPlan",
    "RankingReport", "bradley_terry", "exclusion_rule_text", "pairwise_power_plan", "rank_conditions", "rt_used",
    "timing_check",
    "BaseConditionResult", "CORRECTIONS", "CORRECTION_NAMES", "ConditionResult", "HypeTimeResult", "ImageStat",
    "MixedModelCondition", "MixedModelReport", "PowerPlan", "SDT_CORRECTION", "SingleConditionResult",
    "StudyReport", "adjust", "analyse", "benjamini_hochberg", "binomial_test", "bootstrap_ratio", "bootstrap_sums",
    "clopper_pearson_interval", "design_effect", "dprime_2afc", "exclusions", "format_hype_time", "format_report",
    "holm", "icc_binary", "image_stats", "is_single_row", "loglinear_rate", "mixed_model_results",
    "participants_needed", "percentile_interval", "position_sdt", "power_binomial", "power_clustered",
    "power_plan", "power_tost", "sdt_yes_no", "t_test_participants", "tost_binomial", "tost_participants",
    "trials_needed", "trials_needed_tost", "wilson_interval",
]
