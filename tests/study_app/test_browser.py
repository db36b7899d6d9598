"""A real participant session: `study-app serve` + headless Chromium (Debian's `chromium`) via Playwright.

Consent, practice with feedback (mouse and keyboard), main trials with a page reload in the middle
and a double click, then the debrief; the database must then hold exactly the planned answers.
"""
import time

import pytest

from study_app import Study

pytestmark = pytest.mark.browser

HUMAN_PAUSE_S = 0.35  # longer than the study's min_response_ms (250 ms): answers faster than that are ignored


def test_participant_session_in_a_real_browser(make_study, serve_study, browser, browser_consent):
    from playwright.sync_api import expect

    study_dir = make_study(trials_per_condition=3, practice_trials=2, attention_checks=1, min_response_ms=250,
                           completion_code="BROWSER-OK")
    base = serve_study(study_dir)
    study = Study(study_dir)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    token = browser_consent(page, base)
    state = study.store.get_participant(token)
    plan = state.plan
    n_main = len(plan) - 2

    def answered():
        return study.store.get_participant(token).answered

    # Practice: one answer by mouse, one by keyboard; feedback after each.
    expect(page.get_by_text("Practice pair 1 of 2")).to_be_visible()
    time.sleep(HUMAN_PAUSE_S)
    page.get_by_role("button", name="Left is real").click()
    expect(page.get_by_role("button", name="Next pair")).to_be_visible()
    expect(page.get_by_text("the real image was on the " + plan[0].real_side)).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Practice pair 2 of 2")).to_be_visible()
    time.sleep(HUMAN_PAUSE_S)
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("button", name="Next pair")).to_be_visible()
    page.get_by_role("button", name="Next pair").click()
    page.get_by_role("button", name="Start the main part").click()

    for k in range(1, n_main + 1):
        expect(page.get_by_text(f"Pair {k} of {n_main}", exact=True)).to_be_visible()
        before = answered()
        if k == 3:   # a reload mid-study resumes at the same unanswered pair
            page.reload()
            expect(page.get_by_text(f"Pair {k} of {n_main}", exact=True)).to_be_visible()
            assert answered() == before
        time.sleep(HUMAN_PAUSE_S)
        if k == 2:   # a double click records one answer, not two
            page.get_by_role("button", name="Left is real").dblclick()
        elif k % 2:
            page.keyboard.press("ArrowLeft")
        else:
            page.get_by_role("button", name="Right is real").click()
        if k < n_main:
            expect(page.get_by_text(f"Pair {k + 1} of {n_main}", exact=True)).to_be_visible()
            time.sleep(0.3)  # let a stray second click of the double click arrive
            assert answered() == before + 1

    expect(page.get_by_text("Thank you — you are done!")).to_be_visible()
    expect(page.get_by_text("BROWSER-OK")).to_be_visible()
    expect(page.get_by_text(state.deletion_code)).to_be_visible()

    rows = [r for r in study.store.trial_rows() if r["participant"] == state.id]
    assert [r["trial_index"] for r in rows] == [t.index for t in plan]
    assert [r["real_image"] for r in rows] == [t.real_image for t in plan]
    assert [r["chosen_side"] for r in rows[:2]] == ["left", "right"]
    assert all(r["rt_ms"] >= 250 for r in rows)
    assert study.store.get_participant(token).status == "completed"
    assert study.store.counts()["started"] == 1


