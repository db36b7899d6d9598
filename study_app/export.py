"""Tidy export: one CSV row per answered trial, and a codebook describing every column; the same
rows as pandas DataFrames (`Study.trials()`), and one row per participant (`Study.participants()`).

The columns depend on the study's design: CODEBOOK for paired studies (two images, which is real?),
SINGLE_CODEBOOK for single-image studies (one image, real or generated?), PAIRWISE_CODEBOOK for
pairwise studies (two generated images, which looks more real?). COLUMN_TYPES gives each column's
pandas dtype; the codebook states it in words. pandas is imported only by the functions that build
DataFrames.

Text cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return) are written with a leading apostrophe, as OWASP advises against CSV injection; a text cell
that itself starts with an apostrophe gets one more, so that `read_csv` can take exactly one off."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from .stats.rows import CLIENT_RT_SLACK_MS, timing_check

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
    "rt_ms": ("Response time in milliseconds from the server drawing the pair to the server receiving the answer "
              "(includes network delay): an upper bound of the time the pair was on screen before the answer."),
    "client_rt_ms": ("Response time in ms measured in the browser from the first frame showing the pair; reported by "
                     "the participant's browser, so only as trustworthy as it (see timing_flag)."),
    "rt_used_ms": (f"The response time the too-fast gate and the exclusion rule use: client_rt_ms when it is at most "
                   f"rt_ms + {CLIENT_RT_SLACK_MS:g} ms (a browser cannot see more time than the server), else rt_ms."),
    "timing_flag": (f"Why the browser's timing is not trusted, ';'-separated: client_rt_above_server (client_rt_ms > "
                    f"rt_ms + {CLIENT_RT_SLACK_MS:g} ms: a patched or broken browser clock), exposure_above_rt "
                    "(exposure_ms > client_rt_ms); empty if none. Exposure limits hold only for cooperative browsers."),
    "exposure_ms": "How long the pair was on screen in ms, measured in the browser (with an exposure limit, until it was hidden).",
    "target_exposure_ms": ("Exposure in ms the server asked the browser for: design.exposure_ms, or with "
                           "design.staircase the staircase's value for this trial (presentation = timed with an "
                           "exposure limit; else empty)."),
    "focus_losses": "Times the participant left the window or tab while the pair was shown.",
    "window_size": "Browser window size as WIDTHxHEIGHT in CSS pixels at the answer.",
    "display_scale": ("Device pixels per image pixel at the answer: an integer, or 1/2, 1/3, ... when the window could "
                      "not show the image at full size (design.narrow_screen = \"fit\")."),
    "views": ("Times the trial was put on screen up to its answer: more than 1 after a reload, a second tab or an "
              "answer refused as too fast. Empty for answers stored before views were counted."),
    "reexposed": "1 if views > 1 (the participant saw this trial more than once before answering), else 0.",
    "too_fast_attempts": ("Answers to this trial refused because they came sooner than design.min_response_ms after the "
                          "image(s) appeared (each refusal restarts the wait); empty for answers stored before they "
                          "were counted."),
    "shown_at": "UTC time the pair was first sent to the participant (ISO 8601).",
    "answered_at": "UTC time the answer was stored (ISO 8601).",
    "consented_at": "UTC time the participant agreed to take part.",
    "participant_completed_at": "UTC time the participant answered their last trial; empty if unfinished.",
    "current_images": ("1 if the participant consented under the current image manifest (the image ids name the "
                       "images now in the study), else 0: their images were replaced afterwards."),
    "excluded": "1 if the pre-declared exclusion rule (attention checks, response time) excludes the participant, else 0.",
    "exclusion_reason": "Why the participant is excluded; empty if not.",
}

EXCLUDED_WORDS = "1 if the pre-declared exclusion rule excludes the participant, else 0. The rule: {rule}."

def _derived_codebook(replaced: dict[str, dict[str, str]], reworded: dict[str, str] | None = None) -> dict[str, str]:
    """CODEBOOK with some columns replaced, in place, by other columns ({} drops one) and some
    meanings reworded: how the other designs' codebooks are made from the paired one."""
    out = {}
    for column, meaning in CODEBOOK.items():
        if column in replaced:
            out.update(replaced[column])
        else:
            out[column] = (reworded or {}).get(column, meaning)
    return out


def _single_codebook() -> dict[str, str]:
    """Single-image design: the pair columns give way to image / image_truth / answer / judged_real."""
    reworded = {c: CODEBOOK[c].replace("the pair", "the image")
                for c in ("rt_ms", "client_rt_ms", "exposure_ms", "focus_losses", "shown_at")}
    return _derived_codebook({
        "condition": {"condition": (
            "Condition label (generator, checkpoint or truncation ψ) of the trial: for a generated image the "
            "condition it comes from; each condition also has its own block of real-image trials, which carry its "
            "label. Empty for attention checks.")},
        "trial_kind": {"trial_kind": ("practice (with feedback, never analysed), main, or attention (an obviously "
                                      "generated image, a scrambled copy of a real image; the right answer is fake).")},
        "real_image": {"image": "Manifest id of the image shown.",
                       "image_truth": "What the image shown is: real, or fake (generated; attention checks: scrambled)."},
        "fake_image": {}, "real_side": {}, "chose_fake": {},
        "chosen_side": {"answer": "The participant's answer: real, or fake (the button read 'Generated')."},
        "correct": {"correct": "1 if the answer matches image_truth, else 0.",
                    "judged_real": ("1 if the participant answered real, else 0. Its mean is the fool rate on "
                                    "generated images and the hit rate (1 − error) on real images.")},
    }, reworded)


