"""Participant page: briefing → consent → instructions → practice (feedback) → trials → debrief.

Every design shares this page: a paired trial shows a real and a generated image ("which is real?"),
a pairwise trial two generated images of two conditions ("which looks more real?"), a single-image
trial one image ("real or generated?"); each trial knows its own design (Trial.design). Every trial
is drawn by the in-browser component (views/component.py), which shows the images' original bytes
and times the answer from the first frame they are on screen.

Where the participant is comes from the database, not the browser session: the page reads the
participant's stored answers on every run, so a reload, a second tab or a new connection with the
same `?p=TOKEN` link lands on the next unanswered trial. Only that link resumes a session: a
platform ID (PROLIFIC_PID) in the URL never does, since others know it. Answers carry the index of
the trial they were given for, and storage accepts an answer only for the current trial, so stale
or repeated clicks cannot add or change answers. Each time a trial is drawn a view is stored, so
re-exposures (reload, second tab, a refused answer) show in the data.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import time
from datetime import datetime, timezone

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from study_app.manifest import ManifestError
from study_app.planning import SIDES, TRUTHS
from study_app.staircase import trial_exposure
from study_app.stats.rows import timing_check
from study_app.storage import (NotCurrentTrial, ParticipantFinished, PlatformIdTaken, StudyClosed,
                               UnknownParticipant)
from study_app.views.common import (client_address, fill, image_thumbnail, load_study, pair_thumbnail, participant_limiter,
                                    study_link)
from study_app.views.component import (answer_payload, connection_watch, data_url, trial_component, trial_data,
                                       window_requirement)

log = logging.getLogger("study_app")
study = load_study()
cfg = study.config
store = study.store
ss = st.session_state
KIND = cfg.design.kind
SINGLE = KIND == "single"
PAIRWISE = KIND == "pairwise"
UNIT = "image" if SINGLE else "pair"     # what one trial shows, in the participant's words
TRUTH_WORDS = {"real": "real", "fake": "generated"}
MIN_WINDOW = (cfg.design.min_window_width, cfg.design.min_window_height)   # (0, 0): no minimum
WINDOW_NOTE = window_requirement(*MIN_WINDOW)
UNAVAILABLE = ("The study is briefly unavailable. Everything you answered so far is saved: please reload this "
               "page in a minute to continue where you left off.")


# -- actions (widget callbacks: they run before the page is drawn again) ---------------------------

def _platform_params() -> dict[str, str]:
    return {k: st.query_params[k] for k in cfg.recruitment.platform_id_params if st.query_params.get(k)}


def _primary_platform_id() -> str | None:
    """The platform ID in the URL when the study stores them (PROLIFIC_PID by default), else None."""
    if not cfg.recruitment.store_platform_ids or not cfg.recruitment.platform_id_params:
        return None
    return st.query_params.get(cfg.recruitment.platform_id_params[0]) or None


def _consent_agree() -> None:
    if not all(ss.get(f"consent-{i}") for i in range(len(cfg.consent_items))):
        ss["consent_error"] = "Please tick every statement to take part, or choose “I do not agree”."
        return
    ss.pop("consent_error", None)
    limit = cfg.recruitment.max_new_per_address_per_hour
    if limit and not participant_limiter(study.fingerprint).allow(client_address(), limit):
        ss["consent_error"] = ("Too many people have started this study from your network in the last hour. "
                               "Please try again later, or contact the researcher.")
        return
    platform = _platform_params() if cfg.recruitment.store_platform_ids else {}
    try:
        state = study.new_participant(platform_id=_primary_platform_id(), platform_info=platform or None)
    except StudyClosed:
        ss["stage"] = "closed"
        return
    except PlatformIdTaken:
        ss["stage"] = "already_started"
        return
    ss["token"] = state.token
    st.query_params["p"] = state.token  # the link now resumes this participant (`study`, if any, stays)


def _consent_decline() -> None:
    ss["stage"] = "declined"  # nothing is written anywhere


def _start_trials(token: str) -> None:
    store.start_trials(token)


def _remount(token: str, index: int, notice: str) -> None:
    """Show the trial again, in a fresh component (the old one locked itself after the answer)."""
    ss["notice"] = notice
    ss[f"remount-{token}-{index}"] = ss.get(f"remount-{token}-{index}", 0) + 1


def _shown_key(token: str, index: int) -> str:
    return f"shown-{token}-{index}-{ss.get(f'remount-{token}-{index}', 0)}"


def _answer(token: str, index: int, side: str, client: dict | None = None,
            target_exposure_ms: int | None = None) -> None:
    shown = ss.get(_shown_key(token, index))
    rt_ms = (time.monotonic() - shown[0]) * 1000 if shown else None
    client_rt = client.get("rt_ms") if client and isinstance(client.get("rt_ms"), (int, float)) else None
    exposure = client.get("exposure_ms") if client and isinstance(client.get("exposure_ms"), (int, float)) else None
    # The browser's clock where the server's bounds it, else the server's: a patched browser cannot
    # claim more time than the server saw pass.
    used, _ = timing_check(rt_ms, client_rt, exposure)
    if used is not None and used < cfg.design.min_response_ms:
        # Faster than anyone can look at the images: the browser refuses these itself, so this one
        # comes from a page that does not (or the second click of a double click). Counted, not stored.
        store.record_too_fast(token, index)
        _remount(token, index, "That was very fast — please look at the image, then choose." if SINGLE else
                 "That was very fast — please look at both images, then choose.")
        return
    try:
        outcome = store.record_answer(token, index, side, rt_ms=rt_ms, shown_at=shown[1] if shown else None,
                                      client=client, target_exposure_ms=target_exposure_ms)
    except (NotCurrentTrial, ParticipantFinished):
        ss["notice"] = "That click was for a screen you had already left; it was not recorded."
        return
    except UnknownParticipant:
        ss["notice"] = "Your answers are no longer stored (withdrawn)."
        return
    except ValueError:   # an answer this trial does not take (only from a tampered page)
        _remount(token, index, "That answer was not recognised; it was not recorded.")
        return
    except SQLAlchemyError:
        # Nothing was stored (the transaction rolled back); the same trial is shown again.
        log.exception("an answer could not be stored")
        _remount(token, index, "Your answer could not be saved just now. Please choose again.")
        return
    if outcome.status == "duplicate":
        ss["notice"] = f"That {UNIT} was already answered; your first answer is kept."
    elif outcome.kind == "practice":
        ss["feedback"] = {"token": token, "index": index, "correct": outcome.correct, "answer": side}


def _answer_from_component(token: str, index: int, key: str, exposure_ms: int) -> None:
    payload = answer_payload(key)
    if payload and payload.get("trial") == index and payload.get("answer") in SIDES + TRUTHS:
        # exposure_ms is what this component was given (0: shown until answered, nothing to store).
        _answer(token, index, payload["answer"], client=payload, target_exposure_ms=exposure_ms or None)


def _exposure_ms(token: str, trial) -> int:
    """Exposure for the component: 0 (until answered) in the "buttons" presentation; the fixed
    design.exposure_ms, or the staircase's value, which follows from the stored answers alone (so a
    reload shows the trial at the same exposure), in the "timed" one."""
    if cfg.design.presentation != "timed":
        return 0
    if not cfg.design.staircase:
        return cfg.design.exposure_ms
    return trial_exposure(cfg.design, store.answers(token), trial)


def _key_safe(token: str) -> str:
    """The token as a component-key part. Tokens are URL-safe base64, and Streamlit refuses a
    component key containing "__", which about 1 random token in 200 holds."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _withdraw(token: str) -> None:
    if not ss.get("withdraw-confirm"):
        ss["withdraw_error"] = "Tick the box first to confirm that your answers should be deleted."
        return
    store.withdraw(token)
    ss["stage"] = "withdrawn"
    ss.pop("token", None)
    if "p" in st.query_params:
        del st.query_params["p"]


