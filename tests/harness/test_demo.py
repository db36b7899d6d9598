"""The README's main job (`evalkit demo`, i.e. `harness demo`) at its smallest setting: every promised file, the report's
columns, the study dir hosted for real and answered in headless Chromium, and a re-run that reuses
everything instead of starting over."""
import csv
import json
import time

from evalkit.reports.report import COLUMNS
from harness.cli import evalkit_main, main


def test_demo_smoke_writes_everything_it_promises(tmp_path, capsys, serve_study, browser, browser_consent):
    out = tmp_path / "demo"
    assert evalkit_main(["demo", "--out", str(out), "--preset", "smoke", "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "study-app serve" in printed and "report seeds 1000000..1000031" in printed
    assert "best ψ = -" not in printed    # the default grid stays in [0, 1]

    assert len(list((out / "data" / "train").glob("*.png"))) == 64
    assert len(list((out / "data" / "heldout").glob("*.png"))) == 32
    for disc in ("resnet", "vit"):
        run = out / "runs" / disc
        assert json.loads((run / "config.json").read_text())["disc"] == disc
        assert len(list((run / "checkpoints").glob("snapshot-*.safetensors"))) == 2
        for name in ("fid/fid.csv", "fid/fid_vs_kimg.png", "sweep/sweep.csv", "sweep/fid_vs_psi.png",
                     "sweep/precision_recall.png", "sweep/truncation_strip.png", "copycheck/neighbours.png",
                     "copycheck/copycheck.csv", "copycheck/copycheck.json"):
            assert (out / disc / name).is_file(), f"{disc}/{name}"
    for name in ("report.md", "report.csv", "report.tex", "report.html", "summary.md", "fid_vs_kimg.png",
                 "fid_vs_psi.png", "precision_recall.png", "demo.json"):
        assert (out / name).is_file(), name

    with open(out / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    assert sorted(r["disc"] for r in rows) == ["resnet", "vit"]
    demo = json.loads((out / "demo.json").read_text())
    assert set(demo["best_fid"]) == {"resnet", "vit"}
    assert all(float(r["fid"]) == demo["best_fid"][r["name"]] for r in rows)
    assert all(float(r["fid_heldout"]) == demo["heldout_fid"][r["name"]] for r in rows)   # held-out FID
    [c] = demo["comparisons"]   # the two generators ranked only through a paired interval
    assert c["ci_low"] <= c["delta_fid"] <= c["ci_high"]
    summary = (out / "summary.md").read_text()
    assert ("is better than" in c["verdict"]) == (c["ci_high"] < 0 or c["ci_low"] > 0)
    assert c["verdict"][1:] in summary
    assert demo["selection_seeds"] == [0, 31] and demo["report_seeds"] == [1_000_000, 1_000_031]
    assert all(float(r["ppl"]) > 0 for r in rows)                          # the PPL column
    scale = json.loads((out / "calibrate" / "calibrate.json").read_text())  # the calibration scale, with held-out
    assert [r["standin"] for r in scale["rows"]] == ["heldout", "blur-2", "copies-50"]
    assert "Calibration scale on this data" in summary and "held-out floor is FID" in summary
    assert demo["serve_command"].endswith(f"study-app serve {out / 'study'} --port 8501")

    from study_app import Study

    study = Study(out / "study")
    assert study.config.condition_labels() == ["resnet", "vit"]
    assert len(study.manifest.ids("fake", "vit")) == 12 and len(study.manifest.ids("real")) == 32

    # the printed command hosts a quiz that a participant can complete in a real browser
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    token = browser_consent(page, serve_study(out / "study"))
    plan = study.store.get_participant(token).plan
    practice = sum(t.kind == "practice" for t in plan)
    def answer(name):
        # the answer buttons are enabled when the images are on screen; the study's 250 ms floor for
        # deliberate answers runs from then
        expect(page.locator(".study-trial button:enabled").first).to_be_enabled()
        time.sleep(0.35)
        page.get_by_role("button", name=name).click()

    for _ in range(practice):
        answer("Left is real")
        page.get_by_role("button", name="Next pair").click()
    page.get_by_role("button", name="Start the main part").click()
    n_main = len(plan) - practice
    for k in range(1, n_main + 1):
        expect(page.get_by_text(f"Pair {k} of {n_main}", exact=True)).to_be_visible()
        answer("Right is real")
    expect(page.get_by_text("Thank you — you are done!")).to_be_visible()
    assert study.store.get_participant(token).status == "completed"
    assert len([r for r in study.store.trial_rows() if r["trial_index"] >= 0]) == len(plan)

    # a second run keeps the trained runs, the cached features and the study (which may hold answers)
    (out / "study" / "marker").write_text("answers live here")
    assert main(["demo", "--out", str(out), "--preset", "smoke", "--device", "cpu", "--quiet"]) == 0
    again = capsys.readouterr().out
    assert "finished earlier" in again and "left as it is" in again
    assert (out / "study" / "marker").read_text() == "answers live here"
    fid_runs = json.loads((out / "resnet" / "fid" / "fid.json").read_text())
    assert fid_runs["computed"] == 0 and fid_runs["reused"] == 2
