"""A human study's results as a section of an evalkit report (`evalkit report ... --study DIR`)."""
from __future__ import annotations

from pathlib import Path

from evalkit.reports.report import ReportSection


def study_section(study_dir: str | Path) -> ReportSection:
    from study_app import analyse_study, format_report

    report = analyse_study(study_dir)
    return ReportSection(title="Human study", text=format_report(report), data=report.to_dict(),
                         summary="Human study: see the section below.")