DELETE_MESSAGES = {
    "deleted": ("ok", "Your answers have been deleted. Thank you for letting us know."),
    "already_withdrawn": ("ok", "The answers of this deletion code were already deleted: nothing more is stored "
                                "under it."),
    "unknown": ("error", "No answers are stored under that code: please check it for typing mistakes."),
}


def _delete_by_code() -> None:
    code = (ss.get("deletion-code") or "").strip()
    ss["delete_result"] = ("error", "Please enter your deletion code.") if not code else \
        DELETE_MESSAGES[store.withdraw_by_code(code).status]


# -- screens -----------------------------------------------------------------------------------------

def show_notice() -> None:
    notice = ss.pop("notice", None)
    if notice:
        st.caption(f"ℹ️ {notice}")


def contact_line() -> None:
    st.caption(f"Contact: {fill(cfg.texts.contact, study)}")


def screen_briefing() -> None:
    st.title(cfg.title)
    if "Mobi" in (st.context.headers or {}).get("User-Agent", ""):
        st.info("Images are easier to judge on a larger screen: a computer or a tablet is best." if SINGLE else
                "This study shows two images side by side: a computer or a tablet is best. On a phone, "
                "hold it sideways if the images are small.")
    if WINDOW_NOTE:
        st.info(f"This study needs a browser window of {WINDOW_NOTE}.")
    st.markdown(fill(cfg.texts.briefing, study))
    with st.expander("How your data are used", expanded=True):
        st.markdown(fill(cfg.texts.data_use, study))
        st.markdown(fill(cfg.texts.withdrawal, study))
        st.markdown(f"**Contact:** {fill(cfg.texts.contact, study)}")
    st.button("Continue to consent", type="primary", key="to-consent", on_click=lambda: ss.update(stage="consent"))
    st.caption("Took part already and want your answers deleted? "
               f"[Use your deletion code]({study_link(delete=1)})")


