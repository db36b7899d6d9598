"""Tables as CSV (full precision), Markdown and LaTeX (rounded for reading)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from harness_base.atomic import write_text_atomic

FORMATS = {
    "fid": "{:.2f}", "fid_low": "{:.2f}", "fid_high": "{:.2f}", "fid_inf": "{:.2f}", "kid": "{:.5f}", "kid_std": "{:.5f}",
    "precision": "{:.3f}", "recall": "{:.3f}", "density": "{:.3f}", "coverage": "{:.3f}", "psi": "{:g}",
    "kimg": "{:g}", "copy_score": "{:.3f}", "c_t": "{:.2f}", "c_t_z": "{:.2f}", "best_fid": "{:.2f}", "best_psi": "{:g}",
    "lpips_threshold": "{:.4f}", "authpct": "{:.1f}",
}


def fmt(column: str, value) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return FORMATS.get(column, "{:.4g}").format(value)
    return str(value)


def to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buf.getvalue()


def to_markdown(rows: list[dict], columns: list[str], headers: dict | None = None) -> str:
    headers = headers or {}
    head = [headers.get(c, c) for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c, row.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}"),
                 ("ψ", r"$\psi$"), ("±", r"$\pm$"), ("≤", r"$\le$"), ("—", "---"), ("–", "--")):
        text = text.replace(a, b)
    return text


def to_latex(rows: list[dict], columns: list[str], headers: dict | None = None, caption: str | None = None) -> str:
    """A booktabs table; numbers right-aligned, text left-aligned."""
    headers = headers or {}
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in columns]
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_latex_escape(headers.get(c, c)) for c in columns) + r" \\", r"\midrule"]
    for row in rows:
        lines.append(" & ".join(_latex_escape(fmt(c, row.get(c))) for c in columns) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{_latex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict], columns: list[str], stem: str | Path, title: str | None = None,
                headers: dict | None = None) -> dict:
    """Write STEM.csv, STEM.md and STEM.tex; return their paths."""
    stem = Path(stem)
    md = (f"# {title}\n\n" if title else "") + to_markdown(rows, columns, headers)
    paths = {"csv": stem.with_suffix(".csv"), "md": stem.with_suffix(".md"), "tex": stem.with_suffix(".tex")}
    write_text_atomic(paths["csv"], to_csv(rows, columns))
    write_text_atomic(paths["md"], md)
    write_text_atomic(paths["tex"], to_latex(rows, columns, headers, title))
    return {k: str(v) for k, v in paths.items()}
