"""`evalkit report`: one table comparing runs and checkpoints (e.g. ResNet-D vs ViT-D) on every metric,
with confidence intervals, the best ψ and the copy verdict — as Markdown, CSV, LaTeX and a
self-contained HTML page with the plots and grids embedded, plus a short written summary.

For a run dir every snapshot is scored (FID vs kimg) and the best one is analysed in full; a
checkpoint is analysed as it is.
"""
from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

from gan.api import checkpoint_config, checkpoint_kimg

from harness_base.atomic import write_text_atomic

from harness_base import __version__
from ..errors import SourceError
from ..extract.featureset import feature_set
from ..sources import GenerationOptions, GeneratorSource, is_checkpoint, is_run_dir
from ..sources.generator import open_run, run_training_data
from .evaluate import compute_metrics
from .fid_run import fid_over_run
from .plots import fid_vs_kimg, metric_vs_psi, precision_recall
from .sweep import DEFAULT_PSIS, truncation_sweep
from .tables import write_table

COLUMNS = ["name", "disc", "kimg", "fid", "fid_low", "fid_high", "kid", "kid_std", "precision", "recall",
           "density", "coverage", "best_psi", "best_fid", "copy_score", "authpct", "copy_verdict", "c_t"]
HEADERS = {"name": "model", "disc": "D", "kimg": "kimg", "fid": "FID", "fid_low": "FID CI low",
           "fid_high": "FID CI high", "kid": "KID", "kid_std": "KID std", "precision": "precision",
           "recall": "recall", "density": "density", "coverage": "coverage", "best_psi": "best ψ",
           "best_fid": "FID at best ψ", "copy_score": "copy score", "authpct": "AuthPct",
           "copy_verdict": "copying", "c_t": "C_T"}


@dataclass
class ReportOptions:
    num_gen: int = 10_000          # samples for the full metrics and the per-snapshot FID
    sweep_num_gen: int = 5_000     # samples per ψ
    copycheck_num_gen: int = 1_000  # samples for the copy check
    psis: tuple = DEFAULT_PSIS
    bootstrap: int = 50
    seed: int = 0
    heldout: str | None = None
    train_queries: int = 1000      # training images whose leave-one-out neighbours set the copy threshold


@dataclass
class ReportSection:
    """A section added to the report by a caller above evalkit (e.g. a human study's results)."""
    title: str
    text: str                      # plain text, shown preformatted in the HTML page
    data: dict                     # JSON-ready, stored in report.json under `sections`
    summary: str | None = None     # a paragraph appended to the written summary


def _checkpoint_data(ckpt: Path, data) -> Path:
    if data:
        return Path(data)
    run_dir = ckpt.parent.parent
    if is_run_dir(run_dir):
        return run_training_data(open_run(run_dir))
    raise SourceError(f"{ckpt} is not inside a run dir, so its training data is unknown; pass --data DIR.")


def _item_name(spec: Path, used: set) -> str:
    name = spec.resolve().name if spec.is_dir() else spec.stem
    base, i = name, 2
    while name in used:
        name, i = f"{base}-{i}", i + 1
    used.add(name)
    return name


