"""pandas where researchers expect it: Study.trials() / Study.participants() from the database, with the
codebook's columns and dtypes, the CSV export read back to the same frame, and StudyReport.to_frame()."""
import csv
import io
import math
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from study_app import Study, stats
from study_app.cli import main
from study_app.export import (COLUMN_TYPES, PARTICIPANT_CODEBOOK, codebook_csv, column_type, export_columns,
                              participant_columns, read_csv)
from study_app.simulate import simulated_rows, simulated_single_rows


def _wrong(answer: str) -> str:
    return {"left": "right", "right": "left", "real": "fake", "fake": "real", "": "right"}[answer]


def _answer(study: Study, state, count: int | None = None, *, timed: bool = False) -> None:
    """Answer the first `count` trials of the plan (all by default): every third one wrong, with
    server timing, and with browser measurements when `timed`."""
    shown = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    for trial in state.plan[:count]:
        client = {"rt_ms": 612.5 + trial.index, "exposure_ms": 250.25, "focus_losses": trial.index % 2,
                  "window": "1280x800"} if timed else None
        study.store.record_answer(state.token, trial.index,
                                  (trial.real_side or "left") if trial.index % 3 else _wrong(trial.real_side),
                                  rt_ms=800.0 + trial.index / 3, shown_at=shown + timedelta(seconds=trial.index),
                                  client=client, target_exposure_ms=250 if timed else None)


@pytest.fixture(params=["paired", "single", "pairwise"])
def answered_study(request, make_study):
    """A study of either design: two finished participants (one with browser timing), one halfway,
    one who only consented, one with a platform ID."""
    study_dir = make_study(design=request.param, store_platform_ids=True)
    study = Study(study_dir)
    _answer(study, study.new_participant())
    _answer(study, study.new_participant(platform_id="PID-7"), timed=True)
    _answer(study, study.new_participant(), 3)
    study.new_participant()
    return study


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {column: str(dtype) for column, dtype in frame.dtypes.items()}


def test_trials_have_the_codebooks_columns_and_dtypes(answered_study):
    study, design = answered_study, answered_study.config.design.kind
    frame = study.trials()
    rows = study.store.trial_rows()
    assert list(frame.columns) == export_columns(design=design)
    assert _dtypes(frame) == {c: column_type(c, design) for c in frame.columns}
    assert len(frame) == len(rows) and frame["participant"].tolist() == [r["participant"] for r in rows]
    if design != "pairwise":
        assert frame["correct"].tolist() == [bool(r["correct"]) for r in rows]
    assert frame["rt_ms"].tolist() == [r["rt_ms"] for r in rows]
    timed = frame[frame["participant"] == 2]
    assert timed["client_rt_ms"].notna().all() and frame.loc[frame["participant"] != 2, "client_rt_ms"].isna().all()
    assert timed["focus_losses"].tolist() == [t % 2 for t in timed["trial_index"]]
    assert timed["target_exposure_ms"].eq(250).all() and frame["target_exposure_ms"].isna().sum() == len(frame) - len(timed)
    assert frame["shown_at"].iloc[1] == pd.Timestamp("2024-05-01 12:00:01", tz="UTC")
    assert frame.loc[frame["participant"] == 3, "participant_completed_at"].isna().all()
    if design == "single":
        assert (frame["judged_real"] == (frame["answer"] == "real")).all()
        assert (frame["correct"] == (frame["answer"] == frame["image_truth"])).all()
    elif design == "pairwise":
        main_trials = frame[frame["trial_kind"] != "attention"]
        chosen = main_trials["left_condition"].where(main_trials["chosen_side"] == "left", main_trials["right_condition"])
        assert (main_trials["chosen_condition"] == chosen).all() and main_trials["attention_correct"].isna().all()
        assert set(main_trials["left_condition"]) == {"A", "B"}
    else:
        assert (frame["chose_fake"] == ~frame["correct"]).all()
    with_ids = study.trials(include_platform_ids=True)
    assert list(with_ids.columns) == export_columns(True, design=design)
    assert set(with_ids.loc[with_ids["participant"] == 2, "platform_id"]) == {"PID-7"}
    assert set(with_ids.loc[with_ids["participant"] != 2, "platform_id"]) == {""}   # as in the CSV


def test_the_codebook_states_each_columns_type(answered_study):
    design = answered_study.config.design.kind
    book = {r["column"]: r["type"] for r in csv.DictReader(io.StringIO(codebook_csv(design=design)))}
    assert list(book) == export_columns(design=design)
    correct, condition = ("attention_correct", "left_condition") if design == "pairwise" else ("correct", "condition")
    assert book["participant"] == "integer" and book[correct].startswith("0 or 1") and book[condition] == "text"
    assert book["client_rt_ms"] == "number; empty if none" and book["answered_at"].startswith("UTC time")
    assert "| `trial_index` | integer |" in answered_study.codebook_markdown()


