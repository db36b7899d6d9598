"""HYPE_time statistics for studies with the adaptive exposure staircase (design.staircase = true).

Per condition, each participant's threshold is the modal exposure over their main trials in that
condition (the exposure each trial was shown at: responses.target_exposure_ms). When two or more
exposures are equally common the smaller one is taken: a smaller threshold means the fakes were
told apart at shorter exposures, so ties never flatter the model. The condition's score is the mean
threshold over participants, with a percentile interval from resampling participants (as HYPE
does). A higher threshold means people needed longer looks to tell the fakes from real images;
a condition at the floor (staircase_min_ms) was easy to tell apart even at the shortest exposure.

Only rows that carry a target exposure count, so a study without the staircase (or answers given
before it was switched on) yields no thresholds. Pure functions of the trial rows
(StudyStore.trial_rows); `analysis.analyse` adds them to the report.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Collection, Iterable, Sequence

import numpy as np

from ..config import Design
from ..staircase import next_exposure, stored_answers
from .resampling import bootstrap_ratio


@dataclass(frozen=True)
class HypeTimeResult:
    condition: str
    participants: int                   # with at least one main trial at a recorded exposure
    trials: int
    mean_threshold_ms: float            # HYPE_time score: mean over participants of their modal exposure
    ci_bootstrap: tuple[float, float]   # participants resampled
    median_threshold_ms: float
    at_floor: int | None                # participants whose threshold is the staircase floor (None: floor not given)
    thresholds: dict[int, int] = field(default_factory=dict)   # participant -> threshold (ms)


def modal_exposure(exposures: Iterable[float]) -> int:
    """The most common exposure; ties go to the smallest (see the module docstring)."""
    counts = Counter(int(round(e)) for e in exposures)
    if not counts:
        raise ValueError("no exposures: a threshold needs at least one trial")
    top = max(counts.values())
    return min(e for e, n in counts.items() if n == top)


def hype_time(rows: Iterable[dict], conditions: Sequence[str], *, excluded: Collection[int] = (),
              include_incomplete: bool = False, floor_ms: int | None = None, resamples: int = 10000,
              level: float = 0.95, seed: int = 0) -> list[HypeTimeResult]:
    """One HypeTimeResult per condition (in the given order), from trial rows with keys participant,
    participant_status, trial_kind, condition and target_exposure_ms. Participants in `excluded` (the
    pre-declared exclusions) and, unless include_incomplete, those who did not finish are left out.
    A condition without any staircase answer gets participants = 0 and NaN statistics."""
    excluded = set(excluded)
    per: dict[str, dict[int, list[float]]] = {c: {} for c in conditions}
    for r in rows:
        if (r["trial_kind"] != "main" or r.get("target_exposure_ms") is None or r["condition"] not in per
                or r["participant"] in excluded
                or (not include_incomplete and r["participant_status"] != "completed")):
            continue
        per[r["condition"]].setdefault(r["participant"], []).append(r["target_exposure_ms"])

    results = []
    for label in conditions:
        exposures = per[label]
        thresholds = {pid: modal_exposure(values) for pid, values in sorted(exposures.items())}
        t = np.array(list(thresholds.values()), dtype=float)
        ci = bootstrap_ratio(t, np.ones_like(t), resamples=resamples, level=level, seed=seed)
        mean, median = (float(t.mean()), float(np.median(t))) if t.size else (math.nan, math.nan)
        results.append(HypeTimeResult(
            condition=label, participants=len(thresholds), trials=sum(len(v) for v in exposures.values()),
            mean_threshold_ms=mean, ci_bootstrap=ci, median_threshold_ms=median,
            at_floor=None if floor_ms is None else sum(v == floor_ms for v in thresholds.values()),
            thresholds=thresholds))
    return results


def format_hype_time(results: Sequence[HypeTimeResult], level: float = 0.95) -> list[str]:
    """Report lines (no trailing newlines); empty when no condition has staircase answers."""
    if not any(r.participants for r in results):
        return []
    lines = [("HYPE_time (adaptive exposure): threshold = each participant's modal exposure over main trials "
              "(ties: the shorter); higher = harder to tell from real")]
    for r in results:
        if not r.participants:
            lines.append(f"  {r.condition}: no answers at a staircase exposure")
            continue
        floor = f", {r.at_floor} of {r.participants} at the floor" if r.at_floor is not None else ""
        lines.append(f"  {r.condition}: mean threshold {r.mean_threshold_ms:.1f} ms (participant bootstrap "
                     f"{level:.0%} CI {r.ci_bootstrap[0]:.1f}–{r.ci_bootstrap[1]:.1f} ms), median "
                     f"{r.median_threshold_ms:.0f} ms; {r.participants} participants, {r.trials} trials{floor}")
    return lines


def staircase_mismatches(rows: Iterable[dict], design: Design) -> list[int]:
    """Participants whose stored exposures differ from what the staircase rule gives for their answers
    (e.g. the staircase settings were edited mid-study). Their thresholds still use what was shown."""
    by_participant: dict[int, list[dict]] = {}
    for r in rows:
        by_participant.setdefault(r["participant"], []).append(r)
    bad = []
    for pid, own in sorted(by_participant.items()):
        own = sorted(own, key=lambda r: r["trial_index"])
        answers = stored_answers(own)
        for i, r in enumerate(own):
            stored = r.get("target_exposure_ms")
            if stored is not None and stored != next_exposure(design, answers[:i], r["trial_kind"], r["condition"]):
                bad.append(pid)
                break
    return bad
