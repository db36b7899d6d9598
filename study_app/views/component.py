"""The in-browser trial component (study_app/assets/trial.js), built on st.components.v2, for every
design and presentation.

Streamlit draws from the server, so it can neither time what the participant sees nor show an image
without re-encoding it (st.image turns RGB images into JPEGs and resizes wide ones). This component
gets each image's original bytes as a data: URL with the manifest's MIME type, so real and
generated images reach the browser the same way; preloads and decodes them; attaches them on one
animation frame at an integer multiple of their size in device pixels; measures the response time
with performance.now() from the first frame they are on screen; refuses (and counts) answers sooner
than design.min_response_ms; takes a key only when pressed anew; optionally hides the images after
`exposure_ms` behind a noise mask ("timed" presentation); counts focus losses; and holds the trial
back until the window is large enough. One answer per trial: the component locks itself after the
first accepted answer, and the server still accepts only the current trial.

A second, invisible component (connection.js) replaces Streamlit's connection-error box with a
notice that the study is briefly unavailable and the answers are saved.
"""
from __future__ import annotations

import base64
from importlib import resources

import streamlit as st

from study_app.manifest import MIME_TYPES

ASSETS = resources.files("study_app") / "assets"   # shipped as package data (pyproject.toml)

# Tuples, not lists or dicts, as values of the components' data: Streamlit checks list and dict values
# for dataframes, which imports pandas (~0.3 s) when the first trial of a server process is drawn.
PAIRED_CHOICES = ({"value": "left", "label": "Left is real (←)", "keys": ("ArrowLeft", "f", "F")},
                  {"value": "right", "label": "Right is real (→)", "keys": ("ArrowRight", "j", "J")})
PAIRWISE_CHOICES = ({"value": "left", "label": "Left looks more real (←)", "keys": ("ArrowLeft", "f", "F")},
                    {"value": "right", "label": "Right looks more real (→)", "keys": ("ArrowRight", "j", "J")})
SINGLE_CHOICES = ({"value": "real", "label": "Real (← or R)", "keys": ("ArrowLeft", "r", "R")},
                  {"value": "fake", "label": "Generated (→ or G)", "keys": ("ArrowRight", "g", "G")})
CHOICES = {"paired": PAIRED_CHOICES, "pairwise": PAIRWISE_CHOICES, "single": SINGLE_CHOICES}
PROMPTS = {"paired": "Which one was real?", "pairwise": "Which one looked more real?", "single": "Real or generated?"}

COMPONENT_NAME = "study_app_trial"
CONNECTION_COMPONENT_NAME = "study_app_connection"


def _asset(name: str) -> str:
    """The text of a file in study_app/assets/ (the components' JavaScript and CSS)."""
    return (ASSETS / name).read_text(encoding="utf-8")


@st.cache_resource(show_spinner=False)
def _component():
    # Registered once per server process: registering the same name again only logs a warning.
    return st.components.v2.component(COMPONENT_NAME, css=_asset("trial.css"), js=_asset("trial.js"))


@st.cache_resource(show_spinner=False)
def _connection_component():
    return st.components.v2.component(CONNECTION_COMPONENT_NAME, js=_asset("connection.js"))


def data_url(data: bytes, image_format: str) -> str:
    """The image's bytes, unchanged, as a data: URL with its format's MIME type."""
    mime = MIME_TYPES.get(image_format.upper(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def trial_texts(unit: str) -> dict:
    """What the component says, in the participant's words (unit: "image" or "images")."""
    both = "both images" if unit == "images" else "the image"
    return {"loading": f"Loading the {unit}…", "saving": "Saving…",
            "too_fast": f"That was very fast — please look at {both}, then choose.",
            "too_small": "Please enlarge your browser window to at least {need} (it is now {now}). "
                         "The trial starts as soon as it is large enough.",
            "refuse_small": f"Your window ({{now}}) is too small to show the {unit} at full size: please enlarge "
                            "it, or take part on a computer. The trial starts as soon as it fits.",
            "load_error": f"The {unit} could not be loaded. Please reload the page."}


def trial_data(*, trial_index: int, design: str, images: tuple[tuple[str, int, int], ...], exposure_ms: int = 0,
               mask_ms: int = 0, min_window: tuple[int, int] = (0, 0), min_response_ms: int = 0,
               max_px: int = 0, image_filter: str = "nearest", narrow: str = "fit", notice: str = "") -> dict:
    """What the component gets for one trial: the image(s) as (data URL, width, height), one (single
    design) or two (paired, pairwise). min_window = (width, height) in CSS px the window must reach
    before the trial starts (0 = no limit); max_px caps the displayed size (0 = none); `notice` is
    shown in the notice line from the start."""
    return {"trial": trial_index, "images": tuple({"src": src, "width": w, "height": h} for src, w, h in images),
            "choices": CHOICES[design], "prompt": PROMPTS[design], "exposure_ms": exposure_ms, "mask_ms": mask_ms,
            "min_width": min_window[0], "min_height": min_window[1], "min_response_ms": min_response_ms,
            "max_px": max_px, "filter": image_filter, "narrow": narrow, "notice": notice,
            "texts": trial_texts("image" if len(images) == 1 else "images")}


def trial_component(*, key: str, data: dict, on_answer) -> None:
    """Mount the component for one trial; on_answer() runs when the participant answers."""
    _component()(key=key, data=data, on_answer_change=on_answer, height="content")


def connection_watch() -> None:
    """The 'briefly unavailable' notice while the server cannot be reached."""
    _connection_component()(key="study-connection", data={
        "title": "The study is briefly unavailable",
        "body": "Everything you have answered so far is saved. This page reconnects by itself; if it has not "
                "come back within a minute, reload it: your personal link continues where you left off.",
        "every_ms": 2000, "timeout_ms": 1500, "failures": 2})


def window_requirement(min_width: int, min_height: int) -> str:
    """The minimum window in words ("" when there is none), e.g. "at least 1024×700 px"."""
    if min_width and min_height:
        return f"at least {min_width}×{min_height} px"
    if min_width:
        return f"at least {min_width} px wide"
    return f"at least {min_height} px tall" if min_height else ""


def answer_payload(key: str) -> dict | None:
    """The component's last answer for this key (inside the on_answer callback)."""
    state = st.session_state.get(key)
    if state is None:
        return None
    value = state.get("answer") if hasattr(state, "get") else getattr(state, "answer", None)
    return value if isinstance(value, dict) else None
