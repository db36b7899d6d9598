"""The Streamlit app, driven headlessly with streamlit.testing.v1.AppTest."""
import csv
import io

import pytest

from study_app import Study
from study_app.export import CODEBOOK, codebook_csv, export_columns
from study_app.simulate import AppSession


def _rows(study):
    return study.store.trial_rows()


def test_decline_stores_nothing(make_study):
    study_dir = make_study()
    session = AppSession(study_dir).consent(agree=False)
    assert "Nothing has been recorded" in session.texts()
    assert session.token is None
    study = Study(study_dir)
    assert study.store.counts() == {"started": 0, "in_progress": 0, "completed": 0, "withdrawn": 0, "answers": 0}


def test_agreeing_needs_every_consent_item_ticked(make_study):
    study_dir = make_study()
    session = AppSession(study_dir)
    session.click("to-consent")
    session.at.checkbox[0].check()
    session.click("agree")
    assert "tick every statement" in session.texts()
    assert session.token is None and Study(study_dir).store.counts()["started"] == 0


def test_full_run_stores_exactly_the_planned_trials(make_study):
    study_dir = make_study(completion_code="DONE42", practice_trials=2)
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    token = session.token
    assert token and "Instructions" in session.texts()
    plan = study.store.get_participant(token).plan
    seen_feedback = []

    def choose(index):  # right on even trials, wrong on odd ones
        trial = plan[index]
        return trial.real_side if index % 2 == 0 else ("right" if trial.real_side == "left" else "left")

    while True:
        if session.step(choose) is None:
            break
        if any(k.startswith("feedback-next-") for k in session.button_keys()):
            seen_feedback.append("Correct" in session.texts())
    rows = [r for r in _rows(study) if r["participant"] == study.store.get_participant(token).id]
    assert [r["trial_index"] for r in rows] == [t.index for t in plan]
    assert [(r["real_image"], r["fake_image"], r["real_side"], r["trial_kind"]) for r in rows] == \
        [(t.real_image, t.fake_image, t.real_side, t.kind) for t in plan]
    assert [r["correct"] for r in rows] == [i % 2 == 0 for i in range(len(plan))]
    assert all(r["rt_ms"] is not None and r["rt_ms"] >= 0 and r["shown_at"] is not None for r in rows)
    assert seen_feedback == [True, False]                      # feedback after each practice pair only
    text = session.texts()
    main = [t for t in plan if t.kind == "main"]
    score = sum(1 for t in main if t.index % 2 == 0)
    assert f"{score} of {len(main)}" in " ".join(m.value for m in session.at.metric)
    assert "DONE42" in text and study.store.get_participant(token).deletion_code in text
    assert study.store.get_participant(token).status == "completed"


def test_repeated_submit_from_a_second_tab_stores_one_row(make_study):
    study_dir = make_study()
    study = Study(study_dir)
    first = AppSession(study_dir).consent()
    first.click("start-trials")
    second = AppSession(study_dir, {"p": first.token})        # same link, another tab
    assert first.current_trial() == second.current_trial() == 0
    first.answer("left")
    second.answer("right")                                      # stale: trial 0 is already answered
    assert "already answered" in second.texts()
    rows = _rows(study)
    assert len(rows) == 1 and rows[0]["chosen_side"] == "left"
    assert second.current_trial() == 1                          # the other tab moves on to the next pair
    assert any(k.startswith("feedback-next") for k in first.button_keys())


def test_too_fast_second_click_is_ignored(make_study):
    study_dir = make_study(min_response_ms=60_000, practice_trials=0)
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    session.click("start-trials")
    session.answer("left")                                      # "sooner than a person can compare two images"
    assert "very fast" in session.texts()
    assert _rows(study) == [] and session.current_trial() == 0


def test_new_session_with_the_same_token_resumes(make_study):
    study_dir = make_study()
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    session.click("start-trials")
    for _ in range(2):          # two practice pairs, each followed by feedback
        session.answer("left")
        session.click(next(k for k in session.button_keys() if k.startswith("feedback-next")))
    session.click("start-main")
    session.answer("right")
    token = session.token
    resumed = AppSession(study_dir, {"p": token})               # refresh / closed tab / new connection
    assert resumed.current_trial() == 3
    assert resumed.token == token
    resumed.run_to_end()
    assert study.store.get_participant(token).finished
    assert len(_rows(study)) == len(study.store.get_participant(token).plan)
    again = AppSession(study_dir, {"p": token})                  # after the end: the debrief again
    assert again.current_trial() is None and "deletion code" in again.texts()


