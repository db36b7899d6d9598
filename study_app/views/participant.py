"""Participant page: briefing → consent → instructions → practice (feedback) → trials → debrief.

Both designs share this page: a paired trial shows two images ("which is real?"), a single-image
trial one image ("real or generated?"); each trial knows its own design (Trial.design).

Where the participant is comes from the database, not the browser session: the page reads the
participant's stored answers on every run, so a reload, a second tab or a new connection with the
same `?p=TOKEN` link lands on the next unanswered trial. Answer buttons carry the index of the
trial they were drawn for, and storage accepts an answer only for the current trial, so stale or
repeated clicks cannot add or change answers.
"""
from __future__ import annotations

import functools
import hashlib
import time
from datetime import datetime, timezone

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from study_app.planning import SIDES, TRUTHS
from study_app.staircase import trial_exposure
from study_app.storage import NotCurrentTrial, ParticipantFinished, StudyClosed, UnknownParticipant
from study_app.views.common import fill, image_thumbnail, load_study, pair_thumbnail, study_link
from study_app.views.timed import (answer_keys, answer_payload, data_url, timed_pair, timed_single,
                                   window_requirement)

study = load_study()
cfg = study.config
store = study.store
ss = st.session_state
SINGLE = cfg.design.kind == "single"
UNIT = "image" if SINGLE else "pair"     # what one trial shows, in the participant's words
TRUTH_WORDS = {"real": "real", "fake": "generated"}
MIN_WINDOW = (cfg.design.min_window_width, cfg.design.min_window_height)   # (0, 0): no minimum
WINDOW_NOTE = window_requirement(*MIN_WINDOW)


# -- actions (widget callbacks: they run before the page is drawn again) ---------------------------

def _platform_params() -> dict[str, str]:
    return {k: st.query_params[k] for k in cfg.recruitment.platform_id_params if st.query_params.get(k)}


def _consent_agree() -> None:
    if not all(ss.get(f"consent-{i}") for i in range(len(cfg.consent_items))):
        ss["consent_error"] = "Please tick every statement to take part, or choose “I do not agree”."
        return
    ss.pop("consent_error", None)
    platform = _platform_params() if cfg.recruitment.store_platform_ids else {}
    primary = cfg.recruitment.platform_id_params[0] if cfg.recruitment.platform_id_params else None
    try:
        state = study.new_participant(platform_id=platform.get(primary) if primary else None,
                                      platform_info=platform or None)
    except StudyClosed:
        ss["stage"] = "closed"
        return
    ss["token"] = state.token
    st.query_params["p"] = state.token  # the link now resumes this participant (`study`, if any, stays)


def _consent_decline() -> None:
    ss["stage"] = "declined"  # nothing is written anywhere


def _start_trials(token: str) -> None:
    store.start_trials(token)


def _answer(token: str, index: int, side: str, client: dict | None = None,
            target_exposure_ms: int | None = None) -> None:
    shown = ss.get(f"shown-{token}-{index}")
    rt_ms = (time.monotonic() - shown[0]) * 1000 if shown else None
    # The browser's own measurement, when there is one, is the better clock.
    decisive_rt = client.get("rt_ms") if client and isinstance(client.get("rt_ms"), (int, float)) else rt_ms
    if decisive_rt is not None and decisive_rt < cfg.design.min_response_ms:
        # Faster than anyone can compare two images: the second click of a double click that landed
        # on the next pair. Keep the pair on screen instead of recording it.
        ss["notice"] = ("That was very fast — please look at the image, then choose." if SINGLE else
                        "That was very fast — please look at both images, then choose.")
        ss[f"remount-{token}-{index}"] = ss.get(f"remount-{token}-{index}", 0) + 1  # timed: a fresh component
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
        ss["notice"] = "That answer was not recognised; it was not recorded."
        return
    except SQLAlchemyError:
        # Nothing was stored (the transaction rolled back); the same pair stays on screen.
        ss["notice"] = "Your answer could not be saved just now. Please choose again."
        return
    if outcome.status == "duplicate":
        ss["notice"] = f"That {UNIT} was already answered; your first answer is kept."
    elif outcome.kind == "practice":
        ss["feedback"] = {"token": token, "index": index, "correct": outcome.correct}


def _answer_timed(token: str, index: int, key: str, exposure_ms: int) -> None:
    payload = answer_payload(key)
    if payload and payload.get("trial") == index and payload.get("answer") in SIDES + TRUTHS:
        # exposure_ms is what this component was given (0: shown until answered, nothing to store).
        _answer(token, index, payload["answer"], client=payload, target_exposure_ms=exposure_ms or None)


def _exposure_ms(token: str, trial) -> int:
    """Exposure for the timed component: the fixed design.exposure_ms, or the staircase's value, which
    follows from the stored answers alone (so a reload shows the trial at the same exposure)."""
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


def _delete_by_code() -> None:
    code = (ss.get("deletion-code") or "").strip()
    if not code:
        ss["delete_result"] = ("error", "Please enter your deletion code.")
    elif store.withdraw_by_code(code):
        ss["delete_result"] = ("ok", "Your answers have been deleted. Thank you for letting us know.")
    else:
        ss["delete_result"] = ("error", "No answers are stored under that code: it may be mistyped, "
                                        "or the answers were already deleted.")


# -- screens -----------------------------------------------------------------------------------------

def show_notice() -> None:
    notice = ss.pop("notice", None)
    if notice:
        st.caption(f"ℹ️ {notice}")