def screen_consent() -> None:
    st.title("Consent")
    st.markdown("Please read each statement and tick it if it applies. You can take part only if you tick all of them.")
    for i, item in enumerate(cfg.consent_items):
        st.checkbox(fill(item, study), key=f"consent-{i}")
    if ss.get("consent_error"):
        st.error(ss["consent_error"])
    agree, decline = st.columns(2)
    agree.button("I agree — start the study", type="primary", key="agree", on_click=_consent_agree)
    decline.button("I do not agree", key="decline", on_click=_consent_decline)
    contact_line()


def screen_already_started() -> None:
    """A platform ID that already has a participant, without that participant's personal link."""
    st.title(cfg.title)
    st.warning("You have already started this study. To continue, use your personal link: the address of the "
               "study page after you consented, ending in “?p=…”. If you no longer have it, contact the "
               "researcher; a new start with the same recruitment ID is not possible.")
    contact_line()


def screen_images_changed() -> None:
    """The participant consented under an image manifest that has since been replaced."""
    st.title(cfg.title)
    st.warning("This study has been changed since you started (its images were replaced), so it cannot "
               "continue. Everything you answered is saved. Please contact the researcher.")
    contact_line()


def screen_instructions(token: str) -> None:
    st.title("Instructions")
    st.markdown(fill(cfg.texts.instructions, study))
    if WINDOW_NOTE:
        st.info(f"Keep your browser window {WINDOW_NOTE} (full screen is best): each {UNIT} appears "
                "only when the window is large enough.")
    label = f"Start the practice {UNIT}s" if cfg.design.practice_trials else "Start"
    st.button(label, type="primary", key="start-trials", on_click=_start_trials, args=(token,))
    st.caption(f"Your personal link resumes the study where you left off: keep this page's address (…?p={token}).")
    withdraw_box(token)


def withdraw_box(token: str) -> None:
    with st.expander("Stop and delete my answers"):
        st.markdown("You can leave at any time. This deletes every answer you gave; it cannot be undone.")
        st.checkbox("Yes, delete all my answers and leave the study", key="withdraw-confirm")
        if ss.get("withdraw_error"):
            st.error(ss.pop("withdraw_error"))
        st.button("Delete my answers and leave", key="withdraw", on_click=_withdraw, args=(token,))


PROMPT = {"single": "**Is this image real or generated?**", "paired": "**Which image is real?**",
          "pairwise": "**Which image looks more real?**"}
KEY_HELP = {"single": "Keyboard: ← or R: real; → or G: generated.",
            "paired": "Keyboard: ← or F: left is real; → or J: right is real.",
            "pairwise": "Keyboard: ← or F: left looks more real; → or J: right looks more real."}


def _image(image_id: str) -> tuple[str, int, int]:
    entry = study.manifest.get(image_id)
    return data_url(study.images.read(image_id), entry.format), entry.width, entry.height


