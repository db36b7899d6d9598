"""HYPE_time: the adaptive exposure staircase, its thresholds, and the minimum-window check."""
import math
import sqlite3
import sys

import pytest

from study_app import Study
from study_app.config import (FIELDS_ADDED_LATER, Condition, ConfigError, Design, StudyConfig, config_from_dict,
                              dump_config, load_config)
from study_app.export import CODEBOOK, SINGLE_CODEBOOK
from study_app.stats.hype_time import format_hype_time, hype_time, modal_exposure, staircase_mismatches
from study_app.planning import Trial
from study_app.simulate import AppSession, run_concurrently
from study_app.stats import format_report
from study_app.staircase import levels, next_exposure, trial_exposure
from study_app.storage import StudyStore

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STAIR = dict(presentation="timed", staircase=True, staircase_start_ms=500, staircase_min_ms=100,
             staircase_max_ms=1000, staircase_step_ms=100, staircase_down_after=3)


def _design(**changes) -> Design:
    return Design(**{**STAIR, **changes})


# -- the rule ----------------------------------------------------------------------------------------

def test_three_correct_step_down_and_an_error_steps_up():
    d = _design()
    answers = [True, True, True,            # 3 in a row: 500 -> 400
               True, True, False,           # run broken by an error: 400 -> 500
               True, True, True,            # 500 -> 400
               True, True, True,            # 400 -> 300
               False, False]                # 300 -> 400 -> 500
    assert levels(d, answers) == [500, 500, 500, 400, 400, 400, 500, 500, 500, 400, 400, 400, 300, 400, 500]


def test_the_exposure_stays_within_floor_and_ceiling():
    d = _design(staircase_start_ms=200, staircase_min_ms=150, staircase_max_ms=350, staircase_step_ms=100)
    assert levels(d, [True] * 9) == [200, 200, 200, 150, 150, 150, 150, 150, 150, 150]   # floor 150, not 100
    assert levels(d, [False] * 4) == [200, 300, 350, 350, 350]                           # ceiling 350, not 400
    assert levels(_design(staircase_down_after=1), [True, True]) == [500, 400, 300]      # 1-down/1-up


def test_one_staircase_per_condition_practice_at_start_attention_never_moves_it():
    d = _design()
    history = [("practice", "A", False), ("practice", "B", False),     # practice: never moves a staircase
               ("main", "A", True), ("main", "B", False), ("main", "A", True),
               ("attention", "", False),                               # an attention lapse moves nothing
               ("main", "A", True)]                                    # A: 3 correct -> 400; B: 1 error -> 600
    assert next_exposure(d, history, "main", "A") == 400
    assert next_exposure(d, history, "main", "B") == 600
    assert next_exposure(d, history, "practice", "B") == 500
    assert next_exposure(d, history, "attention", "") == 400           # the staircase the last main trial used
    assert next_exposure(d, history[:2], "attention", "") == 500       # no main trial yet: the start
    # With the staircase off every trial gets the fixed exposure.
    fixed = Design(presentation="timed", exposure_ms=250)
    assert {next_exposure(fixed, history, k, c) for k, c in (("main", "A"), ("practice", "B"), ("attention", ""))} \
        == {250}


def test_trial_exposure_depends_only_on_the_answers_before_the_trial():
    """Resume: the same stored answers give the same exposure in any order, and answers to this
    trial or later ones (a resubmit, a second tab) do not change it."""
    d = _design()
    rows = [{"trial_index": i, "kind": "main", "condition": "A", "correct": True} for i in range(5)]
    trial3 = Trial(index=3, kind="main", condition="A", real_image="r", fake_image="f", real_side="left")
    assert trial_exposure(d, rows[:3], trial3) == 400
    assert trial_exposure(d, list(reversed(rows)), trial3) == 400
    assert trial_exposure(d, rows, trial3) == 400


# -- config --------------------------------------------------------------------------------------------

def _config(**design) -> dict:
    data = tomllib.loads(dump_config(StudyConfig(conditions=[])))
    data["conditions"] = [{"label": "A"}]
    data["design"].update(design)
    return data


