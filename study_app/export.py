"""Tidy export: one CSV row per answered trial, and a codebook describing every column; the same
rows as pandas DataFrames (`Study.trials()`), and one row per participant (`Study.participants()`).

The columns depend on the study's design: CODEBOOK for paired studies (two images, which is real?),
SINGLE_CODEBOOK for single-image studies (one image, real or generated?). COLUMN_TYPES gives each
column's pandas dtype; the codebook states it in words. pandas is imported only by the functions
that build DataFrames."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

# Column -> meaning. The export has exactly these columns, in this order (platform_id only on request).
CODEBOOK: dict[str, str] = {
    "study_fingerprint": "Hash of the study config and image manifest the participant consented under (frozen design and analysis plan).",
    "participant": "Pseudonymous participant number (arrival order). Not the participant's link token.",
    "participant_status": "completed, in_progress or consented (agreed but answered nothing yet).",
    "condition": "Condition label of the fake image (generator, checkpoint or truncation ψ); empty for attention checks.",
    "trial_index": "Position of the trial in the participant's sequence, from 0 (practice trials come first).",
    "trial_kind": "practice (with feedback, never analysed), main, or attention (a real image against its scrambled copy).",
    "real_image": "Manifest id of the real image in the pair.",
    "fake_image": "Manifest id of the generated (or, for attention checks, scrambled) image in the pair.",
    "real_side": "Side the real image was shown on: left or right.",
    "chosen_side": "Side the participant chose as real: left or right.",
    "correct": "1 if the participant chose the real image, else 0.",
    "chose_fake": "1 if the participant chose the generated image (the fake 'fooled' them), else 0.",
    "rt_ms": "Response time in milliseconds from the server sending the pair to the server receiving the answer (includes network delay).",
    "client_rt_ms": "Response time in ms measured in the browser from the first frame showing the pair (presentation = timed; else empty).",
    "exposure_ms": "How long the pair was on screen in ms, measured in the browser (presentation = timed; else empty).",
    "target_exposure_ms": ("Exposure in ms the server asked the browser for: design.exposure_ms, or with "
                           "design.staircase the staircase's value for this trial (presentation = timed with an "
                           "exposure limit; else empty)."),
    "focus_losses": "Times the participant left the window or tab while the pair was shown (presentation = timed; else empty).",
    "window_size": "Browser window size as WIDTHxHEIGHT in CSS pixels (presentation = timed; else empty).",
    "shown_at": "UTC time the pair was first sent to the participant (ISO 8601).",
    "answered_at": "UTC time the answer was stored (ISO 8601).",
    "consented_at": "UTC time the participant agreed to take part.",
    "participant_completed_at": "UTC time the participant answered their last trial; empty if unfinished.",
    "excluded": "1 if the pre-declared exclusion rule (attention checks, response time) excludes the participant, else 0.",
    "exclusion_reason": "Why the participant is excluded; empty if not.",
}

def _single_codebook() -> dict[str, str]:
    """Single-image design: the pair columns give way to image / image_truth / answer / judged_real."""
    words = {"rt_ms": CODEBOOK["rt_ms"].replace("the pair", "the image"),
             "client_rt_ms": CODEBOOK["client_rt_ms"].replace("the pair", "the image"),
             "exposure_ms": CODEBOOK["exposure_ms"].replace("the pair", "the image"),
             "focus_losses": CODEBOOK["focus_losses"].replace("the pair", "the image"),
             "shown_at": CODEBOOK["shown_at"].replace("the pair", "the image")}
    out = {}
    for column, meaning in CODEBOOK.items():
        if column == "condition":
            out[column] = ("Condition label (generator, checkpoint or truncation ψ) of the trial: for a generated "
                           "image the condition it comes from; each condition also has its own block of real-image "
                           "trials, which carry its label. Empty for attention checks.")
        elif column == "trial_kind":
            out[column] = ("practice (with feedback, never analysed), main, or attention (an obviously generated "
                           "image, a scrambled copy of a real image; the right answer is fake).")
        elif column == "real_image":
            out["image"] = "Manifest id of the image shown."
            out["image_truth"] = "What the image shown is: real, or fake (generated; attention checks: scrambled)."
        elif column in ("fake_image", "real_side", "chose_fake"):
            continue
        elif column == "chosen_side":
            out["answer"] = "The participant's answer: real, or fake (the button read 'Generated')."
        elif column == "correct":
            out[column] = "1 if the answer matches image_truth, else 0."
            out["judged_real"] = ("1 if the participant answered real, else 0. Its mean is the fool rate on generated "
                                  "images and the hit rate (1 − error) on real images.")
        else:
            out[column] = words.get(column, meaning)
    return out


SINGLE_CODEBOOK: dict[str, str] = _single_codebook()
PLATFORM_ID_COLUMN = ("platform_id", "Recruitment-platform ID (e.g. PROLIFIC_PID); pseudonymous personal data, exported only on request.")

# One row per participant (Study.participants): everyone who consented and has not withdrawn.
PARTICIPANT_CODEBOOK: dict[str, str] = {
    "participant": CODEBOOK["participant"],
    "participant_status": CODEBOOK["participant_status"],
    "study_fingerprint": CODEBOOK["study_fingerprint"],
    "conditions": "Conditions assigned to the participant, separated by ';' (assignment = between: one).",
    "n_trials": "Trials in the participant's plan: practice, main and attention.",
    "answered": "Trials answered so far.",
    "main_trials": "Main trials answered.",
    "main_correct": "Main trials answered correctly.",
    "main_accuracy": "main_correct / main_trials; empty before the first main trial.",
    "attention_trials": "Attention checks answered.",
    "attention_correct": "Attention checks answered correctly.",
    "consented_at": CODEBOOK["consented_at"],
    "started_at": "UTC time of the first practice or main trial; empty before it.",
    "completed_at": "UTC time the participant answered their last trial; empty if unfinished.",
    "excluded": CODEBOOK["excluded"],
    "exclusion_reason": CODEBOOK["exclusion_reason"],
}

_UTC_TIME = "datetime64[us, UTC]"
# pandas dtype of every column of both tables and designs. Missing values are NaN, <NA> or NaT; text
# columns keep "" as the CSV does (a CSV cell cannot tell empty text from missing text).
COLUMN_TYPES: dict[str, str] = {
    **dict.fromkeys(("study_fingerprint", "participant_status", "condition", "trial_kind", "real_image",
                     "fake_image", "real_side", "chosen_side", "window_size", "exclusion_reason", "image",
                     "image_truth", "answer", "platform_id", "conditions"), "string"),
    **dict.fromkeys(("participant", "trial_index", "n_trials", "answered", "main_trials", "main_correct",
                     "attention_trials", "attention_correct"), "int64"),
    **dict.fromkeys(("target_exposure_ms", "focus_losses"), "Int64"),
    **dict.fromkeys(("rt_ms", "client_rt_ms", "exposure_ms", "main_accuracy"), "float64"),
    **dict.fromkeys(("correct", "chose_fake", "excluded", "judged_real"), "bool"),
    **dict.fromkeys(("shown_at", "answered_at", "consented_at", "participant_completed_at", "started_at",
                     "completed_at"), _UTC_TIME),
}
_TYPE_WORDS = {"string": "text", "int64": "integer", "Int64": "integer; empty if none",
               "float64": "number; empty if none", "bool": "0 or 1", _UTC_TIME: "UTC time (ISO 8601); empty if none"}


def codebook(design: str = "paired") -> dict[str, str]:
    if design not in ("paired", "single"):
        raise ValueError(f"design must be 'paired' or 'single', got {design!r}")
    return SINGLE_CODEBOOK if design == "single" else CODEBOOK


def export_columns(include_platform_ids: bool = False, design: str = "paired") -> list[str]:
    return list(codebook(design)) + ([PLATFORM_ID_COLUMN[0]] if include_platform_ids else [])


def participant_columns(include_platform_ids: bool = False) -> list[str]:
    return list(PARTICIPANT_CODEBOOK) + ([PLATFORM_ID_COLUMN[0]] if include_platform_ids else [])


def _cell(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        # SQLite hands back naive datetimes; every stored time is UTC.
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    return "" if value is None else value


def export_records(rows: list[dict], excluded: dict[int, str], include_platform_ids: bool = False,
                   design: str = "paired") -> list[dict]:
    """Storage rows (StudyStore.trial_rows) turned into export rows with exactly the codebook's columns."""
    columns = export_columns(include_platform_ids, design)
    out = []
    for r in rows:
        record = {
            **{k: r.get(k) for k in columns if k in r},
            "correct": bool(r["correct"]),
            "chose_fake": not bool(r["correct"]),
            "excluded": r["participant"] in excluded,
            "exclusion_reason": excluded.get(r["participant"], ""),
        }
        if design == "single" and r["real_side"] in ("real", "fake"):  # kept in the pair columns (storage.py)
            record.update(image=r["real_image"] or r["fake_image"], image_truth=r["real_side"],
                          answer=r["chosen_side"], judged_real=r["chosen_side"] == "real")
        if include_platform_ids:
            record["platform_id"] = r.get("platform_id")
        out.append({col: _cell(record.get(col)) for col in columns})
    return out