def test_withdrawal_during_the_study_deletes_the_answers(make_study):
    study_dir = make_study()
    study = Study(study_dir)
    other = AppSession(study_dir).consent()
    other.run_to_end()
    session = AppSession(study_dir).consent()
    session.click("start-trials")
    session.answer("left")
    token = session.token
    session.click("withdraw")                                   # without confirming: nothing happens
    assert study.store.get_participant(token) is not None and "Tick the box" in session.texts()
    session.at.checkbox(key="withdraw-confirm").check()
    session.click("withdraw")
    assert "deleted" in session.texts() and session.token is None
    assert study.store.get_participant(token) is None
    assert {r["participant"] for r in _rows(study)} == {study.store.get_participant(other.token).id}
    assert study.store.counts()["withdrawn"] == 1
    gone = AppSession(study_dir, {"p": token})
    assert "not valid" in gone.texts() and gone.current_trial() is None


def test_deletion_code_page_deletes_after_the_study(make_study):
    study_dir = make_study()
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    session.run_to_end()
    code = study.store.get_participant(session.token).deletion_code
    page = AppSession(study_dir, {"delete": "1"})
    page.at.text_input(key="deletion-code").input("WRONG-CODE-000")
    page.click("delete-by-code")
    assert "No answers are stored" in page.texts() and len(_rows(study)) > 0
    page.at.text_input(key="deletion-code").input(code)
    page.click("delete-by-code")
    assert "have been deleted" in page.texts()
    assert _rows(study) == [] and study.store.get_participant(session.token) is None


def test_unknown_token_and_closed_study_get_clear_messages(make_study):
    study_dir = make_study()
    assert "not valid" in AppSession(study_dir, {"p": "made-up-token"}).texts()
    study = Study(study_dir)
    running = AppSession(study_dir).consent()
    study.store.set_open(False)
    assert "not accepting new participants" in AppSession(study_dir).texts()
    running.run_to_end()                                        # people already in can finish
    assert study.store.get_participant(running.token).finished


@pytest.mark.parametrize("store_ids", [False, True])
def test_platform_id_is_stored_only_if_configured(make_study, store_ids):
    study_dir = make_study(store_platform_ids=store_ids)
    study = Study(study_dir)
    session = AppSession(study_dir, {"PROLIFIC_PID": "5f00aa", "STUDY_ID": "s1", "SESSION_ID": "x9"}).consent()
    session.click("start-trials")
    session.answer("left")
    rows = _rows(study)
    assert rows[0]["platform_id"] == ("5f00aa" if store_ids else None)
    if store_ids:   # the same platform ID without the personal link: neither resumed nor started over
        again = AppSession(study_dir, {"PROLIFIC_PID": "5f00aa"})
        assert again.token is None and "already started" in again.texts() and "use your personal link" in again.texts()
        assert again.current_trial() is None and "to-consent" not in again.button_keys()
        assert study.store.get_participant(session.token).deletion_code not in again.texts()
        assert study.store.counts()["started"] == 1
    else:
        assert rows[0]["platform_info"] is None


def _admin(study_dir, monkeypatch, password="correct horse battery"):
    monkeypatch.setenv("STUDY_ADMIN_PASSWORD", password)
    session = AppSession(study_dir)
    session.at.switch_page("views/admin.py")
    return session.run()


def _sign_in(admin, password):
    admin.at.text_input(key="admin-password").input(password)
    return admin.click("admin-sign-in")


def test_admin_lockout_survives_new_sessions_and_backs_off(make_study, monkeypatch):
    from study_app.guard import FREE_FAILURES

    study_dir = make_study()
    admin = _admin(study_dir, monkeypatch)
    for _ in range(FREE_FAILURES):
        _sign_in(admin, "wrong")
    assert "locked for another" in admin.texts()
    fresh = _admin(study_dir, monkeypatch)                      # a reload, a new browser: a new session
    assert "locked for another" in fresh.texts() and fresh.at.text_input(key="admin-password").disabled
    assert fresh.at.button(key="admin-sign-in").disabled and not fresh.at.metric


def test_admin_signs_out_and_times_out(make_study, signed_in_admin):
    from study_app.guard import IDLE_TIMEOUT_S

    study_dir = make_study()
    admin = signed_in_admin(study_dir)
    assert admin.at.metric
    admin.click("admin-sign-out")
    assert not admin.at.metric and "signed out" in admin.texts()
    admin = _sign_in(admin, "correct horse battery")
    assert admin.at.metric
    admin.at.session_state["admin_seen"] -= IDLE_TIMEOUT_S + 1     # half an hour without a click
    admin.run()
    assert not admin.at.metric and "without activity" in admin.texts()