SINGLE_CODEBOOK: dict[str, str] = _single_codebook()


def _pairwise_codebook() -> dict[str, str]:
    """Pairwise design: which of two generated images (two conditions) looks more real; no right answer,
    except in the attention checks (a real image against its scrambled copy)."""
    return _derived_codebook({
        "condition": {"left_condition": "Condition (generator, checkpoint or ψ) of the left image; empty for "
                                        "attention checks.",
                      "right_condition": "Condition of the right image; empty for attention checks."},
        "trial_kind": {"trial_kind": ("practice (never analysed), main (two generated images of two conditions), or "
                                      "attention (a real image against its scrambled copy).")},
        "real_image": {"left_image": "Manifest id of the image shown on the left.",
                       "right_image": "Manifest id of the image shown on the right."},
        "fake_image": {}, "chose_fake": {},
        "real_side": {"real_side": "Attention checks: the side of the real (unscrambled) image; empty for other trials."},
        "chosen_side": {"chosen_side": "Side the participant chose as looking more real: left or right.",
                        "chosen_condition": "Condition of the image chosen as more real; empty for attention checks."},
        "correct": {"attention_correct": ("Attention checks: 1 if the real image was chosen, else 0; empty for other "
                                          "trials (they have no right answer).")},
    })


PAIRWISE_CODEBOOK: dict[str, str] = _pairwise_codebook()
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
    "main_correct": "Main trials answered correctly (pairwise design: 0, its main trials have no right answer).",
    "main_accuracy": "main_correct / main_trials; empty before the first main trial, and in the pairwise design.",
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
                     "image_truth", "answer", "platform_id", "conditions", "timing_flag", "left_condition",
                     "right_condition", "left_image", "right_image", "chosen_condition"), "string"),
    **dict.fromkeys(("participant", "trial_index", "n_trials", "answered", "main_trials", "main_correct",
                     "attention_trials", "attention_correct"), "int64"),
    **dict.fromkeys(("target_exposure_ms", "focus_losses", "views", "too_fast_attempts"), "Int64"),
    **dict.fromkeys(("rt_ms", "client_rt_ms", "rt_used_ms", "exposure_ms", "display_scale", "main_accuracy"), "float64"),
    **dict.fromkeys(("correct", "chose_fake", "excluded", "judged_real", "reexposed", "current_images"), "bool"),
    **dict.fromkeys(("shown_at", "answered_at", "consented_at", "participant_completed_at", "started_at",
                     "completed_at"), _UTC_TIME),
}
# A pairwise export's attention_correct is empty on main trials; the participants table's is a count.
PAIRWISE_TYPES = {"attention_correct": "boolean"}
_TYPE_WORDS = {"string": "text", "int64": "integer", "Int64": "integer; empty if none",
               "float64": "number; empty if none", "bool": "0 or 1", "boolean": "0 or 1; empty if none",
               _UTC_TIME: "UTC time (ISO 8601); empty if none"}
_CODEBOOKS = {"paired": CODEBOOK, "single": SINGLE_CODEBOOK, "pairwise": PAIRWISE_CODEBOOK}


def codebook(design: str = "paired", exclusion_rule: str | None = None) -> dict[str, str]:
    """Column -> meaning of a design's export; with `exclusion_rule` (the study's rule in words), the
    `excluded` column states it."""
    if design not in _CODEBOOKS:
        raise ValueError(f"design must be 'paired', 'single' or 'pairwise', got {design!r}")
    book = _CODEBOOKS[design]
    if exclusion_rule:
        book = {**book, "excluded": EXCLUDED_WORDS.format(rule=exclusion_rule)}
    return book


def column_type(column: str, design: str = "paired") -> str:
    """The pandas dtype of an export column in a design."""
    return PAIRWISE_TYPES.get(column, COLUMN_TYPES[column]) if design == "pairwise" else COLUMN_TYPES[column]


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


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(text: str) -> str:
    """A text cell a spreadsheet will show as text: a leading apostrophe before = + - @ tab CR, and
    before an apostrophe (so that unescape_formula takes exactly one off)."""
    return "'" + text if text.startswith(FORMULA_STARTS + ("'",)) else text


def unescape_formula(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS + ("'",)) else text


def _pairwise_fields(r: dict) -> dict:
    """The pairwise columns of one stored row (storage.py keeps the left / right image in the pair columns)."""
    attention = r["real_side"] in ("left", "right")
    left, right = ((r["real_image"], r["fake_image"]) if r["real_side"] in ("left", "") else
                   (r["fake_image"], r["real_image"]))
    chosen = "" if attention else (r.get("left_condition") if r["chosen_side"] == "left" else r.get("right_condition"))
    return dict(left_image=left, right_image=right, left_condition=r.get("left_condition") or "",
                right_condition=r.get("right_condition") or "", chosen_condition=chosen or "",
                attention_correct=bool(r["correct"]) if attention else None)


