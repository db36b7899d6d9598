"""Storage: each answer written at once and exactly once; withdrawal deletes; concurrency; crashes."""
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
import sqlalchemy as sa

from study_app import Study
from study_app.simulate import run_concurrently
from study_app.storage import (NotCurrentTrial, ParticipantFinished, PlatformIdTaken, StudyClosed, StudyStore,
                               UnknownParticipant, responses)


def _answer_all(study, state, side="left"):
    for trial in state.plan:
        study.store.record_answer(state.token, trial.index, side, rt_ms=800)


def test_sqlite_is_in_wal_mode_with_busy_timeout(make_study):
    study = Study(make_study())
    with study.store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert study.db_url.endswith(f"{study.dir.name}/responses.sqlite")


def test_answers_are_stored_once_and_in_order(make_study):
    study = Study(make_study())
    state = study.new_participant()
    assert state.status == "consented" and state.answered == 0 and len(state.plan) == 2 + 8 + 1
    first = study.store.record_answer(state.token, 0, "right", rt_ms=900)
    assert first.status == "recorded" and first.correct == (state.plan[0].real_side == "right")
    # The same trial again (double click, second tab, back button): refused, stored answer unchanged.
    again = study.store.record_answer(state.token, 0, "left", rt_ms=100)
    assert again.status == "duplicate" and again.chosen_side == "right" and again.correct == first.correct
    with pytest.raises(NotCurrentTrial):
        study.store.record_answer(state.token, 2, "left")     # skipping ahead
    with pytest.raises(ValueError):
        study.store.record_answer(state.token, 1, "middle")
    with pytest.raises(UnknownParticipant):
        study.store.record_answer("no-such-token", 0, "left")
    assert study.store.get_participant(state.token).answered == 1
    assert study.store.get_participant(state.token).status == "in_progress"


def test_last_answer_completes_and_later_answers_are_refused(make_study):
    study = Study(make_study())
    state = study.new_participant()
    _answer_all(study, state)
    after = study.store.get_participant(state.token)
    assert after.finished and after.status == "completed" and after.next_trial is None
    with pytest.raises(ParticipantFinished):
        study.store.record_answer(state.token, len(state.plan), "left")
    rows = study.store.trial_rows()
    assert [r["trial_index"] for r in rows] == list(range(len(state.plan)))
    assert all(r["participant_completed_at"] is not None for r in rows)


def test_unique_constraint_backs_up_the_current_trial_rule(make_study):
    study = Study(make_study())
    state = study.new_participant()
    study.store.record_answer(state.token, 0, "left")
    with pytest.raises(sa.exc.IntegrityError):
        with study.store.engine.begin() as conn:
            conn.execute(responses.insert().values(
                participant_id=state.id, trial_index=0, kind="main", condition="A", real_image="x", fake_image="y",
                real_side="left", chosen_side="left", correct=True, answered_at=sa.func.now()))


def test_withdrawal_deletes_the_participants_rows_only(make_study):
    study = Study(make_study())
    stay, leave, later = study.new_participant(), study.new_participant(), study.new_participant()
    for state in (stay, leave, later):
        _answer_all(study, state)
    assert study.store.withdraw(leave.token)
    assert study.store.get_participant(leave.token) is None
    assert {r["participant"] for r in study.store.trial_rows()} == {stay.id, later.id}
    assert not study.store.withdraw(leave.token)               # already gone
    # After the study: the deletion code shown at the debrief (case and dashes forgiven).
    assert study.store.withdraw_by_code(later.deletion_code.lower().replace("-", ""))
    assert {r["participant"] for r in study.store.trial_rows()} == {stay.id}
    assert not study.store.withdraw_by_code("AAAA-BBBB-CCCC")
    counts = study.store.counts()
    assert counts == {"started": 3, "in_progress": 0, "completed": 1, "withdrawn": 2, "answers": len(stay.plan)}


def test_closed_study_refuses_new_participants_but_running_ones_finish(make_study):
    study = Study(make_study())
    running = study.new_participant()
    study.store.set_open(False)
    assert not study.store.is_open()
    with pytest.raises(StudyClosed):
        study.new_participant()
    _answer_all(study, running)
    assert study.store.get_participant(running.token).finished
    study.store.set_open(True)
    assert study.new_participant().token


def test_one_participant_per_platform_id_and_the_id_resumes_nothing(make_study):
    study = Study(make_study(store_platform_ids=True))
    first = study.new_participant(platform_id="PID123", platform_info={"PROLIFIC_PID": "PID123"})
    with pytest.raises(PlatformIdTaken):        # never the first participant's state (token, deletion code)
        study.new_participant(platform_id="PID123", platform_info={"PROLIFIC_PID": "PID123"})
    assert study.store.has_platform_id("PID123") and not study.store.has_platform_id("PID999")
    assert study.store.counts()["started"] == 1 and study.store.get_participant(first.token) is not None


