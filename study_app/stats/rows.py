"""Trial rows as `StudyStore.trial_rows` gives them (keys participant, participant_status,
trial_kind, condition, real_image, fake_image, real_side, chosen_side, correct, rt_ms, ...): which
design a row belongs to, and which participants the pre-declared exclusion rule removes."""
from __future__ import annotations

from typing import Iterable

import numpy as np


def is_single_row(row: dict) -> bool:
    """A trial row of the single-image design (real_side holds the correct answer, "real" or "fake")."""
    return row["real_side"] in ("real", "fake")


def exclusion_rule_text(min_attention: float, min_rt_ms: int) -> str:
    parts = [f"fewer than {min_attention:.0%} of attention checks correct"]
    if min_rt_ms:
        parts.append(f"median response time under {min_rt_ms} ms")
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
            rt = r.get("client_rt_ms") if r.get("client_rt_ms") is not None else r.get("rt_ms")  # browser timing first
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

