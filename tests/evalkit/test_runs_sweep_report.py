"""`evalkit fid RUN_DIR`, `evalkit metrics`, `evalkit sweep`, `evalkit copycheck` and `evalkit report` on real
(tiny) training runs and real images: the files and columns they promise, incremental re-runs, and
the errors for broken run dirs."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import evalkit.extract.features as features_mod
from evalkit import cli
from evalkit.errors import SourceError
from evalkit.reports.evaluate import evaluate
from evalkit.sources import GenerationOptions
from evalkit.reports.report import COLUMNS, ReportOptions, build_report
from evalkit.reports.fid_run import fid_over_run
from evalkit.reports.sweep import truncation_sweep

CPU = {"device": torch.device("cpu"), "progress": False}
QUIET = {"log": lambda *a: None}


def test_fid_over_run_writes_curve_and_only_computes_new_snapshots(tmp_path, tiny_runs, avatars32):
    from gan.api import list_snapshots, read_run_config
    from gan.config import RunConfig
    from gan.train import train

    run = tmp_path / "run"
    shutil.copytree(tiny_runs["resnet"], run)
    out = tmp_path / "fid"
    gen = GenerationOptions(num_gen=24)
    first = fid_over_run(run, out, gen=gen, **CPU, **QUIET)
    kimgs = [r["kimg"] for r in first["snapshots"]]
    assert kimgs == sorted(kimgs) and len(kimgs) == 2
    assert first["computed"] == 2 and first["reused"] == 0
    # chosen on the selection seeds, reported on a disjoint fresh range (no winner's curse)
    assert first["best"]["selection_fid"] == min(r["fid"] for r in first["snapshots"])
    sel, rep = first["selection_seeds"], first["report_seeds"]
    assert sel == [0, 23] and rep == [1_000_000, 1_000_023] and (sel[1] < rep[0] or rep[1] < sel[0])
    assert first["best"]["fid"] != first["best"]["selection_fid"]
    assert first["noise_mode"] == "random" and first["extractor"] == "inception"
    with open(out / "fid.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["snapshot"] for r in rows] == [s.path.name for s in list_snapshots(run)]
    assert sum(int(r["best"]) for r in rows) == 1
    assert (out / "fid_vs_kimg.png").stat().st_size > 1000

    again = fid_over_run(run, out, gen=gen, **CPU, **QUIET)
    assert again["computed"] == 0 and again["reused"] == 2
    assert [r["fid"] for r in again["snapshots"]] == [r["fid"] for r in first["snapshots"]]

    cfg = RunConfig.from_dict(read_run_config(run))
    cfg.train.total_kimg = 0.024  # one more snapshot
    train(cfg, run, resume=True, progress=False, device="cpu", threads=1)
    third = fid_over_run(run, out, gen=gen, **CPU, **QUIET)
    assert third["computed"] == 1 and third["reused"] == 2 and len(third["snapshots"]) == 3


def test_run_dir_errors_name_the_fix(tmp_path, tiny_runs):
    moved = tmp_path / "moved"
    shutil.copytree(tiny_runs["vit"], moved)
    config = json.loads((moved / "config.json").read_text())
    config["data"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(SourceError, match="no longer exists.*--data"):
        fid_over_run(moved, tmp_path / "out", gen=GenerationOptions(num_gen=8), **CPU, **QUIET)
    empty = tmp_path / "empty-run"
    shutil.copytree(tiny_runs["vit"], empty)
    for ckpt in (empty / "checkpoints").iterdir():
        ckpt.unlink()
    with pytest.raises(SourceError, match="no complete snapshot"):
        fid_over_run(empty, tmp_path / "out2", gen=GenerationOptions(num_gen=8), **CPU, **QUIET)
    assert cli.main(["fid", str(tmp_path / "gone")]) == 1  # a runtime error, with a message


def test_metrics_are_computed_from_one_feature_pass_per_source(tiny_runs, avatars32, monkeypatch):
    calls = []
    real_extract = features_mod._extract_any

    def counting(source, *args, **kwargs):
        calls.append(str(source.path))
        return real_extract(source, *args, **kwargs)
    monkeypatch.setattr(features_mod, "_extract_any", counting)
    result = evaluate(avatars32, tiny_runs["resnet"], GenerationOptions(num_gen=30, seed=100), bootstrap=5,
                      kid_subsets=10, **CPU)
    assert len(calls) <= 2 and len(set(calls)) == len(calls)  # at most once per source (real may be cached)
    for key in ("fid", "fid_ci", "kid", "kid_std", "precision", "recall", "density", "coverage"):
        assert key in result, key
    assert result["fid_ci"][0] <= result["fid"] * 1.5 and result["fid_ci"][0] <= result["fid_ci"][1]
    assert 0 <= result["precision"] <= 1 and 0 <= result["coverage"] <= 1
    assert result["num_real"] == 48 and result["num_fake"] == 30
    assert result["sources"][1]["kind"] == "checkpoint" and result["sources"][1]["num_gen"] == 30


def test_sweep_files_columns_and_collapse_at_psi_zero(tmp_path, tiny_runs, avatars32):
    out = tmp_path / "sweep"
    result = truncation_sweep(tiny_runs["vit"], avatars32, (1.0, 0.5, 0.0), GenerationOptions(num_gen=16),
                              out, strip_seeds=3, bootstrap=5, **CPU, **QUIET)
    for name in ("sweep.csv", "sweep.md", "sweep.tex", "sweep.json", "fid_vs_psi.png", "precision_recall.png",
                 "truncation_strip.png"):
        assert (out / name).is_file(), name
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["psi", "fid", "fid_low", "fid_high", "delta_vs_1", "delta_low", "delta_high", "kid",
                             "kid_std", "precision", "recall", "density", "coverage", "num_gen"]
    assert [float(r["psi"]) for r in rows] == [1.0, 0.5, 0.0]
    assert rows[0]["delta_vs_1"] == "" and all(r["fid_low"] and r["delta_low"] for r in rows[1:])
    # psi = 0 maps every seed to w_avg: one image repeated, so its k-NN balls have radius 0 and
    # no real image can fall inside one
    assert float(rows[2]["recall"]) == 0.0
    # a best psi only where its paired interval against psi = 1 lies below 0
    best = next((r for r in result["rows"] if r["psi"] == result["best_psi"]), None)
    if result["selected_psi"] is None:
        assert result["best_text"].startswith("no ψ is better than 1 at this N (N = 16 generated")
        assert best is None and result["confirmation"] is None
    else:  # chosen on the sweep's seeds, re-measured on fresh ones
        fresh = result["confirmation"]
        assert fresh["seeds"] == [1_000_000, 1_000_015] and fresh["psi"] == result["selected_psi"]
        assert (best is not None) == (fresh["delta_high"] < 0)
        if best is not None:
            assert best["delta_high"] < 0 and result["best_fid"] == fresh["fid"]
    from PIL import Image

    with Image.open(out / "truncation_strip.png") as strip:
        size = strip.size
    tile, pad, header = 96, 4, 16  # 32 px samples scaled 3x; 3 psi columns of 3 seeds
    assert size == (3 * (tile + pad) + pad, header + 3 * (tile + pad) + pad)


def test_sweep_remeasures_the_chosen_psi_on_fresh_seeds(tmp_path, tiny_runs, avatars32, monkeypatch):
    """The ψ chosen on the sweep's samples is reported from fresh seeds: its FID there equals a direct
    FID of those samples, and it is named best only if the fresh paired interval lies below 0."""
    import evalkit.reports.sweep as sweep_mod
    from evalkit.extract.featureset import feature_set
    from evalkit.metrics.fid import frechet_distance
    from evalkit.sources import GeneratorSource

    # whatever the tiny generator's FIDs, force the choice of ψ = 0.5 to exercise the re-measurement
    monkeypatch.setattr(sweep_mod, "choose_psi", lambda rows: next(r for r in rows if r["psi"] == 0.5))
    gen = GenerationOptions(num_gen=12, seed=3)
    result = truncation_sweep(tiny_runs["vit"], avatars32, (1.0, 0.5), gen, tmp_path / "sweep", strip_seeds=2,
                              bootstrap=5, metrics=("fid",), **CPU, **QUIET)
    fresh = result["confirmation"]
    assert result["selected_psi"] == 0.5 and fresh["seeds"] == [1_000_003, 1_000_014]
    assert fresh["seeds"][0] > result["seeds"][1]   # disjoint from the seeds the choice was made on
    real = feature_set(avatars32, "real", **CPU)
    again = feature_set(GeneratorSource(Path(result["checkpoint"]), gen.replace(seed=1_000_003, psi=0.5)), "fresh", **CPU)
    assert fresh["fid"] == pytest.approx(frechet_distance(real.mu, real.sigma, again.mu, again.sigma), rel=1e-6)
    assert fresh["fid"] != next(r["fid"] for r in result["rows"] if r["psi"] == 0.5)
    if fresh["delta_high"] < 0:
        assert result["best_psi"] == 0.5 and result["best_fid"] == fresh["fid"]
        assert result["best_text"].startswith("best ψ = 0.5, chosen on the sweep's seeds and confirmed on fresh")
    else:
        assert result["best_psi"] is None and result["best_fid"] is None
        assert "no difference from ψ = 1 is detectable at N = 12: no ψ is named better than 1" in result["best_text"]
    saved = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert saved["confirmation"]["seeds"] == fresh["seeds"]


def test_copycheck_command_finds_planted_copies(tmp_path, avatars32, capsys):
    generated = tmp_path / "generated"
    generated.mkdir()
    train_files = sorted(avatars32.glob("*.png"))
    for i, src in enumerate(train_files[:5]):  # five exact copies of training images
        shutil.copy(src, generated / f"copy{i}.png")
    from gan.avatars import write_avatars

    write_avatars(generated / "fresh", 15, seed=99, res=32)
    out = tmp_path / "copycheck"
    assert cli.main(["copycheck", str(generated), "--train", str(avatars32), "--out", str(out), "--device", "cpu",
                     "--quiet", "--train-queries", "48"]) == 0
    printed = capsys.readouterr().out
    assert "5 of 20 samples look copied — see grid" in printed
    summary = json.loads((out / "copycheck.json").read_text())
    assert summary["n_flagged"] == 5 and "threshold_rule" in summary
    assert summary["authpct"] <= 75.0 and "AuthPct" in printed     # an exact copy is never authentic
    with open(out / "copycheck.csv") as f:
        flagged = {r["sample"]: r["nn1"] for r in csv.DictReader(f) if r["flagged"] == "1"}
    assert flagged == {f"copy{i}.png": train_files[i].name for i in range(5)}
    assert (out / "neighbours.png").stat().st_size > 1000


def test_report_files_and_columns(tmp_path, tiny_runs, avatars32):
    out = tmp_path / "report"
    opts = ReportOptions(num_gen=24, sweep_num_gen=16, copycheck_num_gen=16, psis=(1.0, 0.5), bootstrap=5, ppl_num=8)
    from evalkit.reports.report import ReportSection

    def late_section(rows):   # called once the rows exist, as harness passes a study's section
        return ReportSection("Extra <b>", "x < y & z", {"names": [r["name"] for r in rows]}, summary="Extra paragraph.")
    build_report([tiny_runs["resnet"], tiny_runs["vit"]], out, opts=opts, sections=[late_section], **CPU, **QUIET)
    for name in ("report.md", "report.csv", "report.tex", "report.html", "summary.md", "report.json",
                 "fid_vs_kimg.png", "fid_vs_psi.png", "precision_recall.png"):
        assert (out / name).is_file(), name
    with open(out / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    assert [r["name"] for r in rows] == ["resnet", "vit"] and [r["disc"] for r in rows] == ["resnet", "vit"]
    for r in rows:
        assert float(r["fid_low"]) <= float(r["fid_high"])
        assert r["copy_verdict"] in ("no sign of copying",) or "look copied" in r["copy_verdict"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 + 2 * 2  # 3 plots + strip and grid per model
    assert "<table>" in page and "src='http" not in page and 'src="http' not in page  # self-contained
    assert "x &lt; y &amp; z" in page and "Extra &lt;b&gt;" in page   # the template escapes every value
    assert r"\begin{tabular}" in (out / "report.tex").read_text()
    summary = (out / "summary.md").read_text()
    report = json.loads((out / "report.json").read_text())
    assert report["sections"] == {"Extra <b>": {"names": ["resnet", "vit"]}} and "Extra paragraph." in summary
    [c] = report["comparisons"]
    assert (c["a"], c["b"]) == ("resnet", "vit") and c["ci_low"] <= c["delta_fid"] <= c["ci_high"]
    assert 0 <= c["p_a_better"] <= 1
    if c["ci_low"] <= 0 <= c["ci_high"]:
        assert "No difference detectable at N = 24" in summary
        assert "resnet is better than vit" not in summary and "vit is better than resnet" not in summary
    else:
        assert "resnet is better than vit" in summary or "vit is better than resnet" in summary
    assert report["selection_seeds"] == [0, 23] and report["report_seeds"] == [1_000_000, 1_000_023]
    assert report["noise_mode"] == "random" and report["extractor"] and report["num_real"] == 48
    assert "selection seeds 0..23" in summary and "report seeds 1000000..1000023" in summary
    assert [i["networks"]["D"]["kind"] for i in report["items"]] == ["resnet", "vit"]
    assert all(float(r["d_params"]) > 0 for r in rows)
    assert all(float(r["ppl"]) > 0 for r in rows) and "PPL (W, end; N = 8 paths)" in (out / "report.md").read_text()
    assert all(i["ppl"]["ppl_num"] == 8 for i in report["items"])
