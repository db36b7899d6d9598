"""Real participant sessions: `study-app serve` + headless Chromium (Debian's `chromium`) via Playwright.

Timing on this shared machine is unpredictable, so the tests never race the wall clock: each answer
waits until the trial's buttons are enabled (the first frame showing the images, when the
component's clock starts) and then at least HUMAN_PAUSE_S longer; fast presses are dispatched in the
page itself, right when the buttons are enabled; and what is asserted is what the server recorded.

Every participant screen is photographed at 1280×800 and at a phone size, into SCREENSHOTS
($STUDY_APP_SCREENSHOTS, default /tmp/study-app-screenshots): look at them after a change to the pages.
"""
import base64
import csv
import hashlib
import io
import os
import re
import tempfile
import time
from pathlib import Path

import pytest

from study_app import Study

pytestmark = pytest.mark.browser

HUMAN_PAUSE_S = 0.35  # longer than the study's min_response_ms (250 ms): answers faster than that are refused
SCREENSHOTS = Path(os.environ.get("STUDY_APP_SCREENSHOTS") or Path(tempfile.gettempdir()) / "study-app-screenshots")
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def patient_expectations():
    """Waits of up to 20 s (Playwright's default is 5 s): a rerun can take that long on a loaded machine."""
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
    yield
    expect.set_options(timeout=5_000)


def shoot(page, name: str) -> None:
    """A screenshot of the window as the participant sees it, once Streamlit has finished redrawing."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"], "
                               "[data-testid=\"stStatusWidget\"]')", timeout=10_000)
    except Exception:   # still redrawing after 10 s: the picture shows it, the test does not depend on it
        pass
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def enabled_answer(page, index: int | None = None):
    """The first answer button of the trial on screen (of trial `index`), once it is enabled: the images
    are shown and the component's clock runs. (While Streamlit reruns, the last trial's component can
    linger, hidden and disabled; a trial's own buttons are enabled only once.)"""
    from playwright.sync_api import expect

    button = page.locator(".study-trial button:enabled" if index is None else
                          f".study-trial[data-trial='{index}'] button").first
    expect(button).to_be_enabled()
    return button


# Records the src of every image element, as the page assigns it: what the trial decodes and then shows,
# readable even after an exposure limit has hidden the images again.
RECORD_IMAGE_SOURCES = """(() => {
  const setter = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, 'src').set;
  window.__studySources = [];
  Object.defineProperty(HTMLImageElement.prototype, 'src', {
    set(value) { if (String(value).startsWith('data:')) window.__studySources.push(String(value));
                 setter.call(this, value); },
    get() { return this.getAttribute('src') || ''; }, configurable: true });
})();"""


def new_page(browser_or_context, viewport):
    page = browser_or_context.new_page(viewport=viewport) if hasattr(browser_or_context, "new_context") else \
        browser_or_context.new_page()
    page.add_init_script(RECORD_IMAGE_SOURCES)
    page.set_default_timeout(60_000)   # a Streamlit rerun on a loaded 2-core CI machine once took > 20 s
    return page


def displayed_images(page, n: int) -> list[dict]:
    """The last `n` images the page loaded (the trial on screen): their bytes' sha256 and MIME type."""
    out = []
    for src in page.evaluate("n => window.__studySources.slice(-n)", n):
        mime, data = re.fullmatch(r"data:([^;]+);base64,(.*)", src).groups()
        out.append({"mime": mime, "sha256": hashlib.sha256(base64.b64decode(data)).hexdigest()})
    return out


def check_displayed_bytes(page, study: Study, trial) -> None:
    """The page shows the manifest's exact bytes, as one MIME type, at an integer multiple of their size
    in device pixels, enlarged with the nearest-neighbour filter."""
    ids = [trial.image] if trial.design == "single" else [trial.left_image, trial.right_image]
    shown = displayed_images(page, len(ids))
    assert [s["sha256"] for s in shown] == [study.manifest.get(i).sha256 for i in ids]
    assert {s["mime"] for s in shown} == {"image/png"}
    box = page.locator(f".study-trial[data-trial='{trial.index}']")   # not a fading copy of the last trial
    slots = box.locator(".slot").evaluate_all(
        "slots => slots.map(s => s.getBoundingClientRect().width * window.devicePixelRatio)")
    nearest = box.evaluate("box => box.classList.contains('nearest')")
    for width, image_id in zip(slots, ids):
        scale = width / study.manifest.get(image_id).width
        assert scale >= 1 and abs(scale - round(scale)) < 1e-6 and nearest == (scale > 1)


