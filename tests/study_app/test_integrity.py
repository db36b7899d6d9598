"""A study's answers stay tied to the images they were given for, and its records say what happened:
init --force refuses a study with answers; a hand-swapped manifest is caught by the app, `stats` and
`check`; formula cells are escaped in the CSV; the exclusion rule, re-exposures, too-fast attempts and
the browser's timing are in the export and the report; participants never see a database's details;
`serve` refuses a short admin password."""
import csv
import io
import shutil

import pandas as pd
import pytest

from study_app import ConfigError, Study, init_study, stats
from study_app.cli import main
from study_app.export import escape_formula, read_csv, unescape_formula
from study_app.simulate import AppSession, write_synthetic_images


def _answer_all(study, state, count=None):
    for trial in state.plan[:count]:
        study.store.record_answer(state.token, trial.index, "left", rt_ms=900.0)


def test_init_force_refuses_a_study_that_holds_answers(make_study, image_sets, tmp_path, capsys):
    study_dir = make_study()
    study = Study(study_dir)
    _answer_all(study, study.new_participant(), 2)
    before = {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file() and "responses" not in p.name}
    other = write_synthetic_images(tmp_path / "other", 16, seed=99)
    argv = ["init", str(study_dir), "--real", str(image_sets["real"]), "--fake", str(other), "--force"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "holds the answers of 1 participant(s)" in err and "new directory" in err and "archive it first" in err
    assert {p: p.read_bytes() for p in study_dir.rglob("*") if p.is_file() and "responses" not in p.name} == before
    with pytest.raises(ConfigError, match="holds the answers"):
        init_study(study_dir, image_sets["real"], [("X", other)], force=True)
    # Without answers (everyone withdrew, or nobody came) --force may replace the study.
    fresh = make_study()
    assert main(["init", str(fresh), "--real", str(image_sets["real"]), "--fake", str(other), "--force"]) == 0


def test_a_hand_swapped_manifest_is_detected_by_the_app_stats_and_check(make_study, image_sets, tmp_path, capsys):
    study_dir = make_study(practice_trials=0)
    study = Study(study_dir)
    done, halfway = study.new_participant(), study.new_participant()
    _answer_all(study, done)
    _answer_all(study, halfway, 3)
    old_fingerprint = study.manifest_fingerprint
    # Someone replaces the images and manifest by hand, keeping the file names.
    replacement = init_study(tmp_path / "replacement", image_sets["real"],
                             [("A", write_synthetic_images(tmp_path / "a2", 16, seed=41)),
                              ("B", write_synthetic_images(tmp_path / "b2", 16, seed=42))],
                             trials_per_condition=4, practice_trials=0, seed=7)
    shutil.rmtree(study_dir / "images")
    shutil.copytree(replacement / "images", study_dir / "images")
    shutil.copyfile(replacement / "manifest.json", study_dir / "manifest.json")
    swapped = Study(study_dir)
    assert swapped.manifest_fingerprint != old_fingerprint

    resumed = AppSession(study_dir, {"p": halfway.token})          # the app: that participant cannot go on
    assert "has been changed since you started" in resumed.texts() and resumed.current_trial() is None
    newcomer = AppSession(study_dir).consent()                     # new participants see the new images
    newcomer.click("start-trials")
    assert newcomer.current_trial() == 0

    capsys.readouterr()
    assert main(["stats", str(study_dir)]) == 1                    # stats: refuses to mix the two image sets
    err = capsys.readouterr().err
    assert "2 participant(s) consented under another image manifest" in err and old_fingerprint in err
    assert f"--fingerprint FINGERPRINT" in err
    assert main(["stats", str(study_dir), "--fingerprint", old_fingerprint[:6]]) == 0
    out = capsys.readouterr().out
    assert f"Participants of image manifest {old_fingerprint} only" in out and "2 with answers" in out
    assert main(["check", str(study_dir)]) == 1                    # check: reports the mismatch as a problem
    assert "another image manifest" in capsys.readouterr().out
    frame = swapped.trials()
    assert set(frame.loc[~frame.current_images, "participant"]) == {done.id, halfway.id}


def test_formula_cells_are_escaped_and_read_back(make_study, tmp_path):
    study = Study(make_study(store_platform_ids=True))
    state = study.new_participant(platform_id='=HYPERLINK("http://evil.example","x")')
    for trial in state.plan[:3]:
        study.store.record_answer(state.token, trial.index, "left", rt_ms=900.0,
                                  client={"rt_ms": 500.0, "window": "@SUM(A1:A9)"})
    out = tmp_path / "trials.csv"
    assert main(["export", str(study.dir), "--out", str(out), "--include-platform-ids"]) == 0
    cells = list(csv.DictReader(out.open()))
    assert cells[0]["platform_id"] == "'=HYPERLINK(\"http://evil.example\",\"x\")" and cells[0]["window_size"] == "'@SUM(A1:A9)"
    assert all(not c[column].startswith(("=", "+", "-", "@")) for c in cells for column in c)
    pd.testing.assert_frame_equal(read_csv(out), study.trials(include_platform_ids=True))
    for text in ("=1+1", "+x", "-2", "@a", "\tt", "'quoted", "''", "plain", "", "a=b"):
        assert unescape_formula(escape_formula(text)) == text


def test_the_default_rule_excludes_fast_answerers_and_the_report_says_what_it_removed(make_study):
    study_dir = make_study(practice_trials=0, exclude_median_rt_below_ms=400)
    study = Study(study_dir)
    assert Study(make_study()).config.analysis.exclude_median_rt_below_ms == 0    # the fixture turns it off
    from study_app.config import Analysis
    assert Analysis().exclude_median_rt_below_ms == 400                            # the default declares one
    careful, hasty = study.new_participant(), study.new_participant()
    for state, rt in ((careful, 1500.0), (hasty, 300.0)):
        for trial in state.plan:
            study.store.record_answer(state.token, trial.index, trial.real_side, rt_ms=rt + 100,
                                      client={"rt_ms": rt})
    report = study.analyse()
    assert report.excluded == {hasty.id: "median response time 300 ms"}
    assert report.removed["participants"] == 1 and report.removed["trials"] == len(hasty.plan)
    assert report.removed["by_reason"] == {"response time": 1}
    text = stats.format_report(report)
    assert f"Removed: 1 participants with {len(hasty.plan)} answers by the exclusion rule (1 by response time)" in text
    codebook = {r["column"]: r["description"] for r in csv.DictReader(io.StringIO(study.codebook_csv()))}
    assert "median main-trial response time under 400 ms" in codebook["excluded"]


def test_a_forged_browser_time_is_bounded_by_the_servers_and_reexposures_are_counted(make_study):
    study = Study(make_study(practice_trials=0))
    state = study.new_participant()
    study.store.record_view(state.token, 0)
    study.store.record_view(state.token, 0)                        # shown twice (a reload)
    right = [t.real_side for t in state.plan]                      # right answers: nobody is excluded
    study.store.record_answer(state.token, 0, right[0], rt_ms=317.0, client={"rt_ms": 300_060.0})
    study.store.record_view(state.token, 1)
    study.store.record_answer(state.token, 1, right[1], rt_ms=900.0, client={"rt_ms": 640.0, "exposure_ms": 700.0})
    first, second = study.export_records()[:2]
    assert (first["timing_flag"], first["rt_used_ms"], first["reexposed"], first["views"]) == \
        ("client_rt_above_server", 317.0, 1, 2)
    assert (second["timing_flag"], second["rt_used_ms"], second["reexposed"]) == ("exposure_above_rt", 640.0, 0)
    assert stats.rt_used({"rt_ms": 317.0, "client_rt_ms": 300_060.0}) == 317.0
    assert stats.rt_used({"rt_ms": 900.0, "client_rt_ms": 940.0}) == 940.0     # within the 50 ms slack
    for trial in state.plan[2:]:
        study.store.record_answer(state.token, trial.index, right[trial.index], rt_ms=900.0)
    quality = study.analyse().quality
    assert quality["reexposed_main_trials"] == 1 and quality["timing_flagged_trials"] == 2


def test_participants_never_see_the_databases_details(make_study, monkeypatch):
    monkeypatch.setenv("STUDY_APP_DB", "postgresql+psycopg://secretuser:hunter2@no-such-host.invalid:5432/studydb")
    session = AppSession(make_study())
    text = session.texts()
    assert "cannot be opened right now" in text
    assert not any(word in text for word in ("secretuser", "hunter2", "no-such-host", "psycopg", "Operational"))


def test_serve_refuses_a_short_admin_password(make_study, monkeypatch, capsys):
    monkeypatch.setattr("study_app.cli._run_server", lambda command, env=None: pytest.fail("the server started"))
    monkeypatch.setenv("STUDY_ADMIN_PASSWORD", "short-pw")
    assert main(["serve", str(make_study())]) == 1
    assert "8 characters long; the admin page needs at least 12" in capsys.readouterr().err


def test_admin_page_lists_withdrawals_since_the_last_export_and_a_replaced_manifest(make_study, image_sets,
                                                                                   tmp_path, signed_in_admin):
    study_dir = make_study(practice_trials=0)
    study = Study(study_dir)
    stay, leave = study.new_participant(), study.new_participant()
    _answer_all(study, stay)
    _answer_all(study, leave)
    study.export_csv()                                            # an export, then a withdrawal
    assert study.store.withdraw_by_code(leave.deletion_code)
    admin = signed_in_admin(study_dir)
    text = admin.texts()
    assert f"1 participant(s) withdrew since the last export" in text and f"number(s) {leave.id}" in text
    replacement = init_study(tmp_path / "replacement", image_sets["real"],
                             [("A", write_synthetic_images(tmp_path / "a3", 16, seed=51)),
                              ("B", write_synthetic_images(tmp_path / "b3", 16, seed=52))], seed=7)
    shutil.copyfile(replacement / "manifest.json", study_dir / "manifest.json")
    admin.run()
    assert "consented under another image manifest" in admin.texts()
