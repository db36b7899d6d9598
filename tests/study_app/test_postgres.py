"""The PostgreSQL path, against a real local server the test session starts (Debian's `postgresql`)."""
import threading

import pytest

from study_app import Study
from study_app.simulate import AppSession, run_concurrently
from study_app.storage import NotCurrentTrial, StudyStore

pytestmark = pytest.mark.postgres


def test_storage_rules_hold_on_postgresql(make_study, postgres_db):
    study = Study(make_study(), db_url=postgres_db)
    assert study.store.engine.dialect.name == "postgresql"
    state = study.new_participant()
    assert study.store.record_answer(state.token, 0, "left").status == "recorded"
    assert study.store.record_answer(state.token, 0, "right").status == "duplicate"
    with pytest.raises(NotCurrentTrial):
        study.store.record_answer(state.token, 5, "left")
    for trial in state.plan[1:]:
        study.store.record_answer(state.token, trial.index, "right")
    assert study.store.get_participant(state.token).status == "completed"
    assert study.store.withdraw_by_code(state.deletion_code)
    assert study.store.trial_rows() == [] and study.store.counts()["withdrawn"] == 1


def test_two_app_servers_sharing_postgresql_lose_and_duplicate_nothing(make_study, postgres_db):
    """Two stores (as two app server processes would have) answer for the same participants at
    once, every answer sent to both: exactly one row per planned trial."""
    study = Study(make_study(trials_per_condition=5), db_url=postgres_db)
    servers = [StudyStore(postgres_db, create=False), StudyStore(postgres_db, create=False)]
    states = [study.new_participant() for _ in range(10)]
    statuses = []

    def participant(state):
        for trial in state.plan:
            barrier = threading.Barrier(2)
            results = []

            def send(store):
                barrier.wait()
                results.append(store.record_answer(state.token, trial.index, "left").status)

            assert run_concurrently(send, [(s,) for s in servers]) == []
            statuses.append(sorted(results))

    assert run_concurrently(participant, [(s,) for s in states]) == []
    assert all(s == ["duplicate", "recorded"] for s in statuses)
    rows = study.store.trial_rows()
    assert len(rows) == sum(len(s.plan) for s in states)
    assert len({(r["participant"], r["trial_index"]) for r in rows}) == len(rows)
    for store in servers:
        store.dispose()


def test_the_app_runs_on_postgresql(make_study, postgres_db, monkeypatch):
    study_dir = make_study()
    monkeypatch.setenv("STUDY_APP_DB", postgres_db)     # what `study-app serve --db URL` sets
    session = AppSession(study_dir).consent()
    session.run_to_end()
    study = Study(study_dir, db_url=postgres_db)
    assert study.store.get_participant(session.token).finished
    assert len(study.store.trial_rows()) == len(study.store.get_participant(session.token).plan)
    assert not (study_dir / "responses.sqlite").exists()


def test_schema_creation_race_on_postgresql(postgres_db):
    stores = []
    assert run_concurrently(lambda: stores.append(StudyStore(postgres_db)), [()] * 4) == []
    assert all(s.is_open() for s in stores)
    for store in stores:
        store.dispose()