@pytest.mark.parametrize("design, field", [
    (dict(staircase=True), "design.staircase"),                                          # needs "timed"
    (dict(STAIR, exposure_ms=500), "design.exposure_ms"),                                # fixed and adaptive
    (dict(STAIR, staircase_start_ms=50), "design.staircase_start_ms"),                   # below the floor
    (dict(STAIR, staircase_start_ms=1200), "design.staircase_start_ms"),                 # above the ceiling
    (dict(STAIR, staircase_max_ms=50), "design.staircase_max_ms"),                       # ceiling below floor
    (dict(STAIR, staircase_min_ms=0, staircase_start_ms=0), "design.staircase_min_ms"),  # 0 = no limit
    (dict(STAIR, staircase_step_ms=0), "design.staircase_step_ms"),
    (dict(STAIR, staircase_down_after=0), "design.staircase_down_after"),
    (dict(presentation="timed", min_window_height=-1), "design.min_window_height"),
    (dict(presentation="timed", staircase="yes"), "design.staircase"),                   # wrong type
])
def test_staircase_and_window_settings_are_checked(design, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config_from_dict(_config(**design))


def test_new_settings_round_trip_through_study_toml(make_study):
    study_dir = make_study(**{**STAIR, "staircase_start_ms": 400}, min_window_width=1024, min_window_height=700)
    d = load_config(study_dir).design
    assert (d.staircase, d.staircase_start_ms, d.min_window_width, d.min_window_height) == (True, 400, 1024, 700)
    assert "staircase_down_after" in (study_dir / "study.toml").read_text()


def test_fingerprint_unchanged_while_the_new_settings_are_at_their_defaults():
    # Fingerprints of the release before these settings existed (same config, computed with that code).
    plain = StudyConfig(conditions=[Condition(label="A")])
    plain.analysis.exclude_median_rt_below_ms = 0                    # that release's defaults
    plain.consent_items[0] = plain.consent_items[0].replace("on the previous page", "above")
    plain.texts.withdrawal = plain.texts.withdrawal.replace(
        "send it to the researcher (the contact details are on this page), or enter it on the study page, and",
        "send it to the contact above (or enter it on the study page) and")
    assert plain.fingerprint() == "fe2fb924b35c1b4c"
    plain.design.presentation, plain.design.exposure_ms = "timed", 500
    assert plain.fingerprint() == "3bf14cb8fac45aae"
    # A study.toml without the new keys reads to the same fingerprint as one listing their defaults.
    data = _config()
    new_keys = [name for (section, name) in FIELDS_ADDED_LATER if section == "design" and name != "kind"]
    assert set(new_keys) >= {"staircase", "staircase_start_ms", "min_window_width", "min_window_height"}
    old = dict(data, design={k: v for k, v in data["design"].items() if k not in new_keys})
    assert config_from_dict(old).fingerprint() == config_from_dict(data).fingerprint()
    for (section, name), default in FIELDS_ADDED_LATER.items():   # every registered default is the real one
        assert getattr(getattr(StudyConfig(), section), name) == default, name
    # Switching the staircase on is a different design, hence a different fingerprint.
    assert config_from_dict(_config(**STAIR)).fingerprint() != config_from_dict(_config(presentation="timed")) \
        .fingerprint()


# -- storage and export -------------------------------------------------------------------------------------

def test_an_older_database_gets_the_new_column_on_open(tmp_path):
    path = tmp_path / "old.sqlite"
    store = StudyStore(f"sqlite:///{path}")
    store.dispose()
    with sqlite3.connect(path) as conn:      # the responses table as it was before target_exposure_ms
        conn.execute("ALTER TABLE responses DROP COLUMN target_exposure_ms")
        assert "target_exposure_ms" not in {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
    store = StudyStore(f"sqlite:///{path}")
    try:
        with sqlite3.connect(path) as conn:
            assert "target_exposure_ms" in {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
        assert store.trial_rows() == []
    finally:
        store.dispose()


@pytest.mark.postgres
def test_an_older_postgresql_database_gets_the_new_column_on_open(make_study, postgres_db):
    import sqlalchemy as sa

    StudyStore(postgres_db).dispose()
    engine = sa.create_engine(postgres_db)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE responses DROP COLUMN target_exposure_ms")
    # Two servers opening the old database at once: one adds the column, the other retries and finds it.
    errors = run_concurrently(lambda: StudyStore(postgres_db).dispose(), [(), ()])
    assert errors == []
    assert "target_exposure_ms" in {c["name"] for c in sa.inspect(engine).get_columns("responses")}
    engine.dispose()
    study = Study(make_study(presentation="timed", exposure_ms=300), db_url=postgres_db)
    state = study.new_participant()
    study.store.record_answer(state.token, 0, state.plan[0].real_side, target_exposure_ms=300)
    assert study.store.trial_rows()[0]["target_exposure_ms"] == 300
    study.store.dispose()


def test_the_codebooks_describe_the_target_exposure():
    assert "staircase" in CODEBOOK["target_exposure_ms"] and "target_exposure_ms" in SINGLE_CODEBOOK
    assert list(CODEBOOK).index("target_exposure_ms") == list(CODEBOOK).index("exposure_ms") + 1


# -- thresholds ------------------------------------------------------------------------------------------

def _rows(participant, condition, exposures, status="completed", kind="main"):
    return [dict(participant=participant, participant_status=status, trial_index=i, trial_kind=kind,
                 condition=condition, target_exposure_ms=e, correct=True) for i, e in enumerate(exposures)]


def test_modal_exposure_takes_the_shorter_of_tied_exposures():
    assert modal_exposure([500, 400, 400, 300]) == 400
    assert modal_exposure([500, 500, 300, 300, 400]) == 300
    with pytest.raises(ValueError):
        modal_exposure([])


def test_thresholds_recover_known_values():
    rows = (_rows(1, "A", [500, 400, 400, 300]) + _rows(2, "A", [500, 600, 600]) + _rows(3, "A", [200, 200, 100])
            + _rows(4, "A", [100] * 5, status="in_progress")            # unfinished: left out
            + _rows(5, "A", [900] * 5)                                  # excluded: left out
            + _rows(6, "A", [900] * 5, kind="attention")                # not main trials
            + _rows(7, "B", [100, 100, 200]) + _rows(8, "B", [None, None]))
    a, b, c = hype_time(rows, ["A", "B", "C"], excluded={5}, floor_ms=100, resamples=2000, seed=1)
    assert a.thresholds == {1: 400, 2: 600, 3: 200}
    assert a.participants == 3 and a.trials == 10
    assert a.mean_threshold_ms == pytest.approx(400.0) and a.median_threshold_ms == 400 and a.at_floor == 0
    assert 200 <= a.ci_bootstrap[0] < 400 < a.ci_bootstrap[1] <= 600     # bootstrap means of {200, 400, 600}
    assert b.thresholds == {7: 100} and b.at_floor == 1 and b.ci_bootstrap == (100.0, 100.0)
    assert c.participants == 0 and math.isnan(c.mean_threshold_ms)
    lines = format_hype_time([a, b, c])
    assert "A: mean threshold 400.0 ms" in lines[1] and "1 of 1 at the floor" in lines[2] and "C: no answers" in lines[3]
    assert hype_time(rows, ["A"], include_incomplete=True, resamples=200)[0].thresholds[4] == 100
    assert format_hype_time(hype_time(_rows(1, "A", [None]), ["A"], resamples=200)) == []


def test_stored_exposures_can_be_checked_against_the_rule():
    d = _design()
    rows = _rows(1, "A", [500, 500, 500, 400]) + _rows(2, "A", [500, 500, 500, 500])
    assert staircase_mismatches(rows, d) == [2]       # all correct: the 4th trial should have been at 400


# -- the app ---------------------------------------------------------------------------------------------

def test_the_app_steps_the_exposure_with_the_answers_and_stores_it(make_study):
    study_dir = make_study(conditions=("A",), trials_per_condition=6, practice_trials=1, attention_checks=0, **STAIR)
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    session.click("start-trials")
    plan = study.store.get_participant(session.token).plan
    right = {t.index: t.real_side for t in plan}
    wrong = {"left": "right", "right": "left"}

    assert session.timed_data()["exposure_ms"] == 500                  # practice: the start exposure
    session.answer_timed(wrong[right[0]])                               # a practice error moves nothing
    session.click("feedback-next-0")
    session.click("start-main")
    shown = []
    for index, correct in enumerate((True, True, True, False, True), start=1):
        data = session.timed_data()
        assert data["trial"] == index
        shown.append(data["exposure_ms"])
        if index == 3:   # a reload in a new session shows the same trial at the same exposure
            assert AppSession(study_dir, {"p": session.token}).timed_data()["exposure_ms"] == data["exposure_ms"]
        session.answer_timed(right[index] if correct else wrong[right[index]], rt_ms=700)
    assert shown == [500, 500, 500, 400, 500]     # 3 correct: down to 400; an error: back up to 500

    rows = study.store.trial_rows()
    assert [r["target_exposure_ms"] for r in rows] == [500, 500, 500, 500, 400, 500]
    assert [r["exposure_ms"] for r in rows][4] == 400                  # what the (simulated) browser reported
    assert staircase_mismatches(rows, study.config.design) == []
    export = study.export_records()
    assert [e["target_exposure_ms"] for e in export][:5] == [500, 500, 500, 500, 400]


def test_the_single_design_runs_the_staircase_to_the_end(make_study):
    study_dir = make_study(design="single", conditions=("A", "B"), trials_per_condition=4, practice_trials=0,
                           attention_checks=1, **{**STAIR, "staircase_down_after": 1})
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    plan = study.store.get_participant(session.token).plan
    answered = session.run_to_end(lambda i: plan[i].real_side)         # always right
    assert answered == 9
    rows = study.store.trial_rows()
    by_condition = {c: [r["target_exposure_ms"] for r in rows if r["condition"] == c] for c in ("A", "B")}
    assert by_condition == {"A": [500, 400, 300, 200], "B": [500, 400, 300, 200]}   # one staircase each
    attention = next(r for r in rows if r["trial_kind"] == "attention")
    last_main = max((r for r in rows if r["trial_index"] < attention["trial_index"] and r["trial_kind"] == "main"),
                    key=lambda r: r["trial_index"])
    assert attention["target_exposure_ms"] == last_main["target_exposure_ms"] - 100
    (a, b) = hype_time(rows, ["A", "B"], resamples=200)
    assert a.participants == b.participants == 1 and a.thresholds == b.thresholds == {1: 200}
    # `study-app stats` reports the thresholds of a staircase study, with the floor from the config.
    report = study.analyse()
    assert [(h.condition, h.thresholds, h.at_floor) for h in report.hype_time] == [("A", {1: 200}, 0),
                                                                                  ("B", {1: 200}, 0)]
    assert "HYPE_time (adaptive exposure)" in format_report(report) and "mean threshold 200.0 ms" in format_report(report)


def test_without_the_staircase_the_fixed_exposure_is_stored(make_study):
    study_dir = make_study(conditions=("A",), trials_per_condition=2, practice_trials=0, attention_checks=0,
                           presentation="timed", exposure_ms=300)
    session = AppSession(study_dir).consent()
    session.click("start-trials")
    session.run_to_end()
    study = Study(study_dir)
    assert [r["target_exposure_ms"] for r in study.store.trial_rows()] == [300, 300]
    report = study.analyse()                       # a fixed exposure is no threshold
    assert report.hype_time == [] and "HYPE_time" not in format_report(report)


# -- minimum window --------------------------------------------------------------------------------------

def test_the_minimum_window_reaches_the_component_and_the_texts(make_study):
    from study_app.views.component import trial_data, window_requirement

    pair = (("data:a", 32, 32), ("data:b", 32, 32))
    data = trial_data(trial_index=4, design="paired", images=pair, exposure_ms=300, min_window=(1024, 700))
    assert (data["min_width"], data["min_height"]) == (1024, 700) and data["prompt"] == "Which one was real?"
    assert trial_data(trial_index=0, design="single", images=pair[:1])["min_width"] == 0
    assert window_requirement(1024, 700) == "at least 1024×700 px"
    assert window_requirement(1024, 0) == "at least 1024 px wide" and window_requirement(0, 0) == ""

    study_dir = make_study(presentation="timed", min_window_width=1024, min_window_height=700, practice_trials=0)
    session = AppSession(study_dir)
    assert "needs a browser window of at least 1024×700 px" in session.texts()
    session.consent()
    assert "at least 1024×700 px" in session.texts()                   # the instructions say it again
    session.click("start-trials")
    data = session.timed_data()
    assert (data["min_width"], data["min_height"]) == (1024, 700)
    plain = AppSession(make_study(practice_trials=0)).consent()     # any presentation can ask for a window
    assert "browser window" not in plain.texts()
    plain.click("start-trials")
    assert (plain.timed_data()["min_width"], plain.timed_data()["min_height"]) == (0, 0)
