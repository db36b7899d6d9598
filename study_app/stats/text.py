"""The plain-text report (terminal, admin page) and each condition's verdict in words."""
from __future__ import annotations

import math

from .hype_time import format_hype_time
from .pairwise import RankingReport
from .power import PowerPlan
from .results import MixedModelReport, StudyReport
from .sdt import SDT_CORRECTION

DESIGN_WORDS = {
    "paired": {"unit": "pairs", "better": "people picked the real image more often than chance"},
    "single": {"unit": "images", "better": "people classified the images (real as real, generated as generated) "
                                           "correctly more often than chance"},
    "pairwise": {"unit": "pairs", "better": "its images were chosen as more real than those of the other conditions"},
}


def pairwise_condition_verdict(res, n_conditions: int) -> str:
    """A pairwise condition's line: its rank, win rate and strength (the head-to-head verdicts are
    in the ranking)."""
    return (f"rank {res.rank} of {n_conditions}: chosen as more real in {res.accuracy:.1%} of its {res.trials} "
            f"comparisons (95% CI {res.ci_exact[0]:.1%}–{res.ci_exact[1]:.1%}, participant bootstrap "
            f"{res.ci_bootstrap[0]:.1%}–{res.ci_bootstrap[1]:.1%}); Bradley–Terry strength {res.strength:+.2f} "
            f"(bootstrap 95% CI {_num_ci(res.strength_ci)}).")


