"""`evalkit report`: one table comparing runs and checkpoints (e.g. ResNet-D vs ViT-D) on every metric,
with confidence intervals, the best ψ and the copy verdict — as Markdown, CSV, LaTeX and a
self-contained HTML page with the plots and grids embedded, plus a short written summary.

For a run dir every snapshot is scored (FID vs kimg) on the selection seeds and the best one is
analysed in full on fresh report seeds (no winner's curse); a checkpoint is analysed as it is.
Three image sets are kept apart: the training data (the copy check and C_T always look there), the
reference (what FID/KID/P/R compare against; default the training data, as StyleGAN2-ADA), and an
optional held-out set (held-out FID/KID and the gap; refused if it shares an image with the
training data). Two items are ranked only by a paired bootstrap of their FID difference over the
shared reference (`comparisons` in report.json).
"""
from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

from gan.api import checkpoint_config, checkpoint_kimg, network_summary

from harness_base.atomic import write_text_atomic

from harness_base import __version__
from ..errors import SourceError
from ..extract.featureset import feature_set
from ..metrics.fid import frechet_distance
from ..metrics.paired import paired_fid_difference
from ..sources import GenerationOptions, GeneratorSource, is_checkpoint, is_run_dir
from ..sources.generator import DEFAULT_NOISE_MODE, open_run, report_options, run_training_data
from .evaluate import compute_metrics
from .fid_run import fid_over_run
from .plots import fid_vs_kimg, metric_vs_psi, precision_recall
from .sweep import DEFAULT_PSIS, truncation_sweep
from .tables import write_table

COLUMNS = ["name", "disc", "d_params", "d_lr", "kimg", "fid", "fid_low", "fid_high", "fid_inf", "kid", "kid_std",
           "fid_heldout", "kid_heldout", "fid_gap", "precision", "recall", "density", "coverage", "best_psi",
           "best_fid", "copy_score", "authpct", "copy_verdict", "c_t", "c_t_z", "ppl"]
HEADERS = {"name": "model", "disc": "D", "d_params": "D params", "d_lr": "D lr", "kimg": "kimg", "fid": "FID",
           "fid_low": "FID CI low", "fid_high": "FID CI high", "fid_inf": "FID∞", "kid": "KID", "kid_std": "KID std",
           "fid_heldout": "FID held-out", "kid_heldout": "KID held-out", "fid_gap": "FID gap (held-out − train)",
           "precision": "precision", "recall": "recall", "density": "density", "coverage": "coverage",
           "best_psi": "best ψ", "best_fid": "FID at best ψ", "copy_score": "copy score", "authpct": "AuthPct",
           "copy_verdict": "copying", "c_t": "C_T", "c_t_z": "C_T z", "ppl": "PPL (W, end)"}


def headers(opts: "ReportOptions") -> dict:
    """Column headers that state the N of every column measured at another N than the FID column."""
    out = dict(HEADERS)
    if opts.sweep_num_gen != opts.num_gen:
        out["best_psi"] = f"best ψ (N = {opts.sweep_num_gen})"
        out["best_fid"] = f"FID at best ψ (N = {opts.sweep_num_gen})"
    if opts.copycheck_num_gen != opts.num_gen:
        out["copy_score"] = f"copy score (N = {opts.copycheck_num_gen})"
    if opts.ppl_num:
        out["ppl"] = f"PPL (W, end; N = {opts.ppl_num} paths)"
    return out