def test_the_csv_export_reads_back_to_the_same_frame(answered_study, tmp_path):
    out = tmp_path / "trials.csv"
    assert main(["export", str(answered_study.dir), "--out", str(out), "--include-platform-ids"]) == 0
    pd.testing.assert_frame_equal(read_csv(out), answered_study.trials(include_platform_ids=True))
    assert main(["export", str(answered_study.dir), "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(read_csv(out), answered_study.trials())
    with pytest.raises(ValueError, match="unknown column"):
        read_csv(io.StringIO("participant,shoe_size\n1,44\n"))


def test_participants_has_one_row_per_participant(answered_study):
    study = answered_study
    people, trials = study.participants(), study.trials()
    assert list(people.columns) == participant_columns() == list(PARTICIPANT_CODEBOOK)
    assert _dtypes(people) == {c: COLUMN_TYPES[c] for c in people.columns}
    assert people["participant"].tolist() == [1, 2, 3, 4]
    assert people["participant_status"].tolist() == ["completed", "completed", "in_progress", "consented"]
    counted = trials.groupby("participant").agg(answered=("trial_index", "size"))
    assert people.set_index("participant")["answered"].to_dict() == {**counted["answered"].to_dict(), 4: 0}
    indexed = people.set_index("participant")
    if study.config.design.kind == "pairwise":      # no right answers: nothing to count as correct
        assert (indexed["main_correct"] == 0).all() and indexed["main_accuracy"].isna().all()
    else:
        mains = trials[trials["trial_kind"] == "main"].groupby("participant")["correct"].agg(["size", "sum"])
        assert indexed.loc[mains.index, "main_trials"].tolist() == mains["size"].tolist()
        assert indexed.loc[mains.index, "main_correct"].tolist() == mains["sum"].tolist()
        assert indexed.loc[1, "main_accuracy"] == pytest.approx(mains.loc[1, "sum"] / mains.loc[1, "size"])
    assert math.isnan(indexed.loc[4, "main_accuracy"]) and pd.isna(indexed.loc[4, "started_at"])
    assert indexed.loc[1, "n_trials"] == len(study.store.get_participant(_token(study, 1)).plan)
    assert set(indexed["conditions"]) == {"A;B"}
    excluded = trials.groupby("participant")["excluded"].first().to_dict()
    assert {p: indexed.loc[p, "excluded"] for p in excluded} == excluded
    assert study.participants(include_platform_ids=True)["platform_id"].tolist() == ["", "PID-7", "", ""]
    assert not {"token", "deletion_code"} & set(study.participants(include_platform_ids=True).columns)


def _token(study: Study, participant: int) -> str:
    with study.store.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT token FROM participants WHERE id = ?", (participant,)).scalar()


def test_a_withdrawn_participant_leaves_both_frames(answered_study):
    study = answered_study
    assert study.store.withdraw(_token(study, 2))
    assert 2 not in set(study.participants()["participant"]) and 2 not in set(study.trials()["participant"])


# -- StudyReport.to_frame ----------------------------------------------------------------------------------

def test_report_tables_as_frames():
    rows = (simulated_rows(12, 10, 0.6, seed=1, condition="A")
            + simulated_rows(12, 10, 0.5, seed=2, condition="B", first_participant=100))
    report = stats.analyse(rows, conditions=["A", "B"], bootstrap_resamples=300)
    table = report.to_frame()
    assert table["condition"].tolist() == ["A", "B"] and len(table.columns) == len(set(table.columns))
    for res, (_, row) in zip(report.conditions, table.iterrows()):
        assert (row["ci_exact_low"], row["ci_exact_high"]) == res.ci_exact
        assert (row["dprime_ci_low"], row["dprime_ci_high"]) == res.dprime_ci
        assert row["p_value_adjusted"] == res.p_value_adjusted and row["verdict"] == res.verdict
    assert "ci_exact" not in table.columns and table["trials"].dtype == "int64"
    images = report.to_frame("images")
    assert len(images) == len(report.images) and images["image"].tolist() == [s.image for s in report.images]
    mixed = report.to_frame("mixed_model")
    assert mixed["condition"].tolist() == ["A", "B"] and {"ci_low", "ci_high", "coefficient"} <= set(mixed.columns)
    hype = report.to_frame("hype_time")
    assert hype.empty and "ci_bootstrap_low" in hype.columns           # not a staircase study: no rows
    with pytest.raises(ValueError, match="table must be one of conditions, images"):
        report.to_frame("people")


def test_single_design_report_frame_keeps_its_error_rates():
    report = stats.analyse(simulated_single_rows(10, 20, 0.7, 0.4, seed=3), conditions=["A"], design="single",
                           bootstrap_resamples=300)
    row = report.to_frame().iloc[0]
    res = report.conditions[0]
    assert (row["fake_error_ci_bootstrap_low"], row["fake_error_ci_bootstrap_high"]) == res.fake_error_ci_bootstrap
    assert row["criterion_c"] == res.criterion_c and row["real_trials"] == res.real_trials