def export_records(rows: list[dict], excluded: dict[int, str], include_platform_ids: bool = False,
                   design: str = "paired", current_fingerprint: str | None = None) -> list[dict]:
    """Storage rows (StudyStore.trial_rows) turned into export rows with exactly the codebook's columns.
    `current_fingerprint`: the study's fingerprint now (its manifest half fills current_images)."""
    columns = export_columns(include_platform_ids, design)
    current_manifest = current_fingerprint.rsplit("-", 1)[-1] if current_fingerprint else None
    out = []
    for r in rows:
        used, flag = timing_check(r.get("rt_ms"), r.get("client_rt_ms"), r.get("exposure_ms"))
        record = {
            **{k: r.get(k) for k in columns if k in r},
            "correct": bool(r["correct"]),
            "chose_fake": not bool(r["correct"]),
            "rt_used_ms": used, "timing_flag": flag,
            "reexposed": (r.get("views") or 1) > 1,
            "current_images": (current_manifest is None
                               or r["study_fingerprint"].rsplit("-", 1)[-1] == current_manifest),
            "excluded": r["participant"] in excluded,
            "exclusion_reason": excluded.get(r["participant"], ""),
        }
        if design == "single" and r["real_side"] in ("real", "fake"):  # kept in the pair columns (storage.py)
            record.update(image=r["real_image"] or r["fake_image"], image_truth=r["real_side"],
                          answer=r["chosen_side"], judged_real=r["chosen_side"] == "real")
        if design == "pairwise":
            record.update(_pairwise_fields(r))
        if include_platform_ids:
            record["platform_id"] = r.get("platform_id")
        out.append({col: _cell(record.get(col)) for col in columns})
    return out


def to_csv(records: list[dict], include_platform_ids: bool = False, design: str = "paired") -> str:
    columns = export_columns(include_platform_ids, design)
    text_columns = [c for c in columns if column_type(c, design) == "string"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, **{c: escape_formula(r[c]) for c in text_columns if isinstance(r[c], str)}}
                     for r in records)
    return buf.getvalue()


def _codebook_rows(include_platform_ids: bool, design: str, exclusion_rule: str | None) -> list[tuple[str, str, str]]:
    """(column, type in words, description) of every export column."""
    items = list(codebook(design, exclusion_rule).items()) + ([PLATFORM_ID_COLUMN] if include_platform_ids else [])
    return [(column, _TYPE_WORDS[column_type(column, design)], meaning) for column, meaning in items]


def codebook_csv(include_platform_ids: bool = False, design: str = "paired", exclusion_rule: str | None = None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["column", "type", "description"])
    writer.writerows(_codebook_rows(include_platform_ids, design, exclusion_rule))
    return buf.getvalue()


def codebook_markdown(include_platform_ids: bool = False, design: str = "paired",
                      exclusion_rule: str | None = None) -> str:
    return "| column | type | description |\n|---|---|---|\n" + "\n".join(
        f"| `{k}` | {t} | {v} |" for k, t, v in _codebook_rows(include_platform_ids, design, exclusion_rule)) + "\n"


def participant_records(participant_rows: list[dict], trial_rows: list[dict], excluded: dict[int, str],
                        include_platform_ids: bool = False, design: str = "paired") -> list[dict]:
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
                  "main_accuracy": c["main_correct"] / c["main_trials"] if c["main_trials"] and design != "pairwise"
                  else None,
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
    if dtype == "boolean":
        return pd.array([pd.NA if v is None else bool(int(v)) for v in present], dtype="boolean")
    if dtype == "float64":
        return pd.array([float("nan") if v is None else float(v) for v in present], dtype="float64")
    return pd.array([pd.NA if v is None else int(v) for v in present], dtype=dtype)


def to_frame(records: list[dict], columns: list[str], design: str = "paired"):
    """Export records (export_records, participant_records) as a DataFrame with COLUMN_TYPES' dtypes
    (a pairwise export: column_type's)."""
    import pandas as pd

    return pd.DataFrame({c: _typed_column([r[c] for r in records], column_type(c, design)) for c in columns},
                        columns=columns)


def read_csv(path_or_buffer):
    """A trials CSV written by `study-app export` (or any CSV of the codebook's columns) as the
    DataFrame `Study.trials()` gives for the same rows (formula escapes taken off again)."""
    import pandas as pd

    frame = pd.read_csv(path_or_buffer, dtype=str, keep_default_na=False)
    unknown = [c for c in frame.columns if c not in COLUMN_TYPES]
    if unknown:
        raise ValueError(f"not a study export: unknown column(s) {', '.join(unknown)}")
    design = "pairwise" if "left_condition" in frame.columns else "paired"
    records = frame.to_dict("records")
    for column in frame.columns:
        if column_type(column, design) == "string":
            for r in records:
                r[column] = unescape_formula(r[column])
    return to_frame(records, list(frame.columns), design)