@dataclass
class ReportOptions:
    num_gen: int = 10_000          # samples for the full metrics and the per-snapshot FID
    sweep_num_gen: int = 5_000     # samples per ψ
    copycheck_num_gen: int = 1_000  # samples for the copy check
    psis: tuple = DEFAULT_PSIS
    bootstrap: int = 50            # resamples of every FID interval and paired comparison
    seed: int = 0                  # first selection seed; report seeds start at REPORT_SEED_OFFSET + seed
    heldout: str | None = None     # held-out real images: held-out FID/KID, the gap, C_T
    train_queries: int = 1000      # training images whose leave-one-out neighbours set the copy threshold
    reference: str | None = None   # what FID/KID/P/R compare against (default: each item's training data)
    noise_mode: str = DEFAULT_NOISE_MODE
    ppl_num: int = 10_000          # paths for the PPL column (0: no PPL); StyleGAN2-ADA's metric uses 50,000
    calibrate: bool = True         # with a held-out set: the calibration scale (`evalkit calibrate`) next to the rows
    calibrate_standins: tuple | None = None   # names from calibrate.STANDINS (default all)

    def selection_gen(self) -> GenerationOptions:
        return GenerationOptions(num_gen=self.num_gen, seed=self.seed, noise_mode=self.noise_mode)

    def report_gen(self) -> GenerationOptions:
        return report_options(self.selection_gen())


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
    raise SourceError(f"{ckpt} is not inside a run dir, so its training data is unknown; pass --train DIR.")


def _item_name(spec: Path, used: set) -> str:
    name = spec.resolve().name if spec.is_dir() else spec.stem
    base, i = name, 2
    while name in used:
        name, i = f"{base}-{i}", i + 1
    used.add(name)
    return name


def _range(seeds) -> str:
    return f"{seeds[0]}..{seeds[1]}"


def analyse_item(spec: str | Path, name: str, train, out: Path, opts: ReportOptions, *, device=None,
                 progress=True, log=print, **extraction) -> dict:
    """One run dir or checkpoint: choose the snapshot on the selection seeds (run dirs), then score it on the
    report seeds against `opts.reference` (default: its training data `train`), against the held-out set if
    given, sweep ψ, and check copying against the training data (never against the reference)."""
    spec = Path(spec)
    folder = out / name
    curve, selection = None, None
    if is_run_dir(spec):
        train_path = run_training_data(open_run(spec), train)
        run = fid_over_run(spec, folder / "fid", train_path, opts.selection_gen(), progress=progress, log=log,
                           device=device, **extraction)
        curve = [(r["kimg"], r["fid"]) for r in run["snapshots"]]
        ckpt = Path(run["best"]["path"])
        selection = {"seeds": run["selection_seeds"], "fid": run["best"]["selection_fid"],
                     "snapshot": run["best"]["snapshot"], "snapshots": len(run["snapshots"])}
    elif is_checkpoint(spec):
        ckpt, train_path = spec, _checkpoint_data(spec, train)
    else:
        raise SourceError(f"{spec} is neither a run dir nor a checkpoint (.safetensors).")
    report_gen = opts.report_gen()
    reference = Path(opts.reference) if opts.reference else train_path
    log(f"[{name}] full metrics for {ckpt.name} against {reference} on report seeds {_range(report_gen.seed_range())}")
    real = feature_set(reference, "reference", device=device, progress=progress, **extraction)
    fake = feature_set(GeneratorSource(ckpt, report_gen), "generated", device=device, progress=progress, **extraction)
    metrics = compute_metrics(real, fake, bootstrap=opts.bootstrap, seed=opts.seed, device=device)
    heldout = None
    if opts.heldout:
        held = feature_set(opts.heldout, "held-out", device=device, progress=progress, **extraction)
        held_metrics = compute_metrics(held, fake, ("fid", "kid"), seed=opts.seed, device=device)
        if reference.resolve() == Path(train_path).resolve():
            fid_train = metrics["fid"]
        else:
            train_fs = feature_set(train_path, "training data", device=device, progress=progress, **extraction)
            fid_train = frechet_distance(train_fs.mu, train_fs.sigma, fake.mu, fake.sigma)
        heldout = {"path": str(opts.heldout), "num_images": held.num, "fid": held_metrics["fid"],
                   "kid": held_metrics["kid"], "fid_train": fid_train, "fid_gap": held_metrics["fid"] - fid_train}
    log(f"[{name}] truncation sweep over psi = {', '.join(f'{p:g}' for p in opts.psis)}")
    sweep = truncation_sweep(ckpt, reference, opts.psis, report_gen.replace(num_gen=opts.sweep_num_gen),
                             folder / "sweep", real=real, device=device, progress=progress, log=log,
                             bootstrap=opts.bootstrap, **extraction)
    log(f"[{name}] copy check against the training data {train_path}")
    from .copycheck import copy_report

    copies = copy_report(ckpt, train_path, opts.heldout, report_gen.replace(num_gen=opts.copycheck_num_gen),
                         folder / "copycheck", device=device, train_queries=opts.train_queries, progress=progress,
                         log=log, **extraction)
    ppl = None
    if opts.ppl_num:
        from .ppl import ppl_column

        log(f"[{name}] perceptual path length over {opts.ppl_num} paths (LPIPS-VGG16)")
        ppl = ppl_column(ckpt, num_samples=opts.ppl_num, seed=report_gen.seed, device=device,
                         noise_mode=opts.noise_mode, progress=progress)
    disc = network_summary(ckpt)["D"]
    row = {
        "name": name, "disc": disc.get("kind") or checkpoint_config(ckpt).get("disc", "?"),
        "d_params": disc.get("params"), "d_lr": disc.get("lr"), "kimg": checkpoint_kimg(ckpt),
        "fid": metrics["fid"], "fid_low": metrics.get("fid_ci", [None, None])[0],
        "fid_high": metrics.get("fid_ci", [None, None])[1], "fid_inf": metrics.get("fid_inf"), "kid": metrics["kid"], "kid_std": metrics["kid_std"],
        "fid_heldout": heldout and heldout["fid"], "kid_heldout": heldout and heldout["kid"],
        "fid_gap": heldout and heldout["fid_gap"],
        "precision": metrics["precision"], "recall": metrics["recall"], "density": metrics["density"],
        "coverage": metrics["coverage"], "best_psi": sweep["best_psi"], "best_fid": sweep["best_fid"],
        "copy_score": copies["copy_score"], "authpct": copies["authpct"], "copy_verdict": copies["verdict"],
        "c_t": copies.get("c_t", {}).get("value"), "c_t_z": copies.get("c_t", {}).get("z"),
        "ppl": ppl and ppl["ppl"],
    }
    return {"row": row, "checkpoint": str(ckpt), "train": str(train_path), "reference": str(reference),
            "data": str(train_path), "curve": curve, "metrics": metrics, "sweep": sweep, "copycheck": copies,
            "heldout": heldout, "selection": selection, "ppl": ppl,
            "selection_seeds": selection["seeds"] if selection else None, "report_seeds": report_gen.seed_range(),
            "networks": network_summary(ckpt), "_real": real, "_fake": fake}


