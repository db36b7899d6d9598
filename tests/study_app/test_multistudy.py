"""Several studies on one server (`study-app serve A B`): each is addressed as ?study=NAME (its dir's
basename), keeps its own database, and participants can neither reach nor list the others."""
import os
import shutil
import time

import pytest

from study_app import Study, serve_command
from study_app.cli import main
from study_app.config import ConfigError, load_config, save_config
from study_app.simulate import AppSession
from study_app.study import DB_URL_ENV, STUDY_DIR_ENV

INCOMPLETE_LINK = "This link is incomplete or out of date: use the exact link you were given"


@pytest.fixture
def two_studies(make_study):
    """Two study dirs with different titles (served together as [a, b])."""
    return make_study(title="Alpha faces"), make_study(title="Beta landscapes")


def _counts(study_dir):
    return Study(study_dir).store.counts()


def test_a_participant_answers_into_their_own_study_only_and_the_link_keeps_the_study(two_studies):
    a, b = two_studies
    session = AppSession([a, b], {"study": b.name})
    assert "Beta landscapes" in session.texts() and "Alpha faces" not in session.texts()
    # The deletion-code link on the briefing stays within this study.
    assert f"(?study={b.name}&delete=1)" in session.texts()
    session.consent()
    token = session.token
    assert token and session.at.query_params["study"] == b.name
    session.click("start-trials")
    first = session.current_trial()
    session.answer("left")
    assert session.at.query_params == {"study": b.name, "p": token}

    rows_b = Study(b).store.trial_rows()
    assert [(r["trial_index"], r["chosen_side"]) for r in rows_b] == [(first, "left")]
    assert Study(a).store.trial_rows() == [] and _counts(a)["started"] == 0

    # The link as the participant's address bar now holds it resumes at the next trial (a new session).
    again = AppSession([a, b], {"study": b.name, "p": token})
    assert again.current_trial() == first + 1
    again.answer("right")
    assert len(Study(b).store.trial_rows()) == 2 and Study(a).store.trial_rows() == []

    # Withdrawing clears the token but not the study from the address.
    again.at.checkbox(key="withdraw-confirm").check()
    again.click("withdraw")
    assert "You have left the study" in again.texts()
    assert again.at.query_params == {"study": b.name}
    assert Study(b).store.trial_rows() == [] and _counts(b)["withdrawn"] == 1


@pytest.mark.parametrize("params", [{}, {"study": "no-such-study"}, {"p": "sometoken"}, {"study": ""}])
def test_a_link_without_a_served_study_gets_an_error_that_names_none(two_studies, params):
    a, b = two_studies
    session = AppSession([a, b], params)
    text = session.texts()
    assert INCOMPLETE_LINK in text
    for leaked in (a.name, b.name, "Alpha faces", "Beta landscapes"):
        assert leaked not in text
    assert not session.button_keys() and not session.at.checkbox      # nothing to consent to
    assert _counts(a)["started"] == _counts(b)["started"] == 0


def test_a_token_of_one_study_does_not_resume_in_another(two_studies):
    a, b = two_studies
    in_a = AppSession([a, b], {"study": a.name}).consent()
    in_a.click("start-trials")
    in_a.answer("left")
    elsewhere = AppSession([a, b], {"study": b.name, "p": in_a.token})
    assert "This study link is not valid" in elsewhere.texts()
    assert elsewhere.current_trial() is None and "Instructions" not in elsewhere.texts()
    assert _counts(b)["started"] == 0 and len(Study(a).store.trial_rows()) == 1


def test_one_study_still_needs_no_study_parameter(make_study):
    study_dir = make_study(title="Only one")
    session = AppSession(study_dir)
    assert "Only one" in session.texts() and "(?delete=1)" in session.texts()
    session.consent()
    assert session.token and "study" not in session.at.query_params