def screen_trial(token: str, state) -> None:
    trial = state.next_trial
    practice_total = sum(t.kind == "practice" for t in state.plan)
    main_total = len(state.plan) - practice_total
    unit = "image" if trial.design == "single" else "pair"
    if trial.kind == "practice":
        st.progress((trial.index + 1) / practice_total,
                    text=f"Practice {unit} {trial.index + 1} of {practice_total}")
    else:
        done = trial.index - practice_total
        st.progress((done + 1) / main_total, text=f"{unit.capitalize()} {done + 1} of {main_total}")
    st.markdown(PROMPT[KIND])
    shown_key = _shown_key(token, trial.index)
    if shown_key not in ss:  # this session draws the trial (again): a view, and the server's clock starts
        store.record_view(token, trial.index)
        ss[shown_key] = (time.monotonic(), datetime.now(timezone.utc))
    images = (_image(trial.image),) if trial.design == "single" else (_image(trial.left_image),
                                                                      _image(trial.right_image))
    key = f"trial-{_key_safe(token)}-{trial.index}-{ss.get(f'remount-{token}-{trial.index}', 0)}"
    exposure = _exposure_ms(token, trial)
    d = cfg.design
    trial_component(key=key, data=trial_data(
        trial_index=trial.index, design=KIND, images=images, exposure_ms=exposure, mask_ms=d.mask_ms,
        min_window=MIN_WINDOW, min_response_ms=d.min_response_ms, max_px=d.image_width, image_filter=d.image_filter,
        narrow=d.narrow_screen, notice=ss.pop("notice", "")),
        on_answer=functools.partial(_answer_from_component, token, trial.index, key, exposure))
    st.caption(KEY_HELP[KIND])
    withdraw_box(token)


def screen_feedback(token: str, state, feedback: dict) -> None:
    trial = state.plan[feedback["index"]]
    if trial.design == "pairwise":
        st.info(f"You chose the **{feedback.get('answer', 'left')}** image. There is no right or wrong answer "
                "here: in the main part, choose the image that looks more real to you.")
        st.button("Next pair", type="primary", key=f"feedback-next-{trial.index}", shortcut="Enter",
                  on_click=lambda: ss.pop("feedback", None))
        withdraw_box(token)
        return
    if trial.design == "single":
        truth = TRUTH_WORDS[trial.real_side]
        if feedback["correct"]:
            st.success(f"Correct — this image was **{truth}**.")
        else:
            st.error(f"Not this time — this image was **{truth}**.")
        st.image(image_thumbnail(study.fingerprint, study.images.read(trial.image), trial.real_side == "real",
                                 height=160),
                 caption="Real images are framed in green, generated ones in red.")
        st.button("Next image", type="primary", key=f"feedback-next-{trial.index}", shortcut="Enter",
                  on_click=lambda: ss.pop("feedback", None))
        withdraw_box(token)
        return
    if feedback["correct"]:
        st.success(f"Correct — the real image was on the **{trial.real_side}**.")
    else:
        st.error(f"Not this time — the real image was on the **{trial.real_side}**.")
    st.image(pair_thumbnail(study.fingerprint, study.images.read(trial.left_image),
                            study.images.read(trial.right_image), trial.real_side, height=160),
             caption="The real image is framed in green.")
    st.button("Next pair", type="primary", key=f"feedback-next-{trial.index}", shortcut="Enter",
              on_click=lambda: ss.pop("feedback", None))
    withdraw_box(token)


def screen_main_intro(token: str, main_total: int) -> None:
    st.title("Practice done")
    if SINGLE:
        st.markdown(f"Now the main part: **{main_total} images**, with no feedback until the end. "
                    "Take your time and say whether you think each image is real or generated.")
    elif PAIRWISE:
        st.markdown(f"Now the main part: **{main_total} pairs**. Take your time and pick the image that looks "
                    "more real to you.")
    else:
        st.markdown(f"Now the main part: **{main_total} pairs**, with no feedback until the end. "
                    "Take your time and pick the image you think is real.")
    st.button("Start the main part", type="primary", key="start-main",
              on_click=lambda: ss.update({f"main-intro-{token}": True}))
    withdraw_box(token)


def screen_debrief(token: str, state) -> None:
    answers = store.answers(token)
    main = [a for a in answers if a["kind"] == "main"]
    score = sum(bool(a["correct"]) for a in main)
    st.title("Thank you — you are done!")
    if main and not PAIRWISE:
        st.metric("Your score", f"{score} of {len(main)} ({score / len(main):.0%})",
                  help="Picking at random would score about 50%.")
    st.markdown(fill(cfg.texts.debrief, study))
    if cfg.completion.code:
        st.success(f"Your completion code: **{cfg.completion.code}**")
    if cfg.completion.redirect_url:
        st.link_button("Finish and return to the recruitment site", cfg.completion.redirect_url, type="primary")
    st.subheader("Your data")
    st.markdown(fill(cfg.texts.withdrawal, study))
    st.info(f"Your deletion code: **{state.deletion_code}** — keep it if you may want your answers deleted later.")
    st.markdown(f"**Contact:** {fill(cfg.texts.contact, study)}")
    if PAIRWISE:
        pass   # no right answers to reveal
    elif main and main[0]["real_side"] in TRUTHS:   # the stored answers' own design
        debrief_images(main)
    else:
        debrief_pairs(main)
    withdraw_box(token)