def calibration_sections(items: list[dict], opts: ReportOptions, out: Path, *, device=None, progress=True,
                         log=print, **extraction) -> list[ReportSection]:
    """`evalkit calibrate` on each training set of the report with the held-out set: where known-quality
    stand-ins land, and which stand-in each row's FID is closest to (a reading aid, not a test)."""
    from .calibrate import calibration_scale, format_table

    sections = []
    for train in sorted({it["train"] for it in items}):
        log(f"calibration scale: stand-ins from {opts.heldout} against {train}")
        folder = out / "calibrate" if len({it["train"] for it in items}) == 1 else out / "calibrate" / Path(train).name
        scale = calibration_scale(train, opts.heldout, folder, standins=opts.calibrate_standins, device=device,
                                  seed=opts.seed,
                                  train_queries=opts.train_queries, progress=progress, log=log, **extraction)
        floor = next(r for r in scale["rows"] if r["standin"] == "heldout")
        scored = [r for r in scale["rows"] if r.get("fid") is not None]
        like = []
        for it in items:
            if it["train"] != train or it["reference"] != train:
                continue   # the scale is measured against the training set; rows against another reference differ
            r = it["row"]
            near = min(scored, key=lambda c: abs(c["fid"] - r["fid"]))
            like.append(f"{r['name']}'s FID {r['fid']:.2f} is closest to `{near['standin']}` ({near['fid']:.2f})")
        text = (f"Calibration scale on this data (held-out images degraded in known ways, each scored against the "
                f"training set at N = {floor['num']} like a generator; single estimates, no intervals): the "
                f"held-out floor is FID {floor['fid']:.2f}" + (f"; {'; '.join(like)}" if like else "")
                + f" (those rows use N = {opts.num_gen}, and FID's bias depends on N, so the match is rough).")
        sections.append(ReportSection(title=f"Calibration scale against {train}", text=format_table(scale),
                                      data={"rows": scale["rows"], "plot": scale.get("files", {}).get("plot"),
                                            "files": scale.get("files")}, summary=text))
    return sections


