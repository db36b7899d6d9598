"""In-browser trial component (design.presentation = "timed"), built on st.components.v2.

Streamlit draws from the server, so it cannot time what the participant sees. This component does
the timing in the browser: the images (two in the paired design, one in the single-image design)
are preloaded and decoded, attached on the same animation frame, optionally hidden after
`exposure_ms` (then a noise mask for `mask_ms`), and the response time is measured with
performance.now() from the first frame the trial was on screen. Window blur and tab switches during
the trial are counted. With a minimum window size (design.min_window_width / _height) a trial does
not start, images hidden and buttons disabled, until the window is large enough (checked on
`resize`). One answer per trial: the component locks itself after the first click or key press,
and the server still accepts only the current trial.

A second, invisible component (`answer_keys`) gives the single design's Streamlit buttons the R and
G keys: st.button takes one shortcut per button, and Streamlit reserves R for itself.
"""
from __future__ import annotations

import base64
from importlib import resources

import streamlit as st

ASSETS = resources.files("study_app") / "assets"   # shipped as package data (pyproject.toml)
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "BMP": "image/bmp", "GIF": "image/gif"}

# Tuples, not lists or dicts, as values of the components' data: Streamlit checks list and dict values
# for dataframes, which imports pandas (~0.3 s) when the first trial of a server process is drawn.
PAIRED_CHOICES = ({"value": "left", "label": "Left is real (←)", "keys": ("ArrowLeft", "f", "F")},
                  {"value": "right", "label": "Right is real (→)", "keys": ("ArrowRight", "j", "J")})
SINGLE_CHOICES = ({"value": "real", "label": "Real (← or R)", "keys": ("ArrowLeft", "r", "R")},
                  {"value": "fake", "label": "Generated (→ or G)", "keys": ("ArrowRight", "g", "G")})


COMPONENT_NAME = "study_app_timed_pair"


def _asset(name: str) -> str:
    """The text of a file in study_app/assets/ (the components' JavaScript and CSS)."""
    return (ASSETS / name).read_text(encoding="utf-8")


@st.cache_resource(show_spinner=False)
def _component():
    # Registered once per server process: registering the same name again only logs a warning.
    return st.components.v2.component(COMPONENT_NAME, css=_asset("timed_trial.css"), js=_asset("timed_trial.js"))


@st.cache_resource(show_spinner=False)
def _keys_component():
    return st.components.v2.component("study_app_answer_keys", js=_asset("answer_keys.js"))


def data_url(data: bytes, image_format: str) -> str:
    return f"data:{_MIME.get(image_format.upper(), 'application/octet-stream')};base64,{base64.b64encode(data).decode()}"


def trial_data(*, trial_index: int, images: tuple[str, ...], exposure_ms: int, mask_ms: int,
               min_window: tuple[int, int] = (0, 0)) -> dict:
    """What the component gets for one trial: one image (single design) or two (paired).
    min_window = (width, height) in CSS px the window must reach before the trial starts; 0 = no limit."""
    paired = len(images) == 2
    return {"trial": trial_index, "images": tuple(images), "choices": PAIRED_CHOICES if paired else SINGLE_CHOICES,
            "prompt": "Which one was real?" if paired else "Real or generated?",
            "loading": "Loading the images…" if paired else "Loading the image…",
            "exposure_ms": exposure_ms, "mask_ms": mask_ms,
            "min_width": min_window[0], "min_height": min_window[1]}


def timed_pair(*, key: str, trial_index: int, left: str, right: str, exposure_ms: int, mask_ms: int, on_answer,
               min_window: tuple[int, int] = (0, 0)) -> None:
    """Mount the component for one pair; on_answer() runs when the participant answers."""
    _component()(key=key, data=trial_data(trial_index=trial_index, images=(left, right), exposure_ms=exposure_ms,
                                          mask_ms=mask_ms, min_window=min_window),
                 on_answer_change=on_answer, height="content")


def timed_single(*, key: str, trial_index: int, image: str, exposure_ms: int, mask_ms: int, on_answer,
                 min_window: tuple[int, int] = (0, 0)) -> None:
    """Mount the component for one image (single design); on_answer() runs when the participant answers."""
    _component()(key=key, data=trial_data(trial_index=trial_index, images=(image,), exposure_ms=exposure_ms,
                                          mask_ms=mask_ms, min_window=min_window),
                 on_answer_change=on_answer, height="content")


def window_requirement(min_width: int, min_height: int) -> str:
    """The minimum window in words ("" when there is none), e.g. "at least 1024×700 px"."""
    if min_width and min_height:
        return f"at least {min_width}×{min_height} px"
    if min_width:
        return f"at least {min_width} px wide"
    return f"at least {min_height} px tall" if min_height else ""


def answer_keys(*, key: str, trial_index: int) -> None:
    """R / G for the single design's Real / Generated buttons of this trial."""
    _keys_component()(key=key, data={"trial": trial_index, "real_keys": ("r", "R"), "fake_keys": ("g", "G")})


def answer_payload(key: str) -> dict | None:
    """The component's last answer for this key (inside the on_answer callback)."""
    state = st.session_state.get(key)
    if state is None:
        return None
    value = state.get("answer") if hasattr(state, "get") else getattr(state, "answer", None)
    return value if isinstance(value, dict) else None
