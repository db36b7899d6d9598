"""HYPE_time adaptive exposure (design.staircase = true, presentation = "timed").

The exposure of the next trial is a pure function of the config and the participant's stored
answers, so a reload, a second tab or a new server computes the same value and nothing besides the
answers needs storing. The rule:

- one staircase per condition (HYPE runs one per evaluator and model); it starts at
  staircase_start_ms;
- only main trials move it: after `staircase_down_after` correct main answers in a row (in that
  condition) the exposure steps down by staircase_step_ms and the run count restarts; after any
  error it steps up by staircase_step_ms (and the run count restarts); the exposure stays within
  staircase_min_ms .. staircase_max_ms;
- practice trials are shown at the start exposure and never move a staircase (they come first,
  with feedback, and are not analysed);
- attention checks are shown at the current exposure of the staircase that the last main trial
  used (the start exposure before any main trial) and never move a staircase: an attention check
  has no condition, and its error is a lapse, not a perceptual limit.

Each stored answer of a timed study also keeps the exposure it was shown at
(responses.target_exposure_ms), so the analysis (study_app.stats.hype_time) reads the thresholds from the
rows; `levels` recomputes them from the answers alone as a check.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from .config import Design
from .planning import Trial

# (kind, condition, correct) of one stored answer; kind is "practice", "main" or "attention".
Answer = tuple[str, str, bool]


def levels(design: Design, outcomes: Iterable[bool]) -> list[int]:
    """Exposures (ms) of one staircase: element i is the exposure of the i-th main trial given the
    correctness of those before it; the last element is the exposure of the next trial."""
    level, run = design.staircase_start_ms, 0
    out = [level]
    for correct in outcomes:
        if correct:
            run += 1
            if run >= design.staircase_down_after:
                level, run = max(design.staircase_min_ms, level - design.staircase_step_ms), 0
        else:
            level, run = min(design.staircase_max_ms, level + design.staircase_step_ms), 0
        out.append(level)
    return out


def next_exposure(design: Design, answers: Sequence[Answer], kind: str, condition: str) -> int:
    """Exposure (ms) of the next trial, of `kind` and `condition`, after `answers` (in trial order).
    With the staircase off this is the fixed design.exposure_ms (0 = until answered)."""
    if not design.staircase:
        return design.exposure_ms
    if kind == "practice":
        return design.staircase_start_ms
    if kind == "attention":
        last_main = next((c for k, c, _ in reversed(answers) if k == "main"), None)
        if last_main is None:
            return design.staircase_start_ms
        condition = last_main
    return levels(design, [ok for k, c, ok in answers if k == "main" and c == condition])[-1]


def stored_answers(rows: Iterable[Mapping], before: int | None = None) -> list[Answer]:
    """Answers as the staircase reads them, from stored rows (StudyStore.answers: "kind", or
    StudyStore.trial_rows of one participant: "trial_kind"), in trial order; only those of trials
    before index `before` if given."""
    picked = sorted((r for r in rows if before is None or r["trial_index"] < before), key=lambda r: r["trial_index"])
    return [(r["kind"] if "kind" in r else r["trial_kind"], r["condition"], bool(r["correct"])) for r in picked]


def trial_exposure(design: Design, rows: Iterable[Mapping], trial: Trial) -> int:
    """Exposure (ms) to show `trial` at, given the participant's stored answer rows (any order;
    answers to this trial or later ones are ignored, so a resubmitted answer gets the same value)."""
    return next_exposure(design, stored_answers(rows, before=trial.index), trial.kind, trial.condition)