MASH_WHEN_ENABLED = """([key, times]) => new Promise((done) => {
  // Presses `key` (keydown + keyup) `times` times in one go, on the first frame the trial's buttons are
  // enabled: every press comes sooner than min_response_ms after the images appeared, whatever the load.
  const box = () => [...document.querySelectorAll('*')].map(e => e.shadowRoot).filter(Boolean)
      .map(r => r.querySelector('.study-trial')).find(Boolean);
  const press = () => { for (const type of ['keydown', 'keyup'])
      window.dispatchEvent(new KeyboardEvent(type, {key, bubbles: true})); };
  const wait = () => { const b = box(); const btn = b && b.querySelector('button');
      if (btn && !btn.disabled) { for (let i = 0; i < times; i++) press(); done(); }
      else requestAnimationFrame(wait); };
  wait();
})"""


def test_paired_session_shows_the_manifests_bytes_and_records_what_happened(make_study, serve_study, browser,
                                                                          browser_consent):
    """presentation = "buttons": every trial shows the manifest's exact PNG bytes at an integer scale; a reload
    is recorded as a second view; a double click, a held key and a mashed key answer at most once per
    trial (too-fast presses are refused and counted); a patched browser clock is flagged in the export.
    The main part is pair 1: reload; 2: mashed; 3: held (also into 4); 4: patched clock; 5: double click."""
    from playwright.sync_api import expect

    study_dir = make_study(trials_per_condition=3, practice_trials=2, attention_checks=1, min_response_ms=250,
                           completion_code="BROWSER-OK")
    base = serve_study(study_dir)
    study = Study(study_dir)
    page = new_page(browser, DESKTOP)
    page.goto(base + "/")
    expect(page.get_by_role("button", name="Continue to consent")).to_be_visible()
    shoot(page, "paired-1280-1-briefing")
    page.get_by_role("button", name="Continue to consent").click()
    expect(page.locator("[data-testid='stCheckbox']").first).to_be_visible()
    shoot(page, "paired-1280-2-consent")
    token = browser_consent(page, base)
    state = study.store.get_participant(token)
    plan = state.plan
    n_main = len(plan) - 2

    def answered():
        return study.store.get_participant(token).answered

    # Practice: one answer by mouse, one by keyboard; feedback after each.
    expect(page.get_by_text("Practice pair 1 of 2")).to_be_visible()
    enabled_answer(page)
    check_displayed_bytes(page, study, plan[0])
    shoot(page, "paired-1280-4-practice")
    time.sleep(HUMAN_PAUSE_S)
    page.get_by_role("button", name="Left is real").click()
    expect(page.get_by_role("button", name="Next pair")).to_be_visible()
    expect(page.get_by_text("the real image was on the " + plan[0].real_side)).to_be_visible()
    shoot(page, "paired-1280-5-feedback")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Practice pair 2 of 2")).to_be_visible()
    enabled_answer(page)
    time.sleep(HUMAN_PAUSE_S)
    page.keyboard.press("ArrowRight")
    page.get_by_role("button", name="Next pair").click()
    expect(page.get_by_role("button", name="Start the main part")).to_be_visible()
    shoot(page, "paired-1280-6-main-intro")
    page.get_by_role("button", name="Start the main part").click()

    for k in range(1, n_main + 1):
        index = k + 1
        expect(page.get_by_text(f"Pair {k} of {n_main}", exact=True)).to_be_visible()
        if k == 2:   # mashed: ten presses on the first frame of the pair, all too fast: refused and counted
            page.evaluate(MASH_WHEN_ENABLED, ["ArrowLeft", 10])
            expect(page.get_by_text("That was very fast")).to_be_visible()
        enabled_answer(page)
        before = answered()
        assert before == index
        if k == 1:   # a reload resumes at the same pair, shown a second time (a re-exposure)
            page.reload()
            expect(page.get_by_text(f"Pair {k} of {n_main}", exact=True)).to_be_visible()
            enabled_answer(page)
            assert answered() == before
            shoot(page, "paired-1280-7-trial")
        check_displayed_bytes(page, study, plan[index])
        time.sleep(HUMAN_PAUSE_S)
        if k == 3:   # held down: the first keydown answers; auto-repeat and a key held into the next pair do not
            page.keyboard.down("ArrowLeft")
            expect(page.get_by_text(f"Pair {k + 1} of {n_main}", exact=True)).to_be_visible()
            enabled_answer(page)
            time.sleep(HUMAN_PAUSE_S)
            for _ in range(3):
                page.keyboard.down("ArrowLeft")        # Playwright sends a held key's keydown with repeat = true
            time.sleep(HUMAN_PAUSE_S)
            assert answered() == before + 1
            page.keyboard.up("ArrowLeft")
            continue                                   # pair k + 1 is answered in the next round
        if k == 4:   # a patched browser clock claims five more minutes
            page.evaluate("() => { const now = performance.now.bind(performance); "
                          "performance.now = () => now() + 300000; }")
            page.get_by_role("button", name="Right is real").click()
        elif k == 5:  # a double click answers once; its second click is too fast for the next screen
            page.get_by_role("button", name="Left is real").dblclick()
        else:
            page.keyboard.press("ArrowRight" if k == 2 else "ArrowLeft")
        if k < n_main:
            expect(page.get_by_text(f"Pair {k + 1} of {n_main}", exact=True)).to_be_visible()
            assert answered() == before + 1

    expect(page.get_by_text("Thank you — you are done!")).to_be_visible()
    expect(page.get_by_text("BROWSER-OK")).to_be_visible()
    expect(page.get_by_text(state.deletion_code)).to_be_visible()
    shoot(page, "paired-1280-8-debrief")

    rows = [r for r in study.store.trial_rows() if r["participant"] == state.id]
    assert [r["trial_index"] for r in rows] == [t.index for t in plan]        # one answer per trial, in order
    assert [r["real_image"] for r in rows] == [t.real_image for t in plan]
    assert [r["chosen_side"] for r in rows[:2]] == ["left", "right"]
    assert rows[2]["views"] == 2 and all(r["views"] == 1 for r in rows if r["trial_index"] != 2)
    assert rows[3]["too_fast_attempts"] == 10 and rows[3]["chosen_side"] == "right"   # the mash, then a deliberate →
    honest = [r for r in rows if r["trial_index"] != 5]
    assert all(r["client_rt_ms"] >= 250 and r["client_rt_ms"] <= r["rt_ms"] + 50 for r in honest)
    assert all(r["window_size"] == "1280x800" and r["display_scale"] == 10 for r in rows)
    exported = {int(r["trial_index"]): r for r in csv.DictReader(io.StringIO(study.export_csv()))}
    forged = exported[5]
    assert float(forged["client_rt_ms"]) > 300_000 > float(forged["rt_ms"])
    assert forged["timing_flag"] == "client_rt_above_server" and forged["rt_used_ms"] == forged["rt_ms"]
    assert exported[2]["reexposed"] == "1" and exported[3]["reexposed"] == "0"
    assert all(exported[i]["timing_flag"] == "" for i in exported if i != 5)
    assert study.store.get_participant(token).status == "completed"


