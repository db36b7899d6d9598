"""What both pages share: finding the study dir, one Study (engine, images) and the server-side
guards per server process. What goes wrong is written to the server log in full; participants see
only that the study is unavailable (database hosts, users and drivers are none of their business)."""
from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st
from PIL import Image, ImageOps
from sqlalchemy.exc import SQLAlchemyError

from ..config import CONFIG_FILENAME, MANIFEST_FILENAME, ConfigError
from ..guard import RateLimiter, SignInGuard
from ..manifest import ManifestError
from ..study import DB_URL_ENV, STUDY_DIR_ENV, Study, study_names

log = logging.getLogger("study_app")
PARTICIPANT_ERROR = ("The study cannot be opened right now. Please try again in a few minutes; if it still does "
                     "not open, contact the researcher.")


def study_dirs() -> list[Path]:
    """`study-app serve` sets STUDY_APP_DIR (several dirs joined with os.pathsep);
    `streamlit run app.py -- STUDY_DIR [STUDY_DIR ...]` works too."""
    value = os.environ.get(STUDY_DIR_ENV)
    if value:
        # A single existing dir is taken whole, even if its path contains os.pathsep.
        values = [value] if Path(value).is_dir() else value.split(os.pathsep)
    else:
        values = [a for a in sys.argv[1:] if not a.startswith("-")]
    return [Path(v).resolve() for v in values if v]


# Which stamp each (dir, db_url) was last opened with, so an edited config's old Study is dropped.
_stamps: dict[tuple[str, str | None], tuple] = {}


@st.cache_resource(show_spinner=False, max_entries=None)
def _cached_study(directory: str, db_url: str | None, stamp: tuple) -> Study:
    # Shared by every session of this server: Study, its engine and image cache are thread-safe.
    # `stamp` (file modification times) makes an edited config take effect without a restart.
    # No max_entries: every served study must stay cached (open_study evicts superseded stamps).
    return Study(directory, db_url)


def served_studies() -> dict[str, Path]:
    """{name: dir} of the studies this server hosts (name: the dir's basename, the `?study=` value),
    or an error message and st.stop()."""
    directories = study_dirs()
    if not directories:
        st.error(f"No study dir given: start the app with `study-app serve STUDY_DIR` (or set {STUDY_DIR_ENV}).")
        st.stop()
    try:
        return study_names(directories)
    except ConfigError as exc:   # `study-app serve` checks this first; only a hand-started server gets here
        log.error("the studies cannot start: %s", exc)
        st.error(PARTICIPANT_ERROR)
        st.stop()


@st.cache_resource(show_spinner=False)
def sign_in_guard() -> SignInGuard:
    """The server's one admin guard (the admin page serves every study of the server)."""
    return SignInGuard()


@st.cache_resource(show_spinner=False)
def participant_limiter(_study_key: str) -> RateLimiter:
    """The new-participant limiter of one study (keyed by its fingerprint)."""
    return RateLimiter()


def client_address() -> str | None:
    """The participant's or researcher's address as Streamlit sees the connection (None on localhost,
    and behind a reverse proxy the proxy's)."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None


def open_study(directory: Path) -> Study | str:
    """The shared Study of one study dir, or a message (for the researcher) saying why it cannot be
    opened; the message and its cause are also logged."""
    result = _open_study(directory)
    if isinstance(result, str):
        log.error("study %s cannot be opened: %s", directory, result)
    return result


def _open_study(directory: Path) -> Study | str:
    db_url = os.environ.get(DB_URL_ENV) or None
    try:
        stamp = tuple((directory / name).stat().st_mtime_ns for name in (CONFIG_FILENAME, MANIFEST_FILENAME))
        previous = _stamps.get((str(directory), db_url))
        if previous is not None and previous != stamp:
            _cached_study.clear(str(directory), db_url, previous)
        _stamps[(str(directory), db_url)] = stamp
        return _cached_study(str(directory), db_url, stamp)
    except FileNotFoundError:
        return (f"{directory} is not a study dir (no {CONFIG_FILENAME} / {MANIFEST_FILENAME}). "
                "Create one with `study-app init`.")
    except (ConfigError, ManifestError) as exc:
        return f"The study cannot start: {exc}"
    except SQLAlchemyError as exc:
        log.exception("the response database of %s cannot be opened", directory)
        return f"The response database cannot be opened: {exc.__class__.__name__}: {exc}"


def requested_study_dir() -> Path | None:
    """The dir of the study this page is for: the only one, or (several served) the one the `study`
    query parameter names; None when it names none of them."""
    studies = served_studies()
    if len(studies) == 1:
        return next(iter(studies.values()))
    return studies.get(st.query_params.get("study", ""))


def load_study(detailed: bool = False) -> Study:
    """The study of this page, or an error message and st.stop(): the reason itself only when
    `detailed` (a signed-in researcher), otherwise a generic one (the reason is in the server log)."""
    directory = requested_study_dir()
    if directory is None:
        # Several studies and no (known) name: never list the others, participants must not browse them.
        st.error("This link is incomplete or out of date: use the exact link you were given.")
        st.stop()
    study = open_study(directory)
    if isinstance(study, str):
        st.error(study if detailed else PARTICIPANT_ERROR)
        st.stop()
    return study


def page_study() -> Study | None:
    """The study for the page title; None where several are served and the URL names none that
    opens (the page itself then says what is wrong)."""
    if len(served_studies()) == 1:
        directory = requested_study_dir()
        study = open_study(directory)
        return study if isinstance(study, Study) else None
    directory = requested_study_dir()
    study = open_study(directory) if directory is not None else None
    return study if isinstance(study, Study) else None


def study_link(**params) -> str:
    """A relative link to this page with `params` that keeps the `study` parameter, if any."""
    study = st.query_params.get("study")
    return "?" + urlencode({"study": study, **params} if study else params)


def fill(text: str, study: Study) -> str:
    """Fill the {minutes}/{practice}/{trials} placeholders; other braces in a researcher's text stay."""
    cfg = study.config
    values = {"minutes": cfg.minutes(), "practice": cfg.design.practice_trials,
              "trials": cfg.main_trials_per_participant() + cfg.design.attention_checks}
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


@st.cache_data(show_spinner=False, max_entries=2000)
def pair_thumbnail(_study_key: str, left: bytes, right: bytes, real_side: str, height: int = 96) -> bytes:
    """Both images of a pair side by side, the real one framed green (debrief and practice feedback)."""
    tiles = []
    for data, is_real in ((left, real_side == "left"), (right, real_side == "right")):
        img = Image.open(io.BytesIO(data)).convert("RGB")
        img = img.resize((max(1, round(img.width * height / img.height)), height))
        tiles.append(ImageOps.expand(img, border=5, fill=(22, 160, 60) if is_real else (210, 210, 210)))
    out = Image.new("RGB", (tiles[0].width + tiles[1].width + 8, max(t.height for t in tiles)), "white")
    out.paste(tiles[0], (0, 0))
    out.paste(tiles[1], (tiles[0].width + 8, 0))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


@st.cache_data(show_spinner=False, max_entries=2000)
def image_thumbnail(_study_key: str, data: bytes, is_real: bool, height: int = 96) -> bytes:
    """One image framed green if real, red if generated (single design: debrief and practice feedback)."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img = img.resize((max(1, round(img.width * height / img.height)), height))
    out = ImageOps.expand(img, border=5, fill=(22, 160, 60) if is_real else (200, 50, 40))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