def compare_items(items: list[dict], opts: ReportOptions) -> list[dict]:
    """Every pair of items: ΔFID = FID(a) − FID(b) with a paired bootstrap interval over their shared reference."""
    from itertools import combinations

    out = []
    for x, y in combinations(items, 2):
        a, b = x["row"]["name"], y["row"]["name"]
        if x["reference"] != y["reference"] or x["_real"].extractor != y["_real"].extractor:
            out.append({"a": a, "b": b, "delta_fid": x["row"]["fid"] - y["row"]["fid"], "ci_low": None,
                        "ci_high": None, "p_a_better": None,
                        "verdict": f"{a} and {b} are scored against different reference sets ({x['reference']}, "
                                   f"{y['reference']}); pass --reference to compare them"})
            continue
        if opts.bootstrap < 2:
            out.append({"a": a, "b": b, "delta_fid": x["row"]["fid"] - y["row"]["fid"], "ci_low": None,
                        "ci_high": None, "p_a_better": None,
                        "verdict": f"no paired interval for {a} vs {b} (--bootstrap {opts.bootstrap}); no ranking"})
            continue
        d = paired_fid_difference(x["_real"].require_features("paired ΔFID"), x["_fake"].features,
                                  y["_fake"].features, num_bootstrap=opts.bootstrap, seed=opts.seed, a=a, b=b)
        out.append({**d.to_dict(), "verdict": d.verdict()})
    return out


def conventions(items: list[dict], opts: ReportOptions) -> dict:
    m = items[0]["metrics"]
    sel = next((it["selection_seeds"] for it in items if it["selection_seeds"]), None)
    return {"selection_seeds": sel, "report_seeds": items[0]["report_seeds"], "noise_mode": opts.noise_mode,
            "num_gen": opts.num_gen, "num_real": m["num_real"], "sweep_num_gen": opts.sweep_num_gen,
            "copycheck_num_gen": opts.copycheck_num_gen, "extractor": m["feature_extractor"]["name"],
            "extractor_id": m["feature_extractor"]["id"], "k_pr": m.get("k_pr"), "k_dc": m.get("k_dc"),
            "kid_subsets": m.get("kid_subsets"), "kid_subset_size": m.get("kid_subset_size"),
            "bootstrap": opts.bootstrap, "references": sorted({it["reference"] for it in items}),
            "heldout": opts.heldout}


def conventions_text(conv: dict) -> str:
    sel = (f"snapshots chosen by FID on selection seeds {_range(conv['selection_seeds'])}, then every number "
           "measured on " if conv["selection_seeds"] else "every number measured on ")
    return (f"Conventions: {sel}fresh report seeds {_range(conv['report_seeds'])} (noise mode "
            f"{conv['noise_mode']}); N = {conv['num_gen']} generated per model and {conv['num_real']} reference "
            f"images ({', '.join(conv['references'])}), {conv['sweep_num_gen']} per ψ in the sweep, "
            f"{conv['copycheck_num_gen']} in the copy check; {conv['extractor']} features ({conv['extractor_id']}); "
            f"precision/recall k = {conv['k_pr']}, density/coverage k = {conv['k_dc']}; KID from "
            f"{conv['kid_subsets']} subsets of {conv['kid_subset_size']}; {conv['bootstrap']} bootstrap resamples "
            "per interval. FID is biased upward by O(1/N) at every N, by an amount that depends on the generator "
            "(Chong & Forsyth 2020), so equal N alone does not settle a ranking: the paired comparisons do.")