def test_every_served_study_stays_cached_and_an_edited_config_replaces_its_own(make_study, monkeypatch):
    from study_app.views import common

    opened = []

    class CountingStudy(Study):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(common, "Study", CountingStudy)
    dirs = [make_study(title=f"Study {i}") for i in range(5)]     # more than the old max_entries=4
    for _ in range(2):                                            # round robin: the worst case for an LRU
        for d in dirs:
            assert f"Study {dirs.index(d)}" in AppSession(dirs, {"study": d.name}).texts()
    assert sorted(opened) == sorted(str(d) for d in dirs)         # each opened once, none evicted

    config = load_config(dirs[2])
    config.title = "Edited title"
    save_config(config, dirs[2])
    assert "Edited title" in AppSession(dirs, {"study": dirs[2].name}).texts()
    for d in dirs:
        AppSession(dirs, {"study": d.name})
    assert len(opened) == 6 and opened[-1] == str(dirs[2])         # only the edited study was reopened


# -- admin --------------------------------------------------------------------------------------------

def _metrics(session):
    return {m.label: m.value for m in session.at.metric}


def test_admin_lists_every_study_with_counts_and_shows_the_chosen_one(two_studies, signed_in_admin):
    a, b = two_studies
    leaver = AppSession([a, b], {"study": a.name}).consent()
    Study(a).store.withdraw(leaver.token)
    AppSession([a, b], {"study": b.name}).consent().run_to_end()
    AppSession([a, b], {"study": b.name}).consent()

    admin = signed_in_admin([a, b])
    select = admin.at.selectbox(key="admin-study")
    assert select.options == [f"{a.name} — Alpha faces · 1 started / 0 completed / 1 withdrawn",
                              f"{b.name} — Beta landscapes · 2 started / 1 completed / 0 withdrawn"]
    assert select.value == a.name and "Admin — Alpha faces" in admin.texts()
    assert _metrics(admin)["Started"] == "1" and _metrics(admin)["Withdrawn"] == "1"

    select.select(b.name)
    admin.run()
    assert "Admin — Beta landscapes" in admin.texts()
    metrics = _metrics(admin)
    assert (metrics["Started"], metrics["Completed"], metrics["In progress"], metrics["Withdrawn"]) == ("2", "1", "1", "0")
    assert admin.at.query_params == {"study": b.name}        # the admin address names the study shown
    assert f"https://YOUR-HOST/?study={b.name}" in admin.texts()

    admin.click("toggle-open")                                    # closes B, and only B
    assert not Study(b).store.is_open() and Study(a).store.is_open()
    assert "Admin — Beta landscapes" in admin.texts()

    # A new participant of B changes B's count live; the selection stays on B.
    assert "to-consent" not in AppSession([a, b], {"study": b.name}).button_keys()   # B is closed
    assert "to-consent" in AppSession([a, b], {"study": a.name}).button_keys()       # A is not
    Study(b).store.set_open(True)
    AppSession([a, b], {"study": b.name}).consent()
    admin.click("refresh")
    assert admin.at.selectbox(key="admin-study").options[1].startswith(f"{b.name} — Beta landscapes · 3 started")
    assert "Admin — Beta landscapes" in admin.texts() and _metrics(admin)["Started"] == "3"

    preselected = signed_in_admin([a, b], {"study": b.name})
    assert preselected.at.selectbox(key="admin-study").value == b.name and _metrics(preselected)["Started"] == "3"


# -- command line -------------------------------------------------------------------------------------

@pytest.fixture
def no_server(monkeypatch):
    """Replace the `streamlit run` subprocess: record its command and environment instead."""
    calls = []

    def run_server(command, env=None):
        calls.append((command, env))
        return 0

    monkeypatch.setattr("study_app.cli._run_server", run_server)
    return calls


def test_serve_prints_each_studys_urls_and_passes_every_dir(two_studies, no_server, capsys, monkeypatch):
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    a, b = two_studies
    assert main(["serve", str(a), str(b), "--port", "8765"]) == 0
    out = capsys.readouterr().out
    for name in (a.name, b.name):
        assert f"{name}: Participants: http://localhost:8765/?study={name}    " \
               f"Admin: http://localhost:8765/admin?study={name}" in out
    (command, env), = no_server
    assert env[STUDY_DIR_ENV] == os.pathsep.join([str(a.resolve()), str(b.resolve())])
    assert command[-3:] == ["--", str(a.resolve()), str(b.resolve())] and DB_URL_ENV not in env

    # One dir: links without ?study=, and the dir passed as it is.
    assert main(["serve", str(a), "--port", "8765"]) == 0
    assert capsys.readouterr().out.startswith("Participants: http://localhost:8765/    Admin: http://localhost:8765/admin")
    assert no_server[1][1][STUDY_DIR_ENV] == str(a.resolve())