def test_timed_presentation_measures_in_the_browser(make_study, serve_study, browser, browser_consent):
    """presentation = "timed": the in-browser component shows the pair for exposure_ms, then a mask,
    measures the response time itself, and an answer sooner than min_response_ms is not stored."""
    from playwright.sync_api import expect

    study_dir = make_study(conditions=("A",), trials_per_condition=3, practice_trials=1, attention_checks=0,
                           presentation="timed", exposure_ms=300, mask_ms=100, min_response_ms=250)
    base = serve_study(study_dir)
    study = Study(study_dir)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    token = browser_consent(page, base)

    def answered():
        return study.store.get_participant(token).answered

    left = page.get_by_role("button", name="Left is real (←)")
    expect(left).to_be_enabled()                      # enabled on the first frame showing both images
    page.keyboard.press("ArrowLeft")                  # far sooner than 250 ms: ignored, pair shown again
    expect(page.get_by_text("That was very fast")).to_be_visible()
    assert answered() == 0
    expect(left).to_be_enabled()
    time.sleep(0.6)                                   # past the 300 ms exposure: images gone, answer still possible
    expect(page.locator(".study-pair img")).to_have_count(0)
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("button", name="Next pair")).to_be_visible()
    page.get_by_role("button", name="Next pair").click()
    page.get_by_role("button", name="Start the main part").click()
    for k in range(1, 4):
        expect(page.get_by_text(f"Pair {k} of 3", exact=True)).to_be_visible()
        expect(left).to_be_enabled()
        time.sleep(HUMAN_PAUSE_S)
        if k == 2:
            page.get_by_role("button", name="Right is real (→)").click()
        else:
            page.keyboard.press("j")
    expect(page.get_by_text("Thank you — you are done!")).to_be_visible()

    rows = study.store.trial_rows()
    assert [r["trial_index"] for r in rows] == [0, 1, 2, 3]
    assert [r["chosen_side"] for r in rows] == ["left", "right", "right", "right"]
    for r in rows:
        assert r["client_rt_ms"] >= 250 and r["rt_ms"] is not None
        assert 250 <= r["exposure_ms"] <= 1000        # 300 ms target, frame-quantised, on a loaded machine
        assert r["focus_losses"] == 0 and r["window_size"] == "1200x900"


