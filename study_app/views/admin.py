"""Admin page (`/admin`): live counts, per-condition results, open/close, export, deletion by code.
With several studies served, a selector (with each study's counts) picks the study first.

The password comes from the STUDY_ADMIN_PASSWORD environment variable of the server, never from
the config file, and is compared in constant time. Every number is read fresh from the database.
"""
from __future__ import annotations

import hmac
import json
import os
import time
from urllib.parse import quote_plus

import streamlit as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from study_app import stats
from study_app.config import ADMIN_PASSWORD_ENV, design_text_warnings
from study_app.study import Study
from study_app.views.common import load_study, open_study, served_studies

MAX_FAILURES = 5
LOCKOUT_SECONDS = 60

ss = st.session_state


def _sign_in() -> None:
    expected = os.environ.get(ADMIN_PASSWORD_ENV, "")
    entered = ss.get("admin-password") or ""
    if time.monotonic() < ss.get("admin_locked_until", 0):
        return
    if expected and hmac.compare_digest(entered.encode(), expected.encode()):
        ss["admin_ok"] = True
        ss["admin_failures"] = 0
    else:
        ss["admin_failures"] = ss.get("admin_failures", 0) + 1
        if ss["admin_failures"] >= MAX_FAILURES:  # slow down guessing from one session
            ss["admin_locked_until"] = time.monotonic() + LOCKOUT_SECONDS
    ss["admin-password"] = ""


def _delete_by_code(store) -> None:
    code = ss.get("admin-deletion-code", "")
    ss["admin_delete_result"] = store.withdraw_by_code(code) if code.strip() else None


def sign_in_screen() -> None:
    st.title("Study admin")
    if not os.environ.get(ADMIN_PASSWORD_ENV):
        st.error(f"The admin page is disabled: start the server with the environment variable {ADMIN_PASSWORD_ENV} set.")
        st.stop()
    locked = time.monotonic() < ss.get("admin_locked_until", 0)
    st.text_input("Admin password", type="password", key="admin-password", disabled=locked)
    st.button("Sign in", type="primary", key="admin-sign-in", on_click=_sign_in, disabled=locked)
    if locked:
        st.error(f"Too many wrong passwords: wait {LOCKOUT_SECONDS} s.")
    elif ss.get("admin_failures"):
        st.error("Wrong password.")
    st.stop()


def _condition_row(c) -> dict:
    """One row of the per-condition table (paired, or single-image with its extra columns)."""
    has = bool(c.trials)
    row = {
        "condition": c.condition, "participants": c.participants, "trials": c.trials,
        "accuracy": f"{c.accuracy:.1%}" if has else "–",
        "exact 95% CI": f"{c.ci_exact[0]:.1%}–{c.ci_exact[1]:.1%}" if has else "–",
        "bootstrap 95% CI": f"{c.ci_bootstrap[0]:.1%}–{c.ci_bootstrap[1]:.1%}" if has else "–",
        "p (adjusted)": round(c.p_value_adjusted, 4) if has else None,
        "TOST p (adjusted)": round(c.tost_p_adjusted, 4) if has else None,
        "d′": round(c.dprime, 2) if has else None,
    }
    if isinstance(c, stats.SingleConditionResult):
        def rate(value, ci, k, n):
            return f"{value:.1%} ({k}/{n}; {ci[0]:.1%}–{ci[1]:.1%})" if n else "–"
        row.update({
            "real error": rate(c.real_error, c.real_error_ci_bootstrap, c.real_judged_fake, c.real_trials),
            "fool rate": rate(c.fake_error, c.fake_error_ci_bootstrap, c.fake_judged_real, c.fake_trials),
            "c": round(c.criterion_c, 2) if has else None,
        })
    return row


def choose_study() -> tuple[Study, str | None]:
    """The study to show and its name: the only one, or (several served) the one picked in a
    selector listing every study with its live counts, preselected from `?study=NAME`."""
    studies = served_studies()
    if len(studies) == 1:
        return load_study(), None
    st.set_page_config(layout="wide")
    opened = {name: open_study(path) for name, path in studies.items()}

    def label(name: str) -> str:
        study = opened[name]
        if isinstance(study, str):
            return f"{name} — cannot be opened"
        try:
            counts = study.store.counts()
        except SQLAlchemyError:
            return f"{name} — {study.config.title} · database unreachable"
        return (f"{name} — {study.config.title} · {counts['started']} started / {counts['completed']} completed / "
                f"{counts['withdrawn']} withdrawn")

    labels = {name: label(name) for name in studies}   # read fresh on every run
    names = list(studies)
    wanted = st.query_params.get("study")
    name = st.selectbox("Study", names, index=names.index(wanted) if wanted in names else 0,
                        format_func=labels.get, key="admin-study")
    if st.query_params.get("study") != name:
        st.query_params["study"] = name   # the address names the study shown (bookmarks, page title)
    if isinstance(opened[name], str):
        st.error(opened[name])
        st.stop()
    return opened[name], name


@st.cache_data(show_spinner="Analysing the answers…", max_entries=32)
def _analysed(_study: Study, study_key: tuple, rows: list[dict]) -> stats.StudyReport:
    # Every click reruns this page; the bootstrap and the mixed model take seconds on a large study,
    # so the report is recomputed only when the answers (or the study) change.
    return _study.analyse(rows)


