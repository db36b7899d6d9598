"""What both pages share: finding the study dir and one Study (engine, images) per server process."""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import streamlit as st
from PIL import Image, ImageOps
from sqlalchemy.exc import SQLAlchemyError

from ..config import CONFIG_FILENAME, MANIFEST_FILENAME, ConfigError
from ..manifest import ManifestError
from ..study import DB_URL_ENV, STUDY_DIR_ENV, Study


def study_dir() -> Path | None:
    """`study-app serve` sets STUDY_APP_DIR; `streamlit run app.py -- STUDY_DIR` works too."""
    value = os.environ.get(STUDY_DIR_ENV) or next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    return Path(value).resolve() if value else None


@st.cache_resource(show_spinner=False, max_entries=4)
def _cached_study(directory: str, db_url: str | None, stamp: tuple) -> Study:
    # Shared by every session of this server: Study, its engine and image cache are thread-safe.
    # `stamp` (file modification times) makes an edited config take effect without a restart.
    return Study(directory, db_url)


def load_study() -> Study:
    """The study of this server, or an error message and st.stop()."""
    directory = study_dir()
    if directory is None:
        st.error(f"No study dir given: start the app with `study-app serve STUDY_DIR` (or set {STUDY_DIR_ENV}).")
        st.stop()
    try:
        stamp = tuple((directory / name).stat().st_mtime_ns for name in (CONFIG_FILENAME, MANIFEST_FILENAME))
        return _cached_study(str(directory), os.environ.get(DB_URL_ENV) or None, stamp)
    except FileNotFoundError:
        st.error(f"{directory} is not a study dir (no {CONFIG_FILENAME} / {MANIFEST_FILENAME}). "
                 "Create one with `study-app init`.")
    except (ConfigError, ManifestError) as exc:
        st.error(f"The study cannot start: {exc}")
    except SQLAlchemyError as exc:
        st.error(f"The response database cannot be opened: {exc.__class__.__name__}: {exc}")
    st.stop()


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