def analyse_item(spec: str | Path, name: str, data, out: Path, opts: ReportOptions, *, device=None,
                 progress=True, log=print, **extraction) -> dict:
    spec = Path(spec)
    folder = out / name
    curve = None
    if is_run_dir(spec):
        data_path = run_training_data(open_run(spec), data)
        gen = GenerationOptions(num_gen=opts.num_gen, seed=opts.seed)
        run = fid_over_run(spec, folder / "fid", data_path, gen, progress=progress, log=log, device=device,
                           **extraction)
        curve = [(r["kimg"], r["fid"]) for r in run["snapshots"]]
        ckpt = Path(run["best"]["path"])
    elif is_checkpoint(spec):
        ckpt, data_path = spec, _checkpoint_data(spec, data)
    else:
        raise SourceError(f"{spec} is neither a run dir nor a checkpoint (.safetensors).")
    log(f"[{name}] full metrics for {ckpt.name} against {data_path}")
    real = feature_set(data_path, "real", device=device, progress=progress, **extraction)
    fake = feature_set(GeneratorSource(ckpt, GenerationOptions(num_gen=opts.num_gen, seed=opts.seed)), "generated",
                       device=device, progress=progress, **extraction)
    metrics = compute_metrics(real, fake, bootstrap=opts.bootstrap, seed=opts.seed, device=device)
    log(f"[{name}] truncation sweep over psi = {', '.join(f'{p:g}' for p in opts.psis)}")
    sweep = truncation_sweep(ckpt, data_path, opts.psis, GenerationOptions(num_gen=opts.sweep_num_gen, seed=opts.seed),
                             folder / "sweep", real=real, device=device, progress=progress, log=log, **extraction)
    log(f"[{name}] copy check")
    from .copycheck import copy_report

    copies = copy_report(ckpt, data_path, opts.heldout,
                         GenerationOptions(num_gen=opts.copycheck_num_gen, seed=opts.seed), folder / "copycheck",
                         device=device, train_queries=opts.train_queries, progress=progress, log=log,
                     **extraction)
    generator_config = checkpoint_config(ckpt)
    row = {
        "name": name, "disc": generator_config.get("disc", "?"), "kimg": checkpoint_kimg(ckpt),
        "fid": metrics["fid"], "fid_low": metrics.get("fid_ci", [None, None])[0],
        "fid_high": metrics.get("fid_ci", [None, None])[1], "kid": metrics["kid"], "kid_std": metrics["kid_std"],
        "precision": metrics["precision"], "recall": metrics["recall"], "density": metrics["density"],
        "coverage": metrics["coverage"], "best_psi": sweep["best_psi"], "best_fid": sweep["best_fid"],
        "copy_score": copies["copy_score"], "authpct": copies["authpct"], "copy_verdict": copies["verdict"],
        "c_t": copies.get("c_t", {}).get("value"),
    }
    return {"row": row, "checkpoint": str(ckpt), "data": str(data_path), "curve": curve, "metrics": metrics,
            "sweep": sweep, "copycheck": copies}


def summarise(items: list[dict], opts: ReportOptions) -> str:
    """A few sentences a researcher can paste: which checkpoint is best and why, in numbers."""
    rows = sorted((it["row"] for it in items), key=lambda r: r["fid"])
    best = rows[0]
    lines = [f"Best checkpoint by FID: **{best['name']}** ({best['disc']} discriminator, {best['kimg']:g} kimg): "
             f"FID {best['fid']:.2f}" + (f" (95% bootstrap CI {best['fid_low']:.2f}–{best['fid_high']:.2f}, "
                                          f"{opts.bootstrap} resamples)" if best["fid_low"] is not None else "")
             + f", KID {best['kid']:.4f} ± {best['kid_std']:.4f}, precision {best['precision']:.3f}, "
             f"recall {best['recall']:.3f}, density {best['density']:.3f}, coverage {best['coverage']:.3f}."]
    for other in rows[1:]:
        overlap = (best["fid_high"] is not None and other["fid_low"] is not None
                   and other["fid_low"] <= best["fid_high"])
        verdict = ("the confidence intervals overlap, so the ranking is not settled at this sample size"
                   if overlap else "the confidence intervals do not overlap")
        lines.append(f"It beats **{other['name']}** ({other['disc']}, FID {other['fid']:.2f}) by "
                     f"{other['fid'] - best['fid']:.2f} FID; {verdict}. Recall {best['recall']:.3f} vs "
                     f"{other['recall']:.3f}, coverage {best['coverage']:.3f} vs {other['coverage']:.3f}.")
    sweeps = {it["row"]["name"]: it["sweep"]["rows"] for it in items}
    for r in rows:
        at_one = next((s["fid"] for s in sweeps[r["name"]] if s["psi"] == 1.0), None)
        compare = f" vs {at_one:.2f} at ψ = 1" if at_one is not None and r["best_psi"] != 1.0 else ""
        lines.append(f"{r['name']}: best truncation ψ = {r['best_psi']:g} (sweep FID {r['best_fid']:.2f}{compare}, "
                     f"{opts.sweep_num_gen} samples per ψ); copy check: {r['copy_verdict']} (copy score "
                     f"{r['copy_score']:.3f}, AuthPct {r['authpct']:.1f}%"
                     + (f", C_T {r['c_t']:.2f}" if r["c_t"] is not None else "") + ").")
    n_real = items[0]["metrics"]["num_real"]
    lines.append(f"All metrics use Inception-v3 pool3 features, clean-fid's resize, {opts.num_gen} generated samples "
                 f"and {n_real} real images; FID from fewer than 2048 images per set is biased upward, so compare "
                 "only at equal counts.")
    return "\n\n".join(lines)