def test_serve_refuses_two_studies_with_one_name(two_studies, tmp_path, no_server, capsys):
    a, _ = two_studies
    twin = shutil.copytree(a, tmp_path / "elsewhere" / a.name)
    assert main(["serve", str(a), str(twin), "--port", "8765"]) == 1
    err = capsys.readouterr().err
    assert f"two studies are named '{a.name}'" in err and str(a.resolve()) in err and str(twin.resolve()) in err
    assert "rename one" in err
    assert main(["serve", str(a), str(a), "--port", "8765"]) == 1
    assert "given twice" in capsys.readouterr().err
    assert no_server == []


def test_serve_refuses_one_db_override_for_several_studies(two_studies, no_server, capsys, monkeypatch):
    a, b = two_studies
    shared = f"sqlite:///{a.parent / 'shared.sqlite'}"
    assert main(["serve", str(a), str(b), "--db", shared]) == 1
    err = capsys.readouterr().err
    assert "--db cannot be used with several studies: each study needs its own database" in err
    assert "storage.database_url" in err
    monkeypatch.setenv(DB_URL_ENV, shared)
    assert main(["serve", str(a), str(b)]) == 1
    assert f"{DB_URL_ENV} cannot be used with several studies" in capsys.readouterr().err
    assert no_server == [] and not (a.parent / "shared.sqlite").exists()
    assert not (a / "responses.sqlite").exists() and not (b / "responses.sqlite").exists()   # refused before creating
    with pytest.raises(ConfigError, match="each study needs its own database"):
        serve_command([a, b], db_url=shared)
    assert serve_command([a, b], port=9000) == f"study-app serve {a} {b} --port 9000"


def test_serve_refuses_two_studies_configured_with_one_database(two_studies, no_server, capsys, monkeypatch):
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    a, b = two_studies
    shared = a.parent / "shared.sqlite"
    # The same file written two ways: relative to A's dir, and absolute.
    for study_dir, url in ((a, "sqlite:///../shared.sqlite"), (b, f"sqlite:///{shared}")):
        config = load_config(study_dir)
        config.storage.database_url = url
        save_config(config, study_dir)
    assert main(["serve", str(a), str(b), "--port", "8765"]) == 1
    err = capsys.readouterr().err
    assert f"studies '{a.name}' and '{b.name}' use the same database" in err and str(shared) in err
    assert "give one of them another storage.database_url" in err
    assert no_server == [] and not shared.exists()

    config = load_config(b)
    config.storage.database_url = f"sqlite:///{a.parent / 'b-only.sqlite'}"
    save_config(config, b)
    assert main(["serve", str(a), str(b), "--port", "8765"]) == 0 and len(no_server) == 1


# -- a real browser -----------------------------------------------------------------------------------

@pytest.mark.browser
def test_a_participant_of_the_second_study_resumes_after_a_reload(make_study, serve_study, browser, browser_consent):
    from playwright.sync_api import expect

    a = make_study(conditions=("A",), trials_per_condition=3, practice_trials=0, attention_checks=0,
                   min_response_ms=250, title="Alpha faces")
    b = make_study(conditions=("A",), trials_per_condition=3, practice_trials=0, attention_checks=0,
                   min_response_ms=250, title="Beta landscapes")
    base = serve_study(a, b)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    token = browser_consent(page, base, f"/?study={b.name}")
    expect(page.get_by_text("Pair 1 of 3", exact=True)).to_be_visible()
    left = page.get_by_role("button", name="Left is real")
    expect(left).to_be_enabled()          # enabled on the first frame showing the images: the clock starts
    time.sleep(0.35)                      # longer than min_response_ms: a human-speed click
    left.click()
    expect(page.get_by_text("Pair 2 of 3", exact=True)).to_be_visible()

    page.reload()
    expect(page.get_by_text("Pair 2 of 3", exact=True)).to_be_visible()
    assert f"study={b.name}" in page.url and f"p={token}" in page.url
    rows = Study(b).store.trial_rows()
    assert [(r["trial_index"], r["chosen_side"]) for r in rows] == [(0, "left")]
    assert Study(a).store.counts() == {"started": 0, "in_progress": 0, "completed": 0, "withdrawn": 0, "answers": 0}