def summarise(items: list[dict], opts: ReportOptions, comparisons: list[dict] | None = None) -> str:
    """A few sentences a researcher can paste, claiming only what the intervals support."""
    rows = sorted((it["row"] for it in items), key=lambda r: r["fid"])
    by_name = {it["row"]["name"]: it for it in items}
    lines = []
    for r in rows:
        it = by_name[r["name"]]
        sel = it["selection"]
        chosen = (f"snapshot {sel['snapshot']} of {sel['snapshots']}, chosen on selection seeds "
                  f"{_range(sel['seeds'])} (selection FID {sel['fid']:.2f}); " if sel else "")
        conf = it["metrics"].get("fid_ci_confidence", 0.95)
        ci = (f" ({conf:.0%} basic bootstrap interval for the population FID {r['fid_low']:.2f}–{r['fid_high']:.2f})"
              if r["fid_low"] is not None else "")
        inf = f", FID∞ {r['fid_inf']:.2f}" if r.get("fid_inf") is not None else ""
        held = (f", held-out FID {r['fid_heldout']:.2f} (gap {r['fid_gap']:+.2f})" if r["fid_heldout"] is not None
                else "")
        lines.append(f"**{r['name']}** ({r['disc']} discriminator, {r['kimg']:g} kimg; {chosen}on report seeds "
                     f"{_range(it['report_seeds'])}): FID {r['fid']:.2f}{ci}{inf}{held}, KID {r['kid']:.4f} ± "
                     f"{r['kid_std']:.4f}, precision {r['precision']:.3f}, recall {r['recall']:.3f}, density "
                     f"{r['density']:.3f}, coverage {r['coverage']:.3f}.")
    for c in comparisons or []:
        text = c["verdict"]
        lines.append(text[0].upper() + text[1:] + ".")
    for r in rows:
        sw = by_name[r["name"]]["sweep"]
        lines.append(f"{r['name']}: truncation: {sw['best_text']}; copy check (training data): {r['copy_verdict']} "
                     f"(copy score {r['copy_score']:.3f}, AuthPct {r['authpct']:.1f}%"
                     + (f", C_T {r['c_t']:.2f}, z = {r['c_t_z']:.2f}: {by_name[r['name']]['copycheck']['c_t']['verdict']}"
                        if r["c_t"] is not None else "") + ").")
    lines.append(conventions_text(conventions(items, opts)))
    return "\n\n".join(lines)