def test_timed_presentation_on_a_phone_and_a_short_window(make_study, serve_study, browser, browser_consent):
    """presentation = "timed": the pair's exact bytes, hidden after exposure_ms behind a mask; on a phone
    both images and both buttons fit side by side, and in an 800x560 window the buttons stay in view."""
    from playwright.sync_api import expect

    study_dir = make_study(conditions=("A",), trials_per_condition=3, practice_trials=1, attention_checks=0,
                           presentation="timed", exposure_ms=300, mask_ms=100, min_response_ms=250)
    base = serve_study(study_dir)
    study = Study(study_dir)
    page = new_page(browser, PHONE)
    page.goto(base + "/")
    expect(page.get_by_role("button", name="Continue to consent")).to_be_visible()
    shoot(page, "timed-phone-1-briefing")
    token = browser_consent(page, base)
    plan = study.store.get_participant(token).plan
    shoot(page, "timed-phone-3-instructions-done")

    left = page.get_by_role("button", name="Left is real (←)")
    expect(left).to_be_enabled()                      # enabled on the first frame showing both images
    check_displayed_bytes(page, study, plan[0])
    shoot(page, "timed-phone-4-trial")
    boxes = page.locator(".study-trial .slot, .study-trial button").evaluate_all(
        "els => els.map(e => e.getBoundingClientRect()).map(r => [r.left, r.right, r.bottom])")
    assert all(0 <= l and r <= PHONE["width"] and b <= PHONE["height"] for l, r, b in boxes)
    time.sleep(0.6)                                   # past the 300 ms exposure: images gone, answer still possible
    expect(page.locator(".study-trial img")).to_have_count(0)
    shoot(page, "timed-phone-5-after-exposure")
    page.keyboard.press("ArrowLeft")
    page.get_by_role("button", name="Next pair").click()
    page.get_by_role("button", name="Start the main part").click()
    page.set_viewport_size({"width": 800, "height": 560})
    for k in range(1, 4):
        expect(page.get_by_text(f"Pair {k} of 3", exact=True)).to_be_visible()
        expect(left).to_be_enabled()
        if k == 1:
            bottom = page.locator(".study-trial button").evaluate_all(
                "els => Math.max(...els.map(e => e.getBoundingClientRect().bottom))")
            assert bottom <= 560
            shoot(page, "timed-800x560-trial")
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
        assert 250 <= r["client_rt_ms"] <= r["rt_ms"] + 50
        assert 250 <= r["exposure_ms"] <= r["client_rt_ms"]   # 300 ms target, frame-quantised
        assert r["focus_losses"] == 0 and r["target_exposure_ms"] == 300
    assert rows[0]["window_size"] == "390x844" and rows[1]["window_size"] == "800x560"
    assert rows[0]["display_scale"] == 5 and rows[1]["display_scale"] >= 1