def debrief_images(main: list[dict]) -> None:
    with st.expander("Which images were real?"):
        st.caption("Real images are framed in green, generated ones in red; ✓ marks your right answers.")
        grid = st.columns(4)
        for k, a in enumerate(main):
            with grid[k % 4]:
                st.image(image_thumbnail(study.fingerprint, study.images.read(a["real_image"] or a["fake_image"]),
                                         a["real_side"] == "real"),
                         caption=f"{k + 1}. {'✓' if a['correct'] else '✗'} you said {TRUTH_WORDS[a['chosen_side']]}")


def debrief_pairs(main: list[dict]) -> None:
    with st.expander("Which image was real in each pair?"):
        st.caption("The real image is framed in green; ✓ marks pairs you got right.")
        grid = st.columns(3)
        for k, a in enumerate(main):
            left, right = (a["real_image"], a["fake_image"]) if a["real_side"] == "left" else (a["fake_image"], a["real_image"])
            with grid[k % 3]:
                st.image(pair_thumbnail(study.fingerprint, study.images.read(left), study.images.read(right),
                                        a["real_side"]),
                         caption=f"{k + 1}. {'✓' if a['correct'] else '✗'} you chose {a['chosen_side']}")


def screen_delete_page() -> None:
    st.title("Delete my answers")
    st.markdown("Enter the deletion code you were shown at the end of the study.")
    st.text_input("Deletion code", key="deletion-code", max_chars=20, placeholder="ABCD-EFGH-JKLM")
    st.button("Delete my answers", type="primary", key="delete-by-code", on_click=_delete_by_code)
    result = ss.get("delete_result")
    if result:
        (st.success if result[0] == "ok" else st.error)(result[1])


# -- routing -----------------------------------------------------------------------------------------

def main() -> None:
    stage = ss.get("stage")
    if stage == "withdrawn":
        st.title("You have left the study")
        st.info(fill(cfg.texts.withdrawn, study))
        return
    if "delete" in st.query_params:
        screen_delete_page()
        return
    if stage == "declined":
        st.title("Thank you")
        st.info(fill(cfg.texts.declined, study))
        return

    token = st.query_params.get("p") or ss.get("token")
    if token:
        state = store.get_participant(token)
        if state is None:
            st.title(cfg.title)
            st.error("This study link is not valid, or the answers linked to it were withdrawn. "
                     "If you think this is a mistake, contact the researcher.")
            contact_line()
            return
        if st.query_params.get("p") != token:
            st.query_params["p"] = token
        if not study.answers_current_images(state):
            screen_images_changed()
            withdraw_box(token)
            return
        if state.finished:
            show_notice()
            screen_debrief(token, state)
        elif state.status == "consented" and state.answered == 0:
            screen_instructions(token)
        else:
            feedback = ss.get("feedback")
            practice_total = sum(t.kind == "practice" for t in state.plan)
            if feedback and feedback["token"] == token and feedback["index"] == state.answered - 1:
                show_notice()
                screen_feedback(token, state, feedback)
            elif (practice_total and state.answered == practice_total and not ss.get(f"main-intro-{token}")
                  and not store.views(token, practice_total)):   # a reload on the first main trial stays there
                show_notice()
                screen_main_intro(token, len(state.plan) - practice_total)
            else:
                screen_trial(token, state)
        return

    platform_id = _primary_platform_id()
    if stage == "already_started" or (platform_id and store.has_platform_id(platform_id)):
        # One participant per platform ID, and the ID alone is no way back in (others know it).
        screen_already_started()
        return
    if stage == "closed" or not store.is_open():
        st.title(cfg.title)
        st.info(fill(cfg.texts.closed, study))
        return
    if stage == "consent":
        screen_consent()
    else:
        screen_briefing()


# Less empty space above the content, and titles that fit a phone: the trial sizes its images to the room
# left in the window, so every pixel Streamlit's default top padding takes is one the images lose.
st.html("<style>[data-testid='stMainBlockContainer'] { padding-top: 2.5rem; }"
        " [data-testid='stMainBlockContainer'] h1 { font-size: clamp(1.6rem, 5vw, 2.4rem); }</style>")
connection_watch()
try:
    main()
except SQLAlchemyError:
    log.exception("the participant page could not reach the database")
    st.error(UNAVAILABLE)
except ManifestError:
    log.exception("the participant page could not read an image")
    st.error(UNAVAILABLE)
