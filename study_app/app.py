"""Streamlit entry point. Host a study with `study-app serve STUDY_DIR` (it runs `streamlit run` on
this file). Participants use the root URL (`/?p=TOKEN` once they consent); researchers use `/admin`.
With several study dirs, every URL adds `study=NAME` (the dir's basename)."""
from pathlib import Path

import streamlit as st

from study_app.views.common import page_study

_VIEWS = Path(__file__).parent / "views"

study = page_study()   # None: several studies served and the URL names none (the pages say what to do)
title = study.config.title if study else "Study"
st.set_page_config(page_title=title, page_icon="🖼️", layout="centered",
                   menu_items={"Get help": None, "Report a bug": None, "About": title})
page = st.navigation(
    [st.Page(_VIEWS / "participant.py", title="Study", default=True),
     st.Page(_VIEWS / "admin.py", title="Admin", url_path="admin")],
    position="hidden",  # participants never see a link to the admin page
)
page.run()