def test_single_image_session_both_presentations(make_study, serve_study, browser, browser_consent):
    """design.kind = "single": one image per trial, its exact bytes, answered by click, ← / → and R / G, in the
    "buttons" presentation (with a reload midway) and the "timed" one (with an exposure limit)."""
    from playwright.sync_api import expect

    buttons = make_study(design="single", trials_per_condition=2, practice_trials=1, attention_checks=1,
                         min_response_ms=250, completion_code="SINGLE-OK")
    timed = make_study(design="single", conditions=("A",), trials_per_condition=2, practice_trials=0,
                       attention_checks=0, presentation="timed", exposure_ms=300, mask_ms=100, min_response_ms=250)
    for study_dir, viewport, name in ((buttons, DESKTOP, "single-1280"), (timed, PHONE, "single-phone")):
        base = serve_study(study_dir)
        study = Study(study_dir)
        page = new_page(browser, viewport)
        token = browser_consent(page, base)
        plan = study.store.get_participant(token).plan
        practice = sum(t.kind == "practice" for t in plan)
        actions = ["r", "ArrowRight", "click-real", "G", "ArrowLeft", "click-fake"]
        expected = []
        for k, trial in enumerate(plan):
            enabled_answer(page)
            check_displayed_bytes(page, study, trial)
            if k == 0:
                shoot(page, f"{name}-4-trial")
            if k == 2 and study_dir == buttons:     # a reload resumes at the same image
                page.reload()
                enabled_answer(page)
            time.sleep(HUMAN_PAUSE_S)
            how = actions[k % len(actions)]
            if how == "click-real":
                page.get_by_role("button", name=re.compile(r"^Real")).click()
            elif how == "click-fake":
                page.get_by_role("button", name=re.compile(r"^Generated")).click()
            else:
                page.keyboard.press(how)
            expected.append("real" if how in ("r", "ArrowLeft", "click-real") else "fake")
            if trial.kind == "practice":
                expect(page.get_by_role("button", name="Next image")).to_be_visible()
                shoot(page, f"{name}-5-feedback")
                page.get_by_role("button", name="Next image").click()
                if k == practice - 1:
                    page.get_by_role("button", name="Start the main part").click()
            elif k < len(plan) - 1:
                expect(page.get_by_text(f"Image {k - practice + 2} of {len(plan) - practice}", exact=True)) \
                    .to_be_visible()
        expect(page.get_by_text("Thank you — you are done!")).to_be_visible()
        shoot(page, f"{name}-8-debrief")
        rows = study.store.trial_rows()
        assert [(r["trial_index"], r["real_image"], r["fake_image"], r["real_side"]) for r in rows] == \
            [(t.index, t.real_image, t.fake_image, t.real_side) for t in plan]
        assert [r["chosen_side"] for r in rows] == expected
        assert all(250 <= r["client_rt_ms"] <= r["rt_ms"] + 50 for r in rows)
        page.close()
    expect_single = Study(buttons).store.trial_rows()
    assert [r["views"] for r in expect_single] == [1, 1, 2] + [1] * (len(expect_single) - 3)


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
    shoot(page, "window-800x600-too-small")
    left = page.get_by_role("button", name="Left is real (←)")
    time.sleep(0.5)                                   # images long loaded: they would be on screen by now
    expect(page.locator(".study-trial img")).to_have_count(0)
    expect(left).to_be_disabled()
    page.set_viewport_size({"width": 1000, "height": 650})      # wide enough, not tall enough
    expect(page.get_by_text("(it is now 1000×650)")).to_be_visible()
    expect(left).to_be_disabled()
    page.set_viewport_size({"width": 1200, "height": 900})
    expect(page.locator(".study-trial img")).to_have_count(2)
    expect(left).to_be_enabled()
    expect(message).to_have_count(0)
    time.sleep(HUMAN_PAUSE_S)
    left.click()
    expect(page.get_by_role("button", name="Next pair")).to_be_visible()
    (row,) = study.store.trial_rows()
    assert row["window_size"] == "1200x900" and row["client_rt_ms"] >= 250
    assert study.store.get_participant(token).answered == 1


