"""A human study's results as a section of an evalkit report (`evalkit report ... --study DIR`), with
each condition's human result next to the FID of the report row of the same name.

A pairwise study (design.kind = "pairwise") gives the Bradley–Terry ranking: which generator's
images people chose as more real, with the probability that each beats each other. The other designs
give each condition's accuracy (paired: picking the real image; single: classifying correctly),
where lower means harder to tell from real. Conditions are matched to report rows by name (a
condition label "resnet" to the row named "resnet"); a condition with no such row shows no FID.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from evalkit.reports.report import ReportSection


def _fid(row: dict | None) -> str:
    value = None if row is None else row.get("fid")
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _interval(ci) -> str:
    return "n/a" if any(v is None or math.isnan(v) for v in ci) else f"{ci[0]:+.2f} to {ci[1]:+.2f}"


def _pairwise_table(report, by_name: dict[str, dict]) -> tuple[list[dict], list[str]]:
    ranking = report.ranking
    win = {c.condition: c for c in report.conditions}
    table, lines = [], [f"{'rank':>4}  {'condition':<16} {'BT strength (95% CI)':>26} {'win rate':>9} {'FID':>9}"]
    for rank, (name, strength, ci) in enumerate(zip(ranking.conditions, ranking.strength, ranking.strength_ci), 1):
        row = by_name.get(name)
        table.append({"rank": rank, "condition": name, "strength": strength, "strength_ci": list(ci),
                      "win_rate": win[name].accuracy, "fid": None if row is None else row.get("fid"),
                      "report_row": None if row is None else row.get("name")})
        lines.append(f"{rank:>4}  {name:<16} {strength:>+8.2f} ({_interval(ci):>15}) "
                     f"{win[name].accuracy:>8.0%} {_fid(row):>9}")
    lines.append("P(row chosen over column) with participant-bootstrap 95% intervals:")
    for h in ranking.pairs:
        if ranking.conditions.index(h.a) < ranking.conditions.index(h.b):
            lines.append(f"    P({h.a} over {h.b}) = {h.p_beats:.2f} ({h.p_beats_ci[0]:.2f}–{h.p_beats_ci[1]:.2f}); "
                         f"{h.verdict}")
    return table, lines


def _accuracy_table(report, by_name: dict[str, dict]) -> tuple[list[dict], list[str]]:
    what = "accuracy (50% = chance; lower = harder to tell from real)"
    table, lines = [], [f"{'condition':<16} {'people':>6} {'trials':>6} {what:>10} {'FID':>9}"]
    for c in report.conditions:
        row = by_name.get(c.condition)
        table.append({"condition": c.condition, "participants": c.participants, "trials": c.trials,
                      "accuracy": c.accuracy, "accuracy_ci": list(c.ci_exact), "fid": None if row is None else
                      row.get("fid"), "report_row": None if row is None else row.get("name")})
        accuracy = "–" if not c.trials else f"{c.accuracy:.1%} ({c.ci_exact[0]:.0%}–{c.ci_exact[1]:.0%})"
        lines.append(f"{c.condition:<16} {c.participants:>6} {c.trials:>6} {accuracy:>10} {_fid(row):>9}")
    return table, lines


def _summary(report, table: list[dict]) -> str:
    with_fid = [t for t in table if t["fid"] is not None]
    if report.design == "pairwise":
        ranking = report.ranking
        detected = [h.verdict for h in ranking.pairs if h.different and h.p_beats > 0.5]
        people = (" ".join(detected) if detected else
                  f"no condition looked detectably more real than another at N = {ranking.trials} comparisons")
        text = f"Human study (pairwise, {ranking.participants} participants): {people}"
        if len(with_fid) >= 2:  # FIDs are ordered only by the report's paired comparisons, not by sorting
            text += " Whether their FIDs differ is in the report's paired comparisons."
        return text
    return (f"Human study ({report.design}, {report.participants_analysed} participants analysed): {report.verdict} "
            "Each condition's accuracy is next to its FID in the section below.")


def study_section(study_dir: str | Path, rows: Sequence[dict] | None = None) -> ReportSection:
    """The report section of the study in `study_dir`. `rows` are the report's rows (dicts with at
    least "name" and "fid"): each condition is put next to the FID of the row with its name."""
    from study_app import Study, format_report

    study = Study(study_dir)
    report = study.analyse()
    by_name = {str(r["name"]): r for r in rows or ()}
    table, lines = (_pairwise_table if report.design == "pairwise" else _accuracy_table)(report, by_name)
    missing = [t["condition"] for t in table if t["report_row"] is None]
    if rows is not None and missing:
        lines.append(f"No report row is named {', '.join(missing)}: name the runs (or checkpoints) after the study's "
                     "condition labels to see their FID here.")
    title = "Human study: ranking next to FID" if report.design == "pairwise" else "Human study next to FID"
    text = "\n".join(lines) + "\n\n" + format_report(report)
    return ReportSection(title=title, text=text, data={"design": report.design, "table": table,
                                                       "report": report.to_dict()},
                         summary=_summary(report, table))