def test_single_image_session_in_a_real_browser(make_study, serve_study, browser, browser_consent):
    """design.kind = "single": one image per trial, answered by click, ← / → and R / G (Streamlit keeps R
    for itself, so a small key component presses the buttons); a reload midway resumes."""
    import re

    from playwright.sync_api import expect

    study_dir = make_study(design="single", trials_per_condition=4, practice_trials=2, attention_checks=1,
                           min_response_ms=250, completion_code="SINGLE-OK")
    base = serve_study(study_dir)
    study = Study(study_dir)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    token = browser_consent(page, base)
    state = study.store.get_participant(token)
    plan = state.plan
    n_main = len(plan) - 2
    real = page.get_by_role("button", name=re.compile(r"^Real"))
    generated = page.get_by_role("button", name=re.compile(r"^Generated"))
    truth = {"real": "real", "fake": "generated"}

    def answered():
        return study.store.get_participant(token).answered

    expect(page.get_by_text("Practice image 1 of 2")).to_be_visible()
    time.sleep(HUMAN_PAUSE_S)
    real.click()
    expect(page.get_by_role("button", name="Next image")).to_be_visible()
    expect(page.get_by_text(f"this image was {truth[plan[0].real_side]}")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Practice image 2 of 2")).to_be_visible()
    time.sleep(HUMAN_PAUSE_S)
    page.keyboard.press("g")
    expect(page.get_by_role("button", name="Next image")).to_be_visible()
    page.get_by_role("button", name="Next image").click()
    page.get_by_role("button", name="Start the main part").click()

    # (how, answer it gives) for each main trial, in turn
    actions = [("ArrowLeft", "real"), ("r", "real"), ("ArrowRight", "fake"), ("G", "fake"),
               ("click-real", "real"), ("g", "fake"), ("R", "real"), ("click-fake", "fake"), ("ArrowLeft", "real")]
    expected = ["real", "fake"]
    for k in range(1, n_main + 1):
        expect(page.get_by_text(f"Image {k} of {n_main}", exact=True)).to_be_visible()
        before = answered()
        if k == 3:   # a reload mid-study resumes at the same unanswered image
            page.reload()
            expect(page.get_by_text(f"Image {k} of {n_main}", exact=True)).to_be_visible()
            assert answered() == before
        time.sleep(HUMAN_PAUSE_S)
        how, answer = actions[k - 1]
        if how == "click-real":
            real.click()
        elif how == "click-fake":
            generated.click()
        else:
            page.keyboard.press(how)
        expected.append(answer)
        if k < n_main:
            expect(page.get_by_text(f"Image {k + 1} of {n_main}", exact=True)).to_be_visible()
            time.sleep(0.2)
            assert answered() == before + 1

    expect(page.get_by_text("Thank you — you are done!")).to_be_visible()
    expect(page.get_by_text("SINGLE-OK")).to_be_visible()
    expect(page.get_by_text(state.deletion_code)).to_be_visible()

    rows = [r for r in study.store.trial_rows() if r["participant"] == state.id]
    assert [(r["trial_index"], r["real_image"], r["fake_image"], r["real_side"]) for r in rows] == \
        [(t.index, t.real_image, t.fake_image, t.real_side) for t in plan]
    assert [r["chosen_side"] for r in rows] == expected
    assert [r["correct"] for r in rows] == [a == t.real_side for a, t in zip(expected, plan)]
    assert all(r["rt_ms"] >= 250 for r in rows)
    assert study.store.get_participant(token).status == "completed" and study.store.counts()["started"] == 1


def test_single_image_timed_presentation(make_study, serve_study, browser, browser_consent):
    """presentation = "timed" with one image: the component shows it for exposure_ms, measures the
    response time in the browser, and takes R / G and clicks."""
    from playwright.sync_api import expect

    study_dir = make_study(design="single", conditions=("A",), trials_per_condition=2, practice_trials=1,
                           attention_checks=0, presentation="timed", exposure_ms=300, mask_ms=100, min_response_ms=250)
    base = serve_study(study_dir)
    study = Study(study_dir)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    browser_consent(page, base)
    real = page.get_by_role("button", name="Real (← or R)")
    expect(real).to_be_enabled()
    time.sleep(0.6)                                   # past the exposure: image gone, answer still possible
    expect(page.locator(".study-pair img")).to_have_count(0)
    page.keyboard.press("g")
    page.get_by_role("button", name="Next image").click()
    page.get_by_role("button", name="Start the main part").click()
    for k, how in ((1, "r"), (2, "click")):
        expect(page.get_by_text(f"Image {k} of 2", exact=True)).to_be_visible()
        expect(real).to_be_enabled()
        time.sleep(HUMAN_PAUSE_S)
        if how == "click":
            page.get_by_role("button", name="Generated (→ or G)").click()
        else:
            page.keyboard.press(how)
    expect(page.get_by_text("Thank you — you are done!")).to_be_visible()

    rows = study.store.trial_rows()
    assert [r["chosen_side"] for r in rows] == ["fake", "real", "fake"]
    for r in rows:
        assert r["client_rt_ms"] >= 250 and 250 <= r["exposure_ms"] <= 1000 and r["window_size"] == "1200x900"


def test_timed_trial_waits_for_the_minimum_window(make_study, serve_study, browser, browser_consent):
    """design.min_window_*: in a smaller window the trial does not start (no images, buttons disabled,
    a message with both sizes); enlarging the window starts it."""
    from playwright.sync_api import expect

    study_dir = make_study(conditions=("A",), trials_per_condition=1, practice_trials=1, attention_checks=0,
                           presentation="timed", min_window_width=1000, min_window_height=700, min_response_ms=250)
    base = serve_study(study_dir)
    study = Study(study_dir)
    page = browser.new_page(viewport={"width": 800, "height": 600})
    token = browser_consent(page, base)
    message = page.get_by_text("Please enlarge your browser window to at least 1000×700 px (it is now 800×600)")
    expect(message).to_be_visible()
    left = page.get_by_role("button", name="Left is real (←)")
    time.sleep(0.5)                                   # images long loaded: they would be on screen by now
    expect(page.locator(".study-pair img")).to_have_count(0)
    expect(left).to_be_disabled()
    page.set_viewport_size({"width": 1000, "height": 650})      # wide enough, not tall enough
    expect(page.get_by_text("(it is now 1000×650)")).to_be_visible()
    expect(left).to_be_disabled()
    page.set_viewport_size({"width": 1200, "height": 900})
    expect(page.locator(".study-pair img")).to_have_count(2)
    expect(left).to_be_enabled()
    expect(message).to_have_count(0)
    time.sleep(HUMAN_PAUSE_S)
    left.click()
    expect(page.get_by_role("button", name="Next pair")).to_be_visible()
    (row,) = study.store.trial_rows()
    assert row["window_size"] == "1200x900" and row["client_rt_ms"] >= 250
    assert study.store.get_participant(token).answered == 1