def condition_verdict(res, margin: float, alpha: float, plan: PowerPlan, design: str = "paired") -> str:
    """One condition's verdict: a difference needs both the trial-level and the participant-level test,
    "indistinguishable" both TOSTs; otherwise INCONCLUSIVE, with the participants the power plan asks for."""
    words = DESIGN_WORDS[design]
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
    lines = [*_header_lines(report), *description,
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


def _header_lines(report: StudyReport) -> list[str]:
    """Who was analysed, what the rules removed, and how far the timing can be trusted."""
    removed, quality = report.removed, report.quality
    reasons = ", ".join(f"{n} by {reason}" for reason, n in sorted(removed["by_reason"].items()))
    lines = [
        f"Participants: {report.participants_total} with answers, {report.participants_analysed} analysed, "
        f"{len(report.excluded)} excluded, {len(report.incomplete)} incomplete (not analysed).",
        f"Exclusion rule (pre-declared): {report.exclusion_rule}.",
        f"Removed: {removed['participants']} participants with {removed['trials']} answers by the exclusion rule"
        + (f" ({reasons})" if reasons else "") + f"; {removed['incomplete_participants']} unfinished participants "
        f"with {removed['incomplete_trials']} answers.",
        f"Attention checks of analysed participants: {_pct(report.attention_accuracy).strip()} correct.",
    ]
    if quality["main_trials"]:
        lines.append(
            f"Of {quality['main_trials']} analysed main trials, {quality['reexposed_main_trials']} were shown more than "
            f"once before the answer (reload, second tab or a refused answer: flagged `reexposed` in the export, "
            f"kept here); {quality['too_fast_attempts']} too-fast answers were refused; the browser's timing was "
            f"contradicted by the server's in {quality['timing_flagged_trials']} answers (the server's time was used).")
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


def _ranking_lines(ranking: RankingReport) -> list[str]:
    """The pairwise ranking: strengths, P(row beats column), head-to-head verdicts, the mixed model."""
    if not ranking.trials:
        return ["Ranking (Bradley–Terry): no comparisons yet."]
    names = ranking.conditions
    width = max([len(n) for n in names] + [9])
    lines = [f"Ranking (Bradley–Terry): {ranking.description}",
             f"{'rank':>4} {'condition':<{width}} {'strength':>8} {'95% CI':>15}  "
             + " ".join(f"{('P>' + n)[:12]:>12}" for n in names)]
    for rank, (name, strength, ci) in enumerate(zip(names, ranking.strength, ranking.strength_ci), start=1):
        cells = " ".join(f"{'':>12}" if other == name else f"{ranking.pair(name, other).p_beats:>12.2f}"
                         for other in names)
        lines.append(f"{rank:>4} {name:<{width}} {strength:>+8.2f} {_num_ci(ci):>15}  {cells}")
    lines.append("    P>X: probability that the row's image is chosen over condition X's; bootstrap intervals and the "
                 "share of resamples ranking the row above X follow.")
    for h in ranking.pairs:
        if names.index(h.a) < names.index(h.b):
            lines.append(f"    {h.a} over {h.b}: P = {h.p_beats:.2f} (bootstrap 95% CI {_num_ci(h.p_beats_ci)}), "
                         f"ranked above in {h.bootstrap_share:.0%} of resamples; head to head {h.a_wins}/{h.comparisons}, "
                         f"exact p = {h.p_value:.3g}, Holm p_adj = {h.p_value_adjusted:.3g}.")
    lines += ["", *[f"[{h.a} vs {h.b}] {h.verdict}" for h in ranking.pairs if names.index(h.a) < names.index(h.b)]]
    lines.append(f"Side bias: the left image was chosen in {_pct(ranking.left_choice_rate).strip()} of comparisons "
                 f"(p = {ranking.position_p_value:.3g} against 50%).")
    mm = ranking.mixed_model
    if mm is not None:
        lines += ["", "Mixed model (Bradley–Terry GLMM, Laplace): logit P(left chosen) = side + s[left] − s[right] "
                      "+ (1 | participant side bias) + image strengths (signed)"]
        if not mm.strength:
            lines.append(f"    {mm.note}")
        else:
            sds = ", ".join(f"{k} {v:.2f} ({mm.group_sizes[k]} levels)" for k, v in mm.random_sd.items())
            lines.append(f"    {mm.trials} comparisons; random-effect SDs on the logit scale: {sds}; side bias "
                         f"P(left) = {mm.side_bias:.2f} between equal strengths.")
            for c, s_, se in zip(mm.conditions, mm.strength, mm.strength_se):
                lines.append(f"    {c:<{width}} strength {s_:+.2f} (SE {se:.2f}); " + "; ".join(
                    f"P(beats {b}) {p:.2f} ({lo:.2f}–{hi:.2f})" for b, (p, lo, hi) in mm.beats[c].items()))
            if mm.note:
                lines.append(f"    Note: {mm.note}")
    p = ranking.power
    if p is not None:
        need = (f"{p.comparisons_needed} independent comparisons of that pair ≈ {p.participants_needed} participants "
                f"x {p.comparisons_per_pair}" if p.comparisons_needed else "not reachable")
        lines += ["", f"Power plan (pairwise): to detect P(beats) = {p.p_beats:.0%} for one pair at α = "
                      f"{p.alpha:g}/{p.pairs} pairs with power {p.target_power:.0%} (ICC {p.icc:.3f}, design effect "
                      f"{p.design_effect:.2f}): {need}."]
    return lines


def _pairwise_lines(report: StudyReport) -> list[str]:
    """Header, per-condition table and ranking of a pairwise study."""
    lines = [*_header_lines(report),
             "Design: pairwise (two generated images of two conditions; which looks more real?). Win rate = share "
             "of a condition's comparisons in which its image was chosen; 50% = as real-looking as the conditions "
             f"it met. α = {report.alpha}.", "",
             f"{'condition':<16} {'people':>6} {'comps':>6} {'wins':>6} {'exact 95% CI':>15} {'bootstrap CI':>15} "
             f"{'p':>7} {'p_adj':>7}"]
    for c in report.conditions:
        if not c.trials:
            lines.append(f"{c.condition:<16} {0:>6} {0:>6}   (no comparisons yet)")
            continue
        lines.append(f"{c.condition:<16} {c.participants:>6} {c.trials:>6} {_pct(c.accuracy)} "
                     f"{_pct(c.ci_exact[0])}–{_pct(c.ci_exact[1]).strip():>6} "
                     f"{_pct(c.ci_bootstrap[0])}–{_pct(c.ci_bootstrap[1]).strip():>6} "
                     f"{c.p_value:>7.3g} {c.p_value_adjusted:>7.3g}")
    lines.append("")
    lines += [f"[{c.condition}] {c.verdict}" for c in report.conditions]
    if report.ranking is not None:
        lines += [""] + _ranking_lines(report.ranking)
    return lines + [""] + report.notes + ["", f"VERDICT: {report.verdict}"]


def format_report(report: StudyReport, *, max_images: int = 10) -> str:
    """Plain-text report for the terminal and the admin page."""
    if report.design == "pairwise":
        return "\n".join(_pairwise_lines(report))
    unit = DESIGN_WORDS[report.design]["unit"]
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
    hype = format_hype_time(report.hype_time)
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