def test_admin_page_refuses_a_wrong_password(make_study, monkeypatch):
    study_dir = make_study()
    admin = _admin(study_dir, monkeypatch)
    assert "Admin password" in [t.label for t in admin.at.text_input]
    _sign_in(admin, "wrong")
    assert "Wrong password" in admin.texts()
    assert not admin.at.metric and "Results per condition" not in admin.texts()


def test_admin_page_is_disabled_without_the_environment_variable(make_study, monkeypatch):
    monkeypatch.delenv("STUDY_ADMIN_PASSWORD", raising=False)
    session = AppSession(make_study())
    session.at.switch_page("views/admin.py")
    session.run()
    assert "disabled" in session.texts() and not session.at.text_input


def test_admin_page_counts_and_closes_the_study(make_study, signed_in_admin):
    study_dir = make_study()
    study = Study(study_dir)
    AppSession(study_dir).consent().run_to_end()
    AppSession(study_dir).consent().run_to_end(choose=lambda i: "right")
    leaver = AppSession(study_dir).consent()
    study.store.withdraw(leaver.token)
    AppSession(study_dir).consent()                              # consented, nothing answered yet
    admin = signed_in_admin(study_dir)
    metrics = {m.label: m.value for m in admin.at.metric}
    assert metrics["Started"] == "4" and metrics["Completed"] == "2" and metrics["Withdrawn"] == "1"
    assert metrics["In progress"] == "1" and "Excluded" in metrics
    assert {"Trials CSV", "Codebook"} <= {b.label for b in admin.at.get("download_button")}
    assert study.store.is_open()
    admin.click("toggle-open")
    assert not study.store.is_open() and "CLOSED to new participants" in admin.texts()


def test_export_columns_match_the_codebook(make_study):
    study_dir = make_study()
    study = Study(study_dir)
    AppSession(study_dir).consent().run_to_end()
    exported = list(csv.DictReader(io.StringIO(study.export_csv())))
    codebook = [row["column"] for row in csv.DictReader(io.StringIO(codebook_csv()))]
    assert list(exported[0]) == codebook == list(CODEBOOK) == export_columns()
    assert len(exported) == len(study.store.trial_rows())
    assert all(r["correct"] in ("0", "1") and r["chose_fake"] == str(1 - int(r["correct"])) for r in exported)
    assert "token" not in ",".join(exported[0]) and "platform_id" not in exported[0]
    with_ids = study.export_records(include_platform_ids=True)
    assert list(with_ids[0]) == export_columns(include_platform_ids=True)


def test_a_failed_write_says_so_and_keeps_the_pair(make_study, monkeypatch):
    import sqlalchemy as sa

    from study_app.storage import StudyStore

    study_dir = make_study(practice_trials=0)
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    session.click("start-trials")

    def database_down(*args, **kwargs):
        raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(StudyStore, "record_answer", database_down)
    session.answer("left")
    assert "could not be saved" in session.texts() and session.current_trial() == 0
    monkeypatch.undo()
    session.answer("left")
    assert session.current_trial() == 1 and len(_rows(study)) == 1


@pytest.mark.parametrize("presentation", ["buttons", "timed"])
def test_every_presentation_draws_the_trial_in_the_browser_component(make_study, presentation):
    timed = presentation == "timed"
    study_dir = make_study(practice_trials=0, presentation=presentation, min_response_ms=250,
                           **({"exposure_ms": 500, "mask_ms": 100} if timed else {}))
    study = Study(study_dir)
    session = AppSession(study_dir).consent()
    session.click("start-trials")
    data = session.timed_data()
    assert not [k for k in session.button_keys() if k and k.startswith("answer-")]   # no Streamlit answer buttons
    assert data["exposure_ms"] == (500 if timed else 0) and data["min_response_ms"] == 250
    trial = study.store.get_participant(session.token).plan[0]
    for image, image_id in zip(data["images"], (trial.left_image, trial.right_image)):
        entry = study.manifest.get(image_id)
        assert image["src"].startswith("data:image/png;base64,")          # the original bytes, not a re-encoding
        assert (image["width"], image["height"]) == (entry.width, entry.height)
    assert "F: left is real" in session.texts()