def _data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _html_table(rows: list[dict], columns: list[str]) -> str:
    from .tables import fmt

    head = "".join(f"<th>{html.escape(HEADERS.get(c, c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c, r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_page(title: str, summary: str, rows: list[dict], figures: list[tuple[str, str]], items: list[dict],
               sections: list[ReportSection]) -> str:
    import re

    bold = re.compile(r"[*][*](.+?)[*][*]")
    paragraphs = summary.split("\n\n")
    summary_html = "".join("<p>" + bold.sub(r"<b>\1</b>", html.escape(p)) + "</p>" for p in paragraphs)
    figs = "".join(f"<figure><img src='{_data_uri(p)}' alt='{html.escape(c)}'><figcaption>{html.escape(c)}"
                   "</figcaption></figure>" for c, p in figures)
    details = ""
    for it in items:
        name = it["row"]["name"]
        sweep_rows = it["sweep"]["rows"]
        cols = [c for c in ("psi", "fid", "kid", "precision", "recall", "density", "coverage") if c in sweep_rows[0]]
        details += (f"<h3>{html.escape(name)}</h3><p>checkpoint <code>{html.escape(it['checkpoint'])}</code>, "
                    f"data <code>{html.escape(it['data'])}</code></p>" + _html_table(sweep_rows, cols)
                    + f"<p>{html.escape(it['copycheck']['threshold_rule'])}</p>")
    sections_html = "".join(f"<h2>{html.escape(s.title)}</h2><pre>{html.escape(s.text)}</pre>" for s in sections)
    css = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;"
           "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
           "figure{display:inline-block;margin:1em;vertical-align:top}img{max-width:560px;border:1px solid #ddd}"
           "figcaption{font-size:13px;color:#555}code{font-size:12px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1><h2>Summary</h2>{summary_html}"
            f"<h2>Comparison</h2>{_html_table(rows, COLUMNS)}<h2>Figures</h2>{figs}<h2>Per model</h2>{details}"
            f"{sections_html}<p style='color:#777;font-size:12px'>evalkit {__version__}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}</p></body></html>")


def build_report(specs: list[str | Path], out_dir: str | Path, data=None, opts: ReportOptions | None = None, *,
                 device=None, progress: bool = True, log=print, title: str | None = None,
                 sections: list[ReportSection] = (), **extraction) -> dict:
    opts = opts or ReportOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    used: set = set()
    items = [analyse_item(spec, _item_name(Path(spec), used), data, out, opts, device=device, progress=progress,
                          log=log, **extraction) for spec in specs]
    rows = [it["row"] for it in items]
    title = title or "Checkpoint comparison"
    tables = write_table(rows, COLUMNS, out / "report", title=title, headers=HEADERS)
    figures = []
    curves = {it["row"]["name"]: it["curve"] for it in items if it["curve"]}
    if curves:
        figures.append(("FID against training progress (best snapshot starred)",
                        fid_vs_kimg(curves, out / "fid_vs_kimg.png")))
    figures.append(("FID against truncation ψ", metric_vs_psi(
        {it["row"]["name"]: [(r["psi"], r["fid"]) for r in it["sweep"]["rows"]] for it in items}, out / "fid_vs_psi.png")))
    figures.append(("Precision against recall across ψ", precision_recall(
        {it["row"]["name"]: [(r["psi"], r["precision"], r["recall"]) for r in it["sweep"]["rows"]] for it in items},
        out / "precision_recall.png")))
    for it in items:
        figures.append((f"{it['row']['name']}: samples per ψ (same seeds)", it["sweep"]["files"]["strip"]))
        figures.append((f"{it['row']['name']}: nearest training images — {it['copycheck']['verdict']}", it["copycheck"]["grid"]))
    summary = summarise(items, opts)
    for section in sections:
        if section.summary:
            summary += "\n\n" + section.summary
    write_text_atomic(out / "summary.md", f"# {title}\n\n{summary}\n")
    page = out / "report.html"
    write_text_atomic(page, _html_page(title, summary, rows, figures, items, list(sections)))
    result = {"title": title, "rows": rows, "summary": summary, "files": {**tables, "html": str(page),
              "summary": str(out / "summary.md")}, "figures": {c: str(p) for c, p in figures},
              "items": [{k: it[k] for k in ("checkpoint", "data", "curve")} for it in items],
              "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opts).items()},
              "sections": {s.title: s.data for s in sections}}
    write_text_atomic(out / "report.json", json.dumps(result, indent=2, default=str))
    return result
