"""`analyse`: the whole pre-declared analysis of a study's trial rows, in one of two designs.

Paired (2AFC): accuracy = share of pairs in which the participant picked the real image. Single
image (HYPE∞ style): accuracy = share of images classified correctly, real as real and generated
as generated (1 − accuracy is the HYPE∞ error rate); errors on real images and on generated
images (the fool rate) are reported separately, with hit and false-alarm rates, d′ and the
criterion c. In both designs 50% is chance. Pairwise (two generated images of two conditions,
which looks more real?): the conditions are ranked by a Bradley–Terry model (stats.pairwise), each
condition's win rate is tested against 50%, and a GLMM adds participant and image effects.
Trials are clustered within participants, so every trial-level result (exact binomial test,
Wilson / Clopper–Pearson intervals, exact TOST) comes with a participant-level counterpart
(bootstrap over participants, t-tests on per-participant accuracy), and claims need both.
"Indistinguishable" is claimed only when an equivalence test (TOST) against the pre-declared
margin succeeds, never from a non-significant difference test.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as sps

from . import glmm
from .clustering import design_effect, icc_binary, t_test_participants, tost_participants
from .hype_time import hype_time
from .images import image_stats
from .multiple import CORRECTION_NAMES, adjust, check_correction
from .pairwise import PairwiseMixedModel, condition_stats, rank_conditions
from .power import pairwise_power_plan, power_plan
from .proportions import binomial_test, clopper_pearson_interval, tost_binomial, wilson_interval
from .resampling import bootstrap_ratio, bootstrap_sums, percentile_interval
from .results import (ConditionResult, MixedModelCondition, MixedModelReport, PairwiseConditionResult,
                      SingleConditionResult, StudyReport)
from .rows import exclusion_rule_text, exclusions, row_design, timing_check
from .sdt import SDT_CORRECTION, dprime_2afc, loglinear_rate, position_sdt, sdt_yes_no
from .text import DESIGN_WORDS, condition_verdict, pairwise_condition_verdict

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


def pairwise_mixed_model(main: Sequence[dict], conditions: Sequence[str]) -> PairwiseMixedModel:
    """The Bradley–Terry GLMM of the analysed pairwise main trials (participant side bias and image
    strength as random effects), or a note saying why it was not fitted."""
    people = len({r["participant"] for r in main})
    empty = PairwiseMixedModel(conditions=list(conditions), strength=[], strength_se=[], beats={}, side_bias=math.nan,
                               random_sd={}, group_sizes={}, trials=len(main), converged=False)
    if people < MIN_MIXED_MODEL_PARTICIPANTS:
        empty.note = (f"not fitted: {people} analysed participants; the mixed model needs at least "
                      f"{MIN_MIXED_MODEL_PARTICIPANTS} to estimate the spread between them.")
        return empty
    present = [c for c in conditions if any(c in (r["left_condition"], r["right_condition"]) for r in main)]
    if len(present) < 2:
        empty.note = "not fitted: fewer than two conditions have comparisons."
        return empty
    main = [r for r in main if r["left_condition"] in present and r["right_condition"] in present]
    try:
        fit = glmm.fit_bradley_terry_mixed(
            [r["chosen_side"] == "left" for r in main], [r["left_condition"] for r in main],
            [r["right_condition"] for r in main], [r["participant"] for r in main],
            [r["real_image"] for r in main], [r["fake_image"] for r in main], present)
    except (glmm.MixedModelError, np.linalg.LinAlgError, ValueError) as exc:
        empty.note = f"not fitted: {exc}"
        return empty
    table = {}
    for i, a in enumerate(present):
        table[a] = {}
        for j, b in enumerate(present):
            if i != j:
                p, (low, high) = fit.beats(i, j)
                table[a][b] = (p, low, high)
    return PairwiseMixedModel(
        conditions=present, strength=[float(v) for v in fit.strength],
        strength_se=[float(math.sqrt(max(0.0, fit.strength_cov[i, i]))) for i in range(len(present))],
        beats=table, side_bias=float(1 / (1 + math.exp(-fit.side))),
        random_sd=dict(zip(fit.group_names, map(float, fit.sd))), group_sizes=dict(zip(fit.group_names, fit.group_sizes)),
        trials=fit.trials, converged=fit.converged,
        note="" if fit.converged else "the optimiser of the variance components did not report convergence.")


def _pairwise_results(kept: Sequence[dict], conditions: Sequence[str], *, alpha: float, margin: float,
                      correction: str, resamples: int, seed: int, mixed_model: bool):
    """Per-condition results and the ranking of a pairwise study."""
    main = [r for r in kept if r["trial_kind"] == "main" and r.get("left_condition") in set(conditions)
            and r.get("right_condition") in set(conditions)]
    ranking = rank_conditions(main, conditions, alpha=alpha, resamples=resamples, seed=seed,
                              mixed_model=pairwise_mixed_model(main, conditions) if mixed_model else None)
    ranked = {c: (i + 1, s, ci) for i, (c, s, ci) in enumerate(zip(ranking.conditions, ranking.strength,
                                                                   ranking.strength_ci))}
    results = []
    for label in conditions:
        wins, n, per = condition_stats(main, label)
        k = np.array([c[0] for c in per.values()], dtype=int)
        m = np.array([c[1] for c in per.values()], dtype=int)
        rate = k / np.maximum(m, 1)
        icc = icc_binary(k, m)
        results.append(dict(
            condition=label, participants=int(k.size), trials=n, correct=wins, accuracy=wins / n if n else math.nan,
            p_value=binomial_test(wins, n), ci_exact=clopper_pearson_interval(wins, n), ci_wilson=wilson_interval(wins, n),
            ci_bootstrap=bootstrap_ratio(k, m, resamples=resamples, seed=seed),
            participant_mean_accuracy=float(rate.mean()) if k.size else math.nan,
            participant_p_value=t_test_participants(rate), dprime=math.nan,
            tost_p_trials=tost_binomial(wins, n, margin), tost_p_participants=tost_participants(rate, margin),
            icc=icc, design_effect=design_effect(float(m.mean()) if m.size else 1.0, 0.0 if math.isnan(icc) else icc),
            rank=ranked[label][0], strength=ranked[label][1], strength_ci=ranked[label][2]))
    p_adj = adjust([r["p_value"] for r in results], correction)
    pp_adj = adjust([r["participant_p_value"] for r in results], correction)
    tost_adj = adjust([max(r["tost_p_trials"], r["tost_p_participants"]) for r in results], correction)
    out = []
    for r, ph, pph, th in zip(results, p_adj, pp_adj, tost_adj):
        res = PairwiseConditionResult(**r, p_value_adjusted=ph, participant_p_value_adjusted=pph, tost_p_adjusted=th,
                                      different=bool(ph < alpha and pph < alpha), equivalent=bool(th < alpha),
                                      verdict="")
        res.verdict = pairwise_condition_verdict(res, len(conditions)) if res.trials else "NO DATA for this condition yet."
        out.append(res)
    return sorted(out, key=lambda c: c.rank), ranking


def _removed(rows: Sequence[dict], excluded: dict[int, str], incomplete: set[int]) -> dict:
    reasons: dict[str, int] = {}
    for reason in excluded.values():
        key = "attention checks" if reason.startswith("attention") else "response time"
        reasons[key] = reasons.get(key, 0) + 1
    return {"participants": len(excluded), "trials": sum(r["participant"] in excluded for r in rows),
            "by_reason": reasons, "incomplete_participants": len(incomplete),
            "incomplete_trials": sum(r["participant"] in incomplete for r in rows)}


def _quality(kept: Sequence[dict]) -> dict:
    main = [r for r in kept if r["trial_kind"] == "main"]
    return {"main_trials": len(main), "reexposed_main_trials": sum((r.get("views") or 1) > 1 for r in main),
            "too_fast_attempts": int(sum(r.get("too_fast_attempts") or 0 for r in kept)),
            "timing_flagged_trials": sum(bool(timing_check(r.get("rt_ms"), r.get("client_rt_ms"),
                                                           r.get("exposure_ms"))[1]) for r in kept)}


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
    if design not in DESIGN_WORDS:
        raise ValueError(f"design must be 'paired' or 'single', got {design!r}")
    check_correction(correction)
    rows = list(rows)
    early_notes = []
    def ours(r):   # a pairwise study's attention checks are paired-design rows
        return row_design(r) == design or (design == "pairwise" and r["trial_kind"] == "attention"
                                           and row_design(r) == "paired")
    other = [r for r in rows if not ours(r)]
    if other:  # the config's design was changed after these answers were given
        rows = [r for r in rows if ours(r)]
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
    removed, quality = _removed(rows, excluded, incomplete_set), _quality(kept)
    if design == "pairwise":
        return _analyse_pairwise(rows, kept, conditions, excluded=excluded, incomplete=incomplete,
                                 include_incomplete=include_incomplete, attention=attention, alpha=alpha,
                                 margin=margin, correction=correction, resamples=bootstrap_resamples, seed=seed,
                                 mixed_model=mixed_model, notes=early_notes, removed=removed, quality=quality,
                                 exclusion_rule=exclusion_rule_text(min_attention_correct, exclude_median_rt_below_ms),
                                 trials_per_participant=trials_per_participant, assumed_icc=assumed_icc,
                                 target_power=target_power, min_views_per_image=min_views_per_image)

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
            common, ci_bootstrap=bootstrap_ratio(k, n, resamples=bootstrap_resamples, seed=seed),
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
        res.verdict = (condition_verdict(res, margin, alpha, plan, design) if res.trials
                       else "NO DATA for this condition yet.")
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
        exclusion_rule=exclusion_rule_text(min_attention_correct, exclude_median_rt_below_ms),
        participants_total=len(all_participants),
        participants_analysed=len({r["participant"] for r in kept}),
        excluded=excluded, incomplete=incomplete if not include_incomplete else [],
        attention_accuracy=sum(attention) / len(attention) if attention else math.nan,
        conditions=condition_results, images=image_stats(kept, min_views=min_views_per_image),
        power=plan, verdict=verdict, notes=notes, design=design, correction=correction,
        mixed_model=mixed_model_results(kept, conditions, design, alpha=alpha, margin=margin,
                                        correction=correction) if mixed_model else None,
        hype_time=[] if staircase_floor_ms is None else hype_time(
            kept, conditions, include_incomplete=True, floor_ms=staircase_floor_ms,
            resamples=bootstrap_resamples, seed=seed),
        removed=removed, quality=quality)


def _analyse_pairwise(rows, kept, conditions, *, excluded, incomplete, include_incomplete, attention, alpha, margin,
                      correction, resamples, seed, mixed_model, notes, removed, quality, exclusion_rule,
                      trials_per_participant, assumed_icc, target_power, min_views_per_image) -> StudyReport:
    results, ranking = _pairwise_results(kept, conditions, alpha=alpha, margin=margin, correction=correction,
                                         resamples=resamples, seed=seed, mixed_model=mixed_model)
    different = [h.verdict for h in ranking.pairs if h.different and h.p_beats > 0.5]
    if not ranking.trials:
        verdict = "No analysable answers yet."
    elif different:
        verdict = " ".join(different)
    else:
        verdict = (f"No condition looks detectably more real than another at N = {ranking.trials} comparisons by "
                   f"{ranking.participants} participants.")
    n_pairs = len(conditions) * (len(conditions) - 1) // 2
    notes = list(notes) + [f"Holm correction across the {n_pairs} pair{'s' * (n_pairs != 1)} of conditions "
                           f"(α = {alpha})."]
    plan = power_plan(trials_per_participant, assumed_icc, margin=margin, alpha=alpha, target_power=target_power)
    ranking.power = pairwise_power_plan(len(conditions), trials_per_participant, 0.5 + margin, assumed_icc,
                                        alpha=alpha, target_power=target_power) if len(conditions) > 1 else None
    return StudyReport(
        alpha=alpha, margin=margin, exclusion_rule=exclusion_rule,
        participants_total=len({r["participant"] for r in rows}),
        participants_analysed=len({r["participant"] for r in kept}),
        excluded=excluded, incomplete=incomplete if not include_incomplete else [],
        attention_accuracy=sum(attention) / len(attention) if attention else math.nan,
        conditions=results, images=[], power=plan, verdict=verdict, notes=notes, design="pairwise",
        correction="holm", mixed_model=None, ranking=ranking, removed=removed, quality=quality)