def test_a_platform_id_is_no_login_and_the_admin_lockout_holds(make_study, serve_study, browser, browser_consent):
    """A second browser with only the victim's PROLIFIC_PID can neither enter nor change their session;
    five wrong admin passwords lock the sign-in for a reload and for a new browser context."""
    from playwright.sync_api import expect

    study_dir = make_study(store_platform_ids=True, practice_trials=0, min_response_ms=250)
    base = serve_study(study_dir)
    study = Study(study_dir)
    victim = browser.new_context(viewport=DESKTOP).new_page()
    token = browser_consent(victim, base, "/?PROLIFIC_PID=VICTIM1&STUDY_ID=s&SESSION_ID=x")
    enabled_answer(victim)
    time.sleep(HUMAN_PAUSE_S)
    victim.keyboard.press("ArrowLeft")
    expect(victim.get_by_text("Pair 2 of", exact=False)).to_be_visible()
    state = study.store.get_participant(token)

    intruder = browser.new_context(viewport=DESKTOP).new_page()
    intruder.goto(base + "/?PROLIFIC_PID=VICTIM1")
    expect(intruder.get_by_text("You have already started this study")).to_be_visible()
    shoot(intruder, "platform-id-1280-already-started")
    assert intruder.get_by_role("button", name="Continue to consent").count() == 0
    assert intruder.locator(".study-trial").count() == 0 and "p=" not in intruder.url
    assert state.deletion_code not in intruder.content()
    after = study.store.get_participant(token)
    assert (after.answered, after.status, after.deletion_code) == (1, state.status, state.deletion_code)
    assert study.store.counts()["started"] == 1

    admin = browser.new_context(viewport=DESKTOP).new_page()
    admin.goto(base + "/admin")
    password = admin.get_by_label("Admin password")
    for _ in range(5):
        password.fill("not-the-password")
        admin.get_by_role("button", name="Sign in").click()
        expect(password).to_have_value("")             # the server took the attempt and cleared the field
    expect(admin.get_by_text("locked for another")).to_be_visible()
    admin.reload()
    expect(admin.get_by_text("locked for another")).to_be_visible()
    expect(admin.get_by_role("button", name="Sign in")).to_be_disabled()
    fresh = browser.new_context(viewport=DESKTOP).new_page()
    fresh.goto(base + "/admin")
    expect(fresh.get_by_text("locked for another")).to_be_visible()
    expect(fresh.get_by_label("Admin password")).to_be_disabled()
    shoot(fresh, "admin-1280-locked")


def test_an_unreachable_server_shows_a_calm_notice(make_study, serve_study, browser, browser_consent):
    """While the browser cannot reach the server, the page says that the study is briefly unavailable and the
    answers are saved (not Streamlit's connection-error box); back online, the trial carries on."""
    from playwright.sync_api import expect

    study_dir = make_study(practice_trials=0, min_response_ms=250)
    base = serve_study(study_dir)
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    token = browser_consent(page, base)
    enabled_answer(page)
    context.set_offline(True)
    notice = page.get_by_text("The study is briefly unavailable")
    expect(notice).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Everything you have answered so far is saved")).to_be_visible()
    shoot(page, "offline-phone-notice")
    context.set_offline(False)
    expect(notice).to_be_hidden(timeout=30_000)
    enabled_answer(page)
    time.sleep(HUMAN_PAUSE_S)
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_text("Pair 2 of", exact=False)).to_be_visible(timeout=30_000)
    assert Study(study_dir).store.get_participant(token).answered == 1