def screen_briefing() -> None:
    st.title(cfg.title)
    if "Mobi" in (st.context.headers or {}).get("User-Agent", ""):
        st.warning("Images are hard to judge on a small screen: please take part on a computer." if SINGLE else
                   "This study shows two images side by side: please take part on a computer with a large screen.")
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
    st.caption(f"Contact: {fill(cfg.texts.contact, study)}")


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
    show_notice()
    st.markdown("**Is this image real or generated?**" if trial.design == "single" else "**Which image is real?**")
    shown_key = f"shown-{token}-{trial.index}"
    if shown_key not in ss:  # first time this session draws the trial: the response-time clock starts
        ss[shown_key] = (time.monotonic(), datetime.now(timezone.utc))
    if trial.design == "single":
        single_trial(token, trial)
    elif cfg.design.presentation == "timed":
        key = f"timed-{_key_safe(token)}-{trial.index}-{ss.get(f'remount-{token}-{trial.index}', 0)}"
        exposure = _exposure_ms(token, trial)
        timed_pair(key=key, trial_index=trial.index,
                   left=data_url(study.images.read(trial.left_image), study.manifest.get(trial.left_image).format),
                   right=data_url(study.images.read(trial.right_image), study.manifest.get(trial.right_image).format),
                   exposure_ms=exposure, mask_ms=cfg.design.mask_ms, min_window=MIN_WINDOW,
                   on_answer=functools.partial(_answer_timed, token, trial.index, key, exposure))
        st.caption("Keyboard: ← or F: left is real; → or J: right is real.")
    else:
        width = cfg.design.image_width or "stretch"
        columns = st.columns(2, gap="large")
        for column, side, image_id, key_name in ((columns[0], "left", trial.left_image, "Left"),
                                                 (columns[1], "right", trial.right_image, "Right")):
            with column:
                st.image(study.images.read(image_id), width=width)
                st.button(f"{key_name} is real", key=f"answer-{trial.index}-{side}", type="primary", width="stretch",
                          on_click=_answer, args=(token, trial.index, side), shortcut=key_name)
        st.caption("Keyboard: ← left is real, → right is real.")
    withdraw_box(token)


def single_trial(token: str, trial) -> None:
    """One image; the answers are "real" and "fake" (shown as Generated)."""
    if cfg.design.presentation == "timed":
        key = f"timed-{_key_safe(token)}-{trial.index}-{ss.get(f'remount-{token}-{trial.index}', 0)}"
        exposure = _exposure_ms(token, trial)
        timed_single(key=key, trial_index=trial.index,
                     image=data_url(study.images.read(trial.image), study.manifest.get(trial.image).format),
                     exposure_ms=exposure, mask_ms=cfg.design.mask_ms, min_window=MIN_WINDOW,
                     on_answer=functools.partial(_answer_timed, token, trial.index, key, exposure))
    else:
        _, middle, _ = st.columns([1, 4, 1])
        with middle:
            st.image(study.images.read(trial.image), width=cfg.design.image_width or "stretch")
            real, fake = st.columns(2, gap="large")
            real.button("Real", key=f"answer-{trial.index}-real", type="primary", width="stretch",
                        on_click=_answer, args=(token, trial.index, "real"), shortcut="Left")
            fake.button("Generated", key=f"answer-{trial.index}-fake", type="primary", width="stretch",
                        on_click=_answer, args=(token, trial.index, "fake"), shortcut="Right")
        answer_keys(key=f"keys-{_key_safe(token)}-{trial.index}", trial_index=trial.index)   # R and G
    st.caption("Keyboard: ← or R: real; → or G: generated.")


def screen_feedback(token: str, state, feedback: dict) -> None:
    trial = state.plan[feedback["index"]]
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
    if main:
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
    if main and main[0]["real_side"] in TRUTHS:   # the stored answers' own design
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
    if not token and cfg.recruitment.store_platform_ids:
        primary = cfg.recruitment.platform_id_params[0]
        platform_id = st.query_params.get(primary)
        existing = store.find_by_platform_id(platform_id) if platform_id else None
        if existing is not None:  # one participant per platform ID: resume, never start over
            token = existing.token
    if token:
        state = store.get_participant(token)
        if state is None:
            st.title(cfg.title)
            st.error("This study link is not valid, or the answers linked to it were withdrawn. "
                     "If you think this is a mistake, contact the researcher.")
            st.caption(f"Contact: {fill(cfg.texts.contact, study)}")
            return
        if st.query_params.get("p") != token:
            st.query_params["p"] = token
        if state.finished:
            screen_debrief(token, state)
        elif state.status == "consented" and state.answered == 0:
            screen_instructions(token)
        else:
            feedback = ss.get("feedback")
            practice_total = sum(t.kind == "practice" for t in state.plan)
            if feedback and feedback["token"] == token and feedback["index"] == state.answered - 1:
                screen_feedback(token, state, feedback)
            elif practice_total and state.answered == practice_total and not ss.get(f"main-intro-{token}"):
                screen_main_intro(token, len(state.plan) - practice_total)
            else:
                screen_trial(token, state)
        return

    if stage == "closed" or not store.is_open():
        st.title(cfg.title)
        st.info(fill(cfg.texts.closed, study))
        return
    if stage == "consent":
        screen_consent()
    else:
        screen_briefing()


try:
    main()
except SQLAlchemyError:
    st.error("The study's database cannot be reached right now. Everything you answered so far is saved: "
             "please reload this page in a minute to continue where you left off.")