def _data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _html_page(title: str, summary: str, rows: list[dict], columns: list[str], column_headers: dict,
               figures: list[tuple[str, str]], items: list[dict], sections: list[ReportSection],
               comparisons: list[dict]) -> str:
    """The self-contained page, rendered from templates/report.html.j2 with autoescaping on."""
    import re

    import jinja2
    from markupsafe import Markup, escape

    from .tables import fmt

    env = jinja2.Environment(loader=jinja2.PackageLoader("evalkit.reports", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    bold = re.compile(r"[*][*](.+?)[*][*]")
    paragraphs = [Markup(bold.sub(r"<b>\1</b>", str(escape(p)))) for p in summary.split("\n\n")]
    details = []
    for it in items:
        sweep_rows = it["sweep"]["rows"]
        cols = [c for c in ("psi", "fid", "fid_low", "fid_high", "delta_vs_1", "delta_low", "delta_high", "kid",
                            "precision", "recall", "density", "coverage", "num_gen") if any(c in r for r in sweep_rows)]
        details.append({"name": it["row"]["name"], "checkpoint": it["checkpoint"], "train": it["train"],
                        "reference": it["reference"], "networks": it["networks"], "sweep_columns": cols,
                        "sweep_rows": sweep_rows, "best_text": it["sweep"]["best_text"],
                        "threshold_rule": it["copycheck"]["threshold_rule"]})
    return env.get_template("report.html.j2").render(
        title=title, paragraphs=paragraphs, rows=rows, columns=columns, headers=column_headers, fmt=fmt,
        figures=[(c, _data_uri(p)) for c, p in figures], details=details, sections=sections,
        comparisons=comparisons, version=__version__, date=time.strftime("%Y-%m-%d %H:%M"))


def build_report(specs: list[str | Path], out_dir: str | Path, data=None, opts: ReportOptions | None = None, *,
                 device=None, progress: bool = True, log=print, title: str | None = None,
                 sections=(), train=None, **extraction) -> dict:
    """The report over `specs` (run dirs and checkpoints). `train` (alias `data`) overrides every item's
    training data; `sections` are ReportSections, or callables `rows -> ReportSection` called once the
    rows exist (a human study's section shows each row's FID)."""
    opts = opts or ReportOptions()
    train = train or data
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if opts.heldout:
        from ..sources.overlap import assert_disjoint

        trains = {str(train)} if train else set()
        if not train:
            for spec in specs:
                spec = Path(spec)
                trains.add(str(run_training_data(open_run(spec)) if is_run_dir(spec) else _checkpoint_data(spec, None)))
        for t in sorted(trains):
            assert_disjoint(t, opts.heldout)
    used: set = set()
    items = [analyse_item(spec, _item_name(Path(spec), used), train, out, opts, device=device, progress=progress,
                          log=log, **extraction) for spec in specs]
    rows = [it["row"] for it in items]
    sections = [s(rows) if callable(s) else s for s in sections]
    if opts.heldout and opts.calibrate:
        sections = [*calibration_sections(items, opts, out, device=device, progress=progress, log=log,
                                          **extraction), *sections]
    comparisons = compare_items(items, opts)
    conv = conventions(items, opts)
    title = title or "Checkpoint comparison"
    column_headers = headers(opts)
    columns = COLUMNS
    tables = write_table(rows, columns, out / "report", title=f"{title}. {conventions_text(conv)}",
                         headers=column_headers)
    figures = []
    curves = {it["row"]["name"]: it["curve"] for it in items if it["curve"]}
    if curves:
        figures.append((f"FID against training progress on selection seeds {_range(conv['selection_seeds'])} "
                        "(best snapshot starred; its reported FID uses the report seeds)",
                        fid_vs_kimg(curves, out / "fid_vs_kimg.png")))
    figures.append((f"FID against truncation ψ (N = {opts.sweep_num_gen} per ψ, report seeds)", metric_vs_psi(
        {it["row"]["name"]: [(r["psi"], r["fid"]) for r in it["sweep"]["rows"]] for it in items}, out / "fid_vs_psi.png")))
    figures.append(("Precision against recall across ψ", precision_recall(
        {it["row"]["name"]: [(r["psi"], r["precision"], r["recall"]) for r in it["sweep"]["rows"]] for it in items},
        out / "precision_recall.png")))
    for section in sections:
        if section.data.get("plot"):
            figures.append((section.title, section.data["plot"]))
    for it in items:
        figures.append((f"{it['row']['name']}: samples per ψ (same seeds)", it["sweep"]["files"]["strip"]))
        figures.append((f"{it['row']['name']}: nearest training images — {it['copycheck']['verdict']}", it["copycheck"]["grid"]))
    summary = summarise(items, opts, comparisons)
    for section in sections:
        if section.summary:
            summary += "\n\n" + section.summary
    write_text_atomic(out / "summary.md", f"# {title}\n\n{summary}\n")
    page = out / "report.html"
    write_text_atomic(page, _html_page(title, summary, rows, columns, column_headers, figures, items, sections,
                                       comparisons))
    result = {"title": title, "rows": rows, "summary": summary, "comparisons": comparisons, **conv,
              "conventions": conv, "files": {**tables, "html": str(page), "summary": str(out / "summary.md")},
              "figures": {c: str(p) for c, p in figures},
              "items": [{k: it[k] for k in ("checkpoint", "train", "reference", "data", "curve", "selection_seeds",
                                            "report_seeds", "selection", "heldout", "networks", "ppl")} for it in items],
              "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opts).items()},
              "sections": {s.title: s.data for s in sections}}
    write_text_atomic(out / "report.json", json.dumps(result, indent=2, default=str))
    return result