def to_csv(records: list[dict], include_platform_ids: bool = False, design: str = "paired") -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=export_columns(include_platform_ids, design), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def _codebook_rows(include_platform_ids: bool, design: str) -> list[tuple[str, str, str]]:
    """(column, type in words, description) of every export column."""
    items = list(codebook(design).items()) + ([PLATFORM_ID_COLUMN] if include_platform_ids else [])
    return [(column, _TYPE_WORDS[COLUMN_TYPES[column]], meaning) for column, meaning in items]


def codebook_csv(include_platform_ids: bool = False, design: str = "paired") -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["column", "type", "description"])
    writer.writerows(_codebook_rows(include_platform_ids, design))
    return buf.getvalue()


def codebook_markdown(include_platform_ids: bool = False, design: str = "paired") -> str:
    return "| column | type | description |\n|---|---|---|\n" + "\n".join(
        f"| `{k}` | {t} | {v} |" for k, t, v in _codebook_rows(include_platform_ids, design)) + "\n"


def participant_records(participant_rows: list[dict], trial_rows: list[dict], excluded: dict[int, str],
                        include_platform_ids: bool = False) -> list[dict]:
    """Storage rows (StudyStore.participant_rows, .trial_rows) turned into one record per participant
    with exactly PARTICIPANT_CODEBOOK's columns (and platform_id on request). Answers of a participant
    missing from `participant_rows` (withdrawn between the two reads) are left out."""
    counts = {r["participant"]: dict.fromkeys(("answered", "main_trials", "main_correct", "attention_trials",
                                                "attention_correct"), 0) for r in participant_rows}
    for t in trial_rows:
        c = counts.get(t["participant"])
        if c is None:
            continue
        c["answered"] += 1
        if t["trial_kind"] in ("main", "attention"):
            c[f"{t['trial_kind']}_trials"] += 1
            c[f"{t['trial_kind']}_correct"] += bool(t["correct"])
    columns = participant_columns(include_platform_ids)
    out = []
    for r in participant_rows:
        c = counts[r["participant"]]
        record = {**r, **c, "conditions": ";".join(r["conditions"]),
                  "main_accuracy": c["main_correct"] / c["main_trials"] if c["main_trials"] else None,
                  "excluded": r["participant"] in excluded, "exclusion_reason": excluded.get(r["participant"], "")}
        out.append({col: _cell(record.get(col)) for col in columns})
    return out


