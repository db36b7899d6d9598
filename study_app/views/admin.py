"""Admin page (`/admin`): live counts, per-condition results, open/close, export, deletion by code.
With several studies served, a selector (with each study's counts) picks the study first.

The password comes from the STUDY_ADMIN_PASSWORD environment variable of the server, never from
the config file, and is compared in constant time. Wrong passwords are counted on the server, per
client address and in total (study_app/guard.py): a reload or a new browser does not reset the
lockout, and every failure is logged. A signed-in session ends with "Sign out" or after
IDLE_TIMEOUT_S without a click. Downloads are made when clicked, not on every rerun. Every number
is read fresh from the database. The page sends the password and the data in the clear unless a
TLS proxy stands in front of the server (README).
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
from study_app.guard import IDLE_TIMEOUT_S
from study_app.study import Study
from study_app.views.common import client_address, load_study, open_study, served_studies, sign_in_guard

ss = st.session_state


def _sign_in() -> None:
    expected = os.environ.get(ADMIN_PASSWORD_ENV, "")
    entered = ss.get("admin-password") or ""
    ss["admin-password"] = ""
    address = client_address()
    guard = sign_in_guard()
    wait = guard.wait_seconds(address)
    if wait:
        guard.refused(address, wait)
        return
    if expected and hmac.compare_digest(entered.encode(), expected.encode()):
        guard.succeeded(address)
        ss["admin_ok"] = True
        ss["admin_seen"] = time.monotonic()
        ss.pop("admin_failed", None)
    else:
        guard.failed(address)
        ss["admin_failed"] = True


def _sign_out(reason: str = "") -> None:
    for key in ("admin_ok", "admin_seen"):
        ss.pop(key, None)
    ss["admin_signed_out"] = reason or "You are signed out."


def _delete_by_code(store) -> None:
    code = ss.get("admin-deletion-code", "")
    ss["admin_delete_result"] = store.withdraw_by_code(code).status if code.strip() else None


def sign_in_screen() -> None:
    st.title("Study admin")
    if not os.environ.get(ADMIN_PASSWORD_ENV):
        st.error(f"The admin page is disabled: start the server with the environment variable {ADMIN_PASSWORD_ENV} set.")
        st.stop()
    notice = ss.pop("admin_signed_out", None)
    if notice:
        st.info(notice)
    wait = sign_in_guard().wait_seconds(client_address())
    st.text_input("Admin password", type="password", key="admin-password", disabled=bool(wait))
    st.button("Sign in", type="primary", key="admin-sign-in", on_click=_sign_in, disabled=bool(wait))
    if wait:
        st.error(f"Too many wrong passwords: sign-in is locked for another {wait:.0f} s. Each further failure "
                 "doubles the wait.")
    elif ss.pop("admin_failed", None):
        st.error("Wrong password.")
    st.stop()


def _check_idle() -> None:
    """Sign out a session idle for IDLE_TIMEOUT_S; otherwise note this run as activity."""
    now = time.monotonic()
    if now - ss.get("admin_seen", now) > IDLE_TIMEOUT_S:
        _sign_out(f"You were signed out after {IDLE_TIMEOUT_S // 60} minutes without activity.")
        sign_in_screen()
    ss["admin_seen"] = now


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
    if isinstance(c, stats.PairwiseConditionResult):
        return {"rank": c.rank, "condition": c.condition, "participants": c.participants, "comparisons": c.trials,
                "win rate": f"{c.accuracy:.1%}" if has else "–",
                "win rate 95% CI (Wilson)": f"{c.ci_wilson[0]:.1%}–{c.ci_wilson[1]:.1%}" if has else "–",
                "strength (BT)": round(c.strength, 2) if has else None,
                "strength 95% CI (bootstrap)": f"{c.strength_ci[0]:.2f} to {c.strength_ci[1]:.2f}" if has else "–"}
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
        return load_study(detailed=True), None
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
    # so the report is recomputed only when the answers (or the study) change. Only the participants
    # of the current image manifest are analysed (the page says so when there are others).
    return _study.analyse(rows, fingerprint=_study.manifest_fingerprint)


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
    mismatch = study.fingerprint_problem()
    if mismatch:
        st.error(mismatch + " The results below are those of the current manifest's participants only.")
    report = _analysed(study, (str(study.dir), study.fingerprint), rows)
    counts = store.counts()
    metrics = st.columns(5)
    metrics[0].metric("Started", counts["started"])
    metrics[1].metric("In progress", counts["in_progress"])
    metrics[2].metric("Completed", counts["completed"])
    metrics[3].metric("Withdrawn", counts["withdrawn"])
    metrics[4].metric("Excluded", len(report.excluded), help=report.exclusion_rule)

    removed = report.removed
    if removed["participants"] or removed["incomplete_participants"]:
        st.caption(f"Removed from the analysis: {removed['participants']} participants ({removed['trials']} answers) "
                   f"by the pre-declared rule — {report.exclusion_rule}; {removed['incomplete_participants']} "
                   f"unfinished ({removed['incomplete_trials']} answers).")
    st.subheader("Ranking (Bradley–Terry)" if report.design == "pairwise" else "Results per condition")
    if report.design == "pairwise" and report.ranking is not None:
        st.caption(report.ranking.description)
        st.dataframe(report.ranking.beats_table(), hide_index=True)
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
    last_export = store.last_export()
    since = store.withdrawals_since(last_export)
    if since and last_export is not None:
        numbers = ", ".join(str(w["participant"]) for w in since if w["participant"] is not None)
        st.warning(f"{len(since)} participant(s) withdrew since the last export ({last_export:%Y-%m-%d %H:%M} UTC)"
                   + (f": participant number(s) {numbers}" if numbers else "")
                   + ". Exports made before then still hold their answers: delete their rows from those copies.")
    # Made when clicked (deferred): nothing is built on every rerun, and no file waits under /media/.
    downloads = st.columns(4)
    downloads[0].download_button("Trials CSV", study.export_csv, file_name="trials.csv", mime="text/csv",
                                 key="download-trials", on_click="ignore")
    downloads[1].download_button("Codebook", study.codebook_markdown, file_name="codebook.md",
                                 mime="text/markdown", key="download-codebook", on_click="ignore")
    downloads[2].download_button("Report (text)", lambda: stats.format_report(report), file_name="report.txt",
                                 key="download-report", on_click="ignore")
    downloads[3].download_button("Report (JSON)", lambda: json.dumps(report.to_dict(), indent=1, default=str,
                                                                     allow_nan=False),
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
    if result == "deleted":
        st.success("Deleted.")
    elif result == "already_withdrawn":
        st.info("That deletion code was already used: the participant's answers were deleted before.")
    elif result == "unknown":
        st.error("No participant has ever had that deletion code: check it for typing mistakes.")


if not ss.get("admin_ok"):
    sign_in_screen()
_check_idle()
st.button("Sign out", key="admin-sign-out", on_click=_sign_out)
dashboard(*choose_study())