def dashboard(study: Study, name: str | None = None) -> None:
    """The dashboard of one study (name: its `?study=` value when several are served)."""
    cfg, store = study.config, study.store
    st.set_page_config(layout="wide")  # tables and export buttons want the room; participants keep "centered"
    st.title(f"Admin — {cfg.title}")
    st.caption(f"Study dir `{study.dir}` · database `{make_url(study.db_url).render_as_string(hide_password=True)}` · "
               f"fingerprint `{study.fingerprint}`")
    is_open = store.is_open()
    status, toggle = st.columns([3, 1])
    status.markdown(f"**Status:** {'OPEN to new participants' if is_open else 'CLOSED to new participants'} "
                    "(participants already started can always finish)")
    toggle.button("Close study" if is_open else "Open study", key="toggle-open",
                  on_click=store.set_open, args=(not is_open,))
    st.button("Refresh", key="refresh")

    rows = store.trial_rows()
    report = _analysed(study, (str(study.dir), study.fingerprint), rows)
    counts = store.counts()
    metrics = st.columns(5)
    metrics[0].metric("Started", counts["started"])
    metrics[1].metric("In progress", counts["in_progress"])
    metrics[2].metric("Completed", counts["completed"])
    metrics[3].metric("Withdrawn", counts["withdrawn"])
    metrics[4].metric("Excluded", len(report.excluded), help=report.exclusion_rule)

    st.subheader("Results per condition")
    if report.design == "single":
        st.caption("Single-image design: accuracy = images classified correctly; real error = real images judged "
                   "generated; fool rate = generated images judged real (95% bootstrap CIs over participants); "
                   "d′ = z(H) − z(F) and c (> 0: bias toward 'generated'), log-linear corrected.")
    st.dataframe([_condition_row(c) for c in report.conditions], hide_index=True)
    st.info(report.verdict)
    for c in report.conditions:
        st.markdown(f"**{c.condition}:** {c.verdict}")
    fakes = [s for s in report.images if s.role == "fake"]
    if fakes:
        with st.expander(f"Per-image fool rates ({sum(s.undersampled for s in fakes)} of {len(fakes)} fakes under-sampled)"):
            top = sorted(fakes, key=lambda s: -s.shrunk_rate)[:6]
            st.image([study.images.read(s.image) for s in top], width=96,
                     caption=[f"{s.judged_real}/{s.views} fooled" for s in top])
            st.dataframe([{"image": s.image, "condition": s.condition, "views": s.views, "fooled": s.judged_real,
                           "fool rate": round(s.rate, 3), "Wilson 95% CI": f"{s.ci_low:.2f}–{s.ci_high:.2f}",
                           "shrunk rate": round(s.shrunk_rate, 3), "under-sampled": s.undersampled}
                          for s in sorted(fakes, key=lambda s: -s.shrunk_rate)], hide_index=True)
    with st.expander("Full statistics report"):
        st.code(stats.format_report(report), language=None)
    if study.manifest.warnings:
        with st.expander(f"Image-set warnings ({len(study.manifest.warnings)})"):
            for w in study.manifest.warnings:
                st.warning(w)
    for w in design_text_warnings(cfg):
        st.warning(w)

    st.subheader("Export")
    downloads = st.columns(4)
    downloads[0].download_button("Trials CSV", study.export_csv(), file_name="trials.csv", mime="text/csv",
                                 key="download-trials", on_click="ignore")
    downloads[1].download_button("Codebook", study.codebook_markdown(), file_name="codebook.md",
                                 mime="text/markdown", key="download-codebook", on_click="ignore")
    downloads[2].download_button("Report (text)", stats.format_report(report), file_name="report.txt",
                                 key="download-report", on_click="ignore")
    downloads[3].download_button("Report (JSON)", json.dumps(report.to_dict(), indent=1, default=str, allow_nan=False),
                                 file_name="report.json", mime="application/json", key="download-json",
                                 on_click="ignore")

    st.subheader("Recruitment")
    params = "&".join(([f"study={quote_plus(name)}"] if name else [])
                      + [f"{k}={{{{%{k}%}}}}" for k in cfg.recruitment.platform_id_params])
    where = f"`https://YOUR-HOST/?study={quote_plus(name)}`" if name else "this server's root address"
    st.markdown(f"Send participants to {where}; each gets a personal resume link after "
                f"consenting. For Prolific: `https://YOUR-HOST/?{params}`"
                + ("" if cfg.recruitment.store_platform_ids else
                   " (platform IDs are **not stored**: set recruitment.store_platform_ids to keep them)."))

    st.subheader("Delete a participant's answers")
    st.text_input("Deletion code (from the participant)", key="admin-deletion-code")
    st.button("Delete", key="admin-delete", on_click=_delete_by_code, args=(store,))
    result = ss.pop("admin_delete_result", None)
    if result is True:
        st.success("Deleted.")
    elif result is False:
        st.error("No participant has that deletion code.")


if not ss.get("admin_ok"):
    sign_in_screen()
dashboard(*choose_study())