def _typed_column(values: list, dtype: str):
    """One column of records, or of a CSV read as text, as a pandas array of `dtype`; "" is missing.
    Numbers are parsed by Python's int() and float(), which read back exactly what the CSV writer
    wrote (repr of a float is its shortest round-trip form)."""
    import pandas as pd

    if dtype == "string":
        return pd.array([str(v) for v in values], dtype="string")
    present = [None if v is None or v == "" else v for v in values]
    if dtype == _UTC_TIME:
        return pd.to_datetime(pd.Series(present, dtype=object), utc=True, format="ISO8601").dt.as_unit("us").array
    if dtype == "bool":
        return pd.array([bool(int(v)) for v in present], dtype="bool")
    if dtype == "float64":
        return pd.array([float("nan") if v is None else float(v) for v in present], dtype="float64")
    return pd.array([pd.NA if v is None else int(v) for v in present], dtype=dtype)


def to_frame(records: list[dict], columns: list[str]):
    """Export records (export_records, participant_records) as a DataFrame with COLUMN_TYPES' dtypes."""
    import pandas as pd

    return pd.DataFrame({c: _typed_column([r[c] for r in records], COLUMN_TYPES[c]) for c in columns},
                        columns=columns)


def read_csv(path_or_buffer):
    """A trials CSV written by `study-app export` (or any CSV of the codebook's columns) as the
    DataFrame `Study.trials()` gives for the same rows."""
    import pandas as pd

    frame = pd.read_csv(path_or_buffer, dtype=str, keep_default_na=False)
    unknown = [c for c in frame.columns if c not in COLUMN_TYPES]
    if unknown:
        raise ValueError(f"not a study export: unknown column(s) {', '.join(unknown)}")
    return to_frame(frame.to_dict("records"), list(frame.columns))
