"""Trial rows as `StudyStore.trial_rows` gives them (keys participant, participant_status,
trial_kind, condition, real_image, fake_image, real_side, chosen_side, correct, rt_ms, ...): which
design a row belongs to, and which participants the pre-declared exclusion rule removes."""
from __future__ import annotations

from typing import Iterable

import numpy as np


def is_single_row(row: dict) -> bool:
    """A trial row of the single-image design (real_side holds the correct answer, "real" or "fake")."""
    return row["real_side"] in ("real", "fake")


def is_pairwise_row(row: dict) -> bool:
    """A main or practice trial row of the pairwise design (two conditions, no right answer)."""
    return bool(row.get("left_condition"))


def row_design(row: dict) -> str:
    """"single", "pairwise" or "paired". A pairwise study's attention checks are paired-design rows
    (a real image against its scrambled copy)."""
    return "single" if is_single_row(row) else "pairwise" if is_pairwise_row(row) else "paired"


def exclusion_rule_text(min_attention: float, min_rt_ms: int) -> str:
    parts = [f"fewer than {min_attention:.0%} of attention checks correct"]
    if min_rt_ms:
        parts.append(f"a median main-trial response time under {min_rt_ms} ms (the browser's time where the "
                     "server's bounds it; too fast for a considered look at the images)")
    return "exclude participants with " + " or ".join(parts)


def exclusions(rows: Iterable[dict], *, min_attention_correct: float, exclude_median_rt_below_ms: int = 0) -> dict[int, str]:
    """Participants excluded by the pre-declared rule, with the reason."""
    attention: dict[int, list[bool]] = {}
    rts: dict[int, list[float]] = {}
    for r in rows:
        pid = r["participant"]
        if r["trial_kind"] == "attention":
            attention.setdefault(pid, []).append(bool(r["correct"]))
        elif r["trial_kind"] == "main":
            rt = rt_used(r)
            if rt is not None:
                rts.setdefault(pid, []).append(float(rt))
    out = {}
    for pid, answers in attention.items():
        share = sum(answers) / len(answers)
        if share + 1e-12 < min_attention_correct:
            out[pid] = f"attention checks {sum(answers)}/{len(answers)} correct"
    if exclude_median_rt_below_ms:
        for pid, values in rts.items():
            median = float(np.median(values))
            if pid not in out and median < exclude_median_rt_below_ms:
                out[pid] = f"median response time {median:.0f} ms"
    return out



# The browser measures from the first frame showing the trial to the click; the server from drawing
# the trial to receiving the answer, which contains that interval. A browser RT longer than the
# server's by more than this slack (timer granularity, rounding) cannot be true.
CLIENT_RT_SLACK_MS = 50.0


def timing_check(rt_ms: float | None, client_rt_ms: float | None, exposure_ms: float | None = None
                 ) -> tuple[float | None, str]:
    """(response time to use, flags) of one answer. The browser's RT is used when the server's bounds
    it (it is the more precise clock), else the server's. Flags, ';'-separated: client_rt_above_server
    (the browser claims more time than the server saw: a patched or broken clock), exposure_above_rt
    (the reported exposure is longer than the response)."""
    flags = []
    used = client_rt_ms if client_rt_ms is not None else rt_ms
    if client_rt_ms is not None and rt_ms is not None and client_rt_ms > rt_ms + CLIENT_RT_SLACK_MS:
        flags.append("client_rt_above_server")
        used = rt_ms
    if exposure_ms is not None and client_rt_ms is not None and exposure_ms > client_rt_ms + 1:
        flags.append("exposure_above_rt")
    return used, ";".join(flags)


def rt_used(row: dict) -> float | None:
    """The response time the too-fast gate and the exclusion rule use for a stored row (timing_check)."""
    return timing_check(row.get("rt_ms"), row.get("client_rt_ms"), row.get("exposure_ms"))[0]