def test_participant_numbers_are_never_reused_after_withdrawals(make_study):
    study = Study(make_study())
    states = [study.new_participant() for _ in range(3)]
    assert [s.id for s in states] == [1, 2, 3]
    assert study.store.withdraw(states[2].token)            # the highest number: SQLite would give it out again
    assert study.new_participant().id == 4
    with study.store.engine.begin() as conn:                 # a database made before AUTOINCREMENT: no sequence
        conn.exec_driver_sql("DELETE FROM sqlite_sequence")
    assert study.store.withdraw_by_code(study.store.get_participant(states[1].token).deletion_code)
    assert study.new_participant().id == 5
    assert [w["participant"] for w in study.store.withdrawals_since(None)] == [3, 2]


def test_a_used_deletion_code_says_already_withdrawn(make_study):
    study = Study(make_study())
    state = study.new_participant()
    _answer_all(study, state)
    assert study.store.withdraw_by_code(state.deletion_code).status == "deleted"
    again = study.store.withdraw_by_code(state.deletion_code.lower())
    assert again.status == "already_withdrawn" and not again
    assert study.store.withdraw_by_code("AAAA-BBBB-CCCC").status == "unknown"


def test_withdrawn_rows_leave_no_trace_in_the_sqlite_file_or_its_wal(make_study):
    study = Study(make_study())
    keep, leave = study.new_participant(), study.new_participant()
    for state in (keep, leave):
        _answer_all(study, state)
    with study.store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    db = study.dir / "responses.sqlite"
    marker = leave.deletion_code.encode()
    assert marker in db.read_bytes() + (db.with_name(db.name + "-wal").read_bytes()
                                         if db.with_name(db.name + "-wal").exists() else b"")
    assert study.store.withdraw(leave.token)
    wal = db.with_name(db.name + "-wal")
    stored = db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert marker not in stored and leave.token.encode() not in stored
    assert keep.deletion_code.encode() in stored


def test_views_and_too_fast_attempts_are_counted_with_the_answer(make_study):
    study = Study(make_study())
    state = study.new_participant()
    assert study.store.record_view(state.token, 0) and study.store.record_view(state.token, 0)   # a reload
    assert study.store.record_too_fast(state.token, 0)
    assert not study.store.record_view("no-such-token", 0) and not study.store.record_view(state.token, 99)
    study.store.record_answer(state.token, 0, "left", client={"too_fast": 2, "rt_ms": 700.0, "scale": 8})
    study.store.record_view(state.token, 1)
    study.store.record_answer(state.token, 1, "left", client={"too_fast": -1, "rt_ms": float("nan"), "scale": "8"})
    first, second = study.store.trial_rows()
    assert (first["views"], first["too_fast_attempts"], first["client_rt_ms"], first["display_scale"]) == (2, 3, 700, 8)
    assert (second["views"], second["too_fast_attempts"], second["client_rt_ms"], second["display_scale"]) == \
        (1, 0, None, None)                                   # malformed browser values are not stored


def test_concurrent_participants_on_sqlite_lose_and_duplicate_nothing(make_study):
    study = Study(make_study(trials_per_condition=6))
    states = [study.new_participant() for _ in range(12)]

    def participant(state):
        for trial in state.plan:
            # Every answer is sent twice, as a double click would.
            outcomes = [study.store.record_answer(state.token, trial.index, "left") for _ in range(2)]
            assert [o.status for o in outcomes] == ["recorded", "duplicate"]

    assert run_concurrently(participant, [(s,) for s in states]) == []
    rows = study.store.trial_rows()
    assert len(rows) == sum(len(s.plan) for s in states)
    assert len({(r["participant"], r["trial_index"]) for r in rows}) == len(rows)


def test_racing_submits_of_one_trial_store_one_answer(make_study):
    study = Study(make_study())
    state = study.new_participant()
    barrier = threading.Barrier(8)
    outcomes = []

    def submit(side):
        barrier.wait()
        outcomes.append(study.store.record_answer(state.token, 0, side))

    assert run_concurrently(submit, [("left" if i % 2 else "right",) for i in range(8)]) == []
    assert sorted(o.status for o in outcomes) == ["duplicate"] * 7 + ["recorded"]
    assert len({o.chosen_side for o in outcomes}) == 1        # everyone sees the one stored answer
    assert study.store.get_participant(state.token).answered == 1


def test_a_killed_writer_loses_no_acknowledged_answer(make_study):
    study = Study(make_study(trials_per_condition=40, practice_trials=0, attention_checks=0))
    state = study.new_participant()
    script = textwrap.dedent(f"""
        import sys, time
        from study_app.storage import StudyStore
        store = StudyStore({study.db_url!r})
        for i in range({len(state.plan)}):
            store.record_answer({state.token!r}, i, "left")
            print(i, flush=True)   # acknowledged only after the commit returned
            time.sleep(0.01)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acknowledged = []
    for line in proc.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 25:
            proc.send_signal(signal.SIGKILL)   # a crash mid-study, not a clean shutdown
            break
    proc.wait()
    stored = StudyStore(study.db_url).get_participant(state.token).answered
    assert stored >= 25 and stored < len(state.plan)
    assert [r["trial_index"] for r in StudyStore(study.db_url).trial_rows()] == list(range(stored))


def test_app_servers_starting_at_once_create_the_schema_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    script = f"from study_app.storage import StudyStore; StudyStore({url!r}).dispose()"
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate()[1] for p in procs if p.wait() != 0]
    assert errors == []
    store = StudyStore(url)
    assert store.is_open() and store.counts()["started"] == 0
