"""A study dir as one object (config + manifest + images + database), and the public Python API.

Study dir layout (written by `init_study` / `study-app init`):

    STUDY_DIR/
      study.toml          editable config: texts, consent items, design, conditions, analysis plan
      manifest.json       every image the app may show, with sha256, size, format
      images/real/...     copies of the real images (unless copy_images=False)
      images/<label>/...  copies of each fake set, one folder per condition
      images/attention/   scrambled copies of some real images, for attention checks
      responses.sqlite    the response database (SQLite WAL), created on first use
"""
from __future__ import annotations

import os
import secrets
import shlex
import shutil
from pathlib import Path
from typing import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from harness_base.errors import HarnessError

from . import export, stats
from .config import (CONFIG_FILENAME, DEFAULT_DB_FILENAME, MANIFEST_FILENAME, Condition, ConfigError,
                     StudyConfig, apply_overrides, load_config, save_config)
from .manifest import ImageStore, build_manifest, load_manifest, save_manifest, scale_warning
from .planning import assigned_conditions, condition_pairs, plan_trials
from .storage import ParticipantState, StudyStore

DB_URL_ENV = "STUDY_APP_DB"
STUDY_DIR_ENV = "STUDY_APP_DIR"
# Nominal on-screen width of one image slot in CSS px (a 1280-px window, Streamlit's centred
# layout): what init's warning about small, much enlarged images assumes.
NOMINAL_SLOT_PX = {"paired": 340, "pairwise": 340, "single": 448}


class FingerprintMismatch(HarnessError):
    """Participants consented under another image manifest than the current one: their answers refer
    to images that have since changed."""


def manifest_part(study_fingerprint: str) -> str:
    """The image-manifest half of a stored study fingerprint ("<config>-<manifest>")."""
    return study_fingerprint.rsplit("-", 1)[-1]


def resolve_db_url(study_dir: str | Path, config: StudyConfig, override: str | None = None) -> str:
    """--db / STUDY_APP_DB, else the config's storage.database_url, else SQLite in the study dir.
    A relative SQLite path is taken relative to the study dir, not the working directory."""
    url = override or os.environ.get(DB_URL_ENV) or config.storage.database_url
    if not url:
        return f"sqlite:///{(Path(study_dir) / DEFAULT_DB_FILENAME).resolve()}"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):])
        if not path.is_absolute():
            return f"sqlite:///{(Path(study_dir) / path).resolve()}"
    return url


def study_names(study_dirs: Sequence[str | Path], db_url: str | None = None) -> dict[str, Path]:
    """{name: resolved dir} of the studies one server hosts. The name, the `?study=` value of their
    links, is the directory's basename. Raises ConfigError for two dirs with one name, and for a
    --db / STUDY_APP_DB override with several studies (it would put them all in one database)."""
    names: dict[str, Path] = {}
    for study_dir in study_dirs:
        path = Path(study_dir).resolve()
        if names.get(path.name) == path:
            raise ConfigError(f"{path} is given twice")
        if path.name in names:
            raise ConfigError(f"two studies are named '{path.name}' ({names[path.name]} and {path}): a study's "
                              "name is its directory's basename, so rename one of the directories")
        names[path.name] = path
    if len(names) > 1 and (db_url or os.environ.get(DB_URL_ENV)):
        source = "--db" if db_url else f"the environment variable {DB_URL_ENV}"
        raise ConfigError(f"{source} cannot be used with several studies: each study needs its own database. "
                          f"Set storage.database_url in each study's {CONFIG_FILENAME} instead (without it, each "
                          f"study uses its own STUDY_DIR/{DEFAULT_DB_FILENAME})")
    return names


def _database_identity(url: str) -> str:
    """What two URLs of one database share: SQLite's resolved file; otherwise the URL without its
    driver and password (postgresql+psycopg://u:x@h/db and postgresql://u@h/db are one database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return f"sqlite:{Path(parsed.database).resolve()}"
    return parsed.set(drivername=parsed.get_backend_name(), password=None).render_as_string(hide_password=False)


def check_served_studies(study_dirs: Sequence[str | Path], db_url: str | None = None) -> dict[str, Path]:
    """study_names(), and refuse two studies whose resolved database URLs are one database (their
    participants and answers would mix). Reads only the configs: nothing is created."""
    names = study_names(study_dirs, db_url)
    if len(names) > 1:
        seen: dict[str, str] = {}
        for name, path in names.items():
            url = resolve_db_url(path, load_config(path))
            identity = _database_identity(url)
            if identity in seen:
                shown = make_url(url).render_as_string(hide_password=True)
                raise ConfigError(f"studies '{seen[identity]}' and '{name}' use the same database ({shown}): each "
                                  f"study needs its own database; give one of them another storage.database_url "
                                  f"in its {CONFIG_FILENAME}")
            seen[identity] = name
    return names


class Study:
    """Config, manifest, images and store of one study dir. Thread-safe; the app shares one."""

    def __init__(self, study_dir: str | Path, db_url: str | None = None, *, create_db: bool = True):
        self.dir = Path(study_dir)
        self.config = load_config(self.dir)
        self.manifest = load_manifest(self.dir)
        missing = [c for c in self.config.condition_labels() if not self.manifest.ids("fake", c)]
        if missing:
            raise ConfigError(f"{self.dir / CONFIG_FILENAME}: condition(s) {', '.join(missing)} have no fake images "
                              f"in {MANIFEST_FILENAME}")
        self.images = ImageStore(self.dir, self.manifest)
        self.db_url = resolve_db_url(self.dir, self.config, db_url)
        self.store = StudyStore(self.db_url, create=create_db)

    @property
    def fingerprint(self) -> str:
        return f"{self.config.fingerprint()}-{self.manifest.fingerprint()}"

    @property
    def manifest_fingerprint(self) -> str:
        return self.manifest.fingerprint()

    def answers_current_images(self, state: ParticipantState) -> bool:
        """Whether the participant consented under the current image manifest (their plan's image ids
        still name the images they were meant to see)."""
        return manifest_part(state.study_fingerprint) == self.manifest_fingerprint

    def fingerprint_groups(self) -> dict[str, int]:
        """{manifest fingerprint: participants} of everyone in the study, the current manifest's first."""
        groups: dict[str, int] = {}
        for fingerprint, n in self.store.fingerprint_counts().items():
            groups[manifest_part(fingerprint)] = groups.get(manifest_part(fingerprint), 0) + n
        return dict(sorted(groups.items(), key=lambda kv: kv[0] != self.manifest_fingerprint))

    def fingerprint_problem(self, groups: dict[str, int] | None = None) -> str | None:
        """A paragraph when some participants consented under another image manifest; None if none did."""
        groups = self.fingerprint_groups() if groups is None else groups
        other = {fp: n for fp, n in groups.items() if fp != self.manifest_fingerprint}
        if not other:
            return None
        listed = "; ".join(f"manifest {fp}: {n} participant{'s' * (n != 1)}" for fp, n in other.items())
        current = groups.get(self.manifest_fingerprint, 0)
        return (f"{sum(other.values())} participant(s) consented under another image manifest than the current "
                f"{self.dir / MANIFEST_FILENAME} (fingerprint {self.manifest_fingerprint}, {current} participants): "
                f"{listed}. The images were replaced after they answered, so their answers do not refer to the "
                "images now in the study. Put back the manifest and images they saw, or analyse one manifest's "
                f"participants at a time with `study-app stats {self.dir} --fingerprint FINGERPRINT` (per-image "
                "results then name the images of that manifest).")

    def new_participant(self, platform_id: str | None = None, platform_info: dict | None = None) -> ParticipantState:
        """Consent given: create the participant with their trial plan (raises StudyClosed when closed)."""
        def make_plan(token: str, seq: int):
            return plan_trials(self.config, self.manifest, token, seq), assigned_conditions(self.config, seq)
        return self.store.create_participant(make_plan, study_fingerprint=self.fingerprint,
                                             platform_id=platform_id, platform_info=platform_info)

    def select_fingerprint(self, rows: list[dict], fingerprint: str | None = None) -> tuple[list[dict], str]:
        """(rows of one image manifest, its fingerprint). `fingerprint`: a manifest fingerprint (or a
        unique prefix of one); None: the current manifest, and FingerprintMismatch if any rows come
        from another one."""
        present = sorted({manifest_part(r["study_fingerprint"]) for r in rows})
        if fingerprint is None:
            if any(fp != self.manifest_fingerprint for fp in present):
                raise FingerprintMismatch(self.fingerprint_problem())
            return rows, self.manifest_fingerprint
        wanted = manifest_part(fingerprint)
        matches = [fp for fp in set(present) | {self.manifest_fingerprint} if fp.startswith(wanted)]
        if len(matches) != 1:
            known = ", ".join(sorted(set(present) | {self.manifest_fingerprint}))
            raise FingerprintMismatch(f"--fingerprint {fingerprint} matches {'no' if not matches else 'more than one'} "
                                      f"image manifest of this study; its manifests: {known}")
        return [r for r in rows if manifest_part(r["study_fingerprint"]) == matches[0]], matches[0]

    def analyse(self, rows: list[dict] | None = None, *, fingerprint: str | None = None) -> stats.StudyReport:
        """The pre-declared analysis of the participants of one image manifest: the current one (and
        FingerprintMismatch if others answered under another), or the one `fingerprint` names."""
        a, d = self.config.analysis, self.config.design
        rows, chosen = self.select_fingerprint(self.store.trial_rows() if rows is None else rows, fingerprint)
        report = stats.analyse(
            rows, conditions=self.config.condition_labels(),
            design=d.kind, alpha=a.alpha, margin=a.equivalence_margin, min_attention_correct=a.min_attention_correct,
            exclude_median_rt_below_ms=a.exclude_median_rt_below_ms, include_incomplete=a.include_incomplete,
            min_views_per_image=a.min_views_per_image, bootstrap_resamples=a.bootstrap_resamples,
            trials_per_participant=d.trials_per_condition, assumed_icc=a.assumed_icc,
            target_power=a.target_power, correction=a.correction, mixed_model=a.mixed_model,
            staircase_floor_ms=d.staircase_min_ms if d.staircase else None, seed=d.seed)
        if chosen != self.manifest_fingerprint:
            report.notes.insert(0, f"Participants of image manifest {chosen} only (not the current manifest "
                                   f"{self.manifest_fingerprint}): per-image results name the images of that manifest.")
        return report

    def _excluded(self, trial_rows: list[dict]) -> dict[int, str]:
        """Participants the pre-declared exclusion rule excludes, with the reason."""
        a = self.config.analysis
        return stats.exclusions(trial_rows, min_attention_correct=a.min_attention_correct,
                                exclude_median_rt_below_ms=a.exclude_median_rt_below_ms)

    def export_records(self, include_platform_ids: bool = False) -> list[dict]:
        rows = self.store.trial_rows()
        return export.export_records(rows, self._excluded(rows), include_platform_ids, design=self.config.design.kind,
                                     current_fingerprint=self.fingerprint)

    def trials(self, include_platform_ids: bool = False):
        """One row per answered trial as a pandas DataFrame, read from the database: the codebook's
        columns (export.codebook) with the dtypes of export.COLUMN_TYPES. `export.read_csv` reads the
        CSV that `study-app export` writes back to the same frame."""
        kind = self.config.design.kind
        return export.to_frame(self.export_records(include_platform_ids),
                               export.export_columns(include_platform_ids, kind), kind)

    def participants(self, include_platform_ids: bool = False):
        """One row per participant who consented and has not withdrawn, as a pandas DataFrame:
        status, assigned conditions, answer counts, main-trial accuracy, times and exclusion
        (export.PARTICIPANT_CODEBOOK's columns, export.COLUMN_TYPES' dtypes)."""
        trial_rows = self.store.trial_rows()
        records = export.participant_records(self.store.participant_rows(), trial_rows, self._excluded(trial_rows),
                                             include_platform_ids, design=self.config.design.kind)
        return export.to_frame(records, export.participant_columns(include_platform_ids))

    def export_csv(self, include_platform_ids: bool = False) -> str:
        """The trials CSV; the database remembers the time, for the admin page's list of withdrawals
        since the last export."""
        text = export.to_csv(self.export_records(include_platform_ids), include_platform_ids,
                             design=self.config.design.kind)
        self.store.mark_exported()
        return text

    def exclusion_rule(self) -> str:
        a = self.config.analysis
        return stats.exclusion_rule_text(a.min_attention_correct, a.exclude_median_rt_below_ms)

    def codebook_csv(self, include_platform_ids: bool = False) -> str:
        return export.codebook_csv(include_platform_ids, design=self.config.design.kind,
                                   exclusion_rule=self.exclusion_rule())

    def codebook_markdown(self, include_platform_ids: bool = False) -> str:
        return export.codebook_markdown(include_platform_ids, design=self.config.design.kind,
                                        exclusion_rule=self.exclusion_rule())


def init_study(study_dir: str | Path, real_dir: str | Path, fakes: Sequence[tuple[str, str | Path]], *,
               copy_images: bool = True, force: bool = False, progress: Callable[[str], None] | None = None,
               **overrides) -> Path:
    """Create a study dir from a folder of real images and one or more labelled fake-image folders.

    `fakes` is a list of (label, folder), e.g. [("stylegan-psi0.7", "fakes/psi07")]. Keyword
    overrides set config fields by name (design="paired" or "single", title, trials_per_condition,
    practice_trials, attention_checks, assignment, seed, completion_code, redirect_url,
    equivalence_margin, ...).
    Raises ConfigError / ManifestError with a readable message and leaves no half-written study.
    Image-set warnings (size, format, compression) are kept in manifest.json's "warnings"."""
    study_dir = Path(study_dir)
    if (study_dir / CONFIG_FILENAME).exists() and not force:
        raise ConfigError(f"{study_dir} already holds a study ({CONFIG_FILENAME}); pass force=True / --force to replace it")
    if force:
        _refuse_if_answered(study_dir)
    fakes = [(str(label), Path(folder)) for label, folder in fakes]
    config = StudyConfig(conditions=[Condition(label=label) for label, _ in fakes])
    overrides.setdefault("seed", secrets.randbelow(2**31))
    overrides.setdefault("completion_code", "C" + secrets.token_hex(4).upper())
    apply_overrides(config, overrides)

    created = not study_dir.exists()
    study_dir.mkdir(parents=True, exist_ok=True)
    try:
        if force and (study_dir / "images").exists():
            shutil.rmtree(study_dir / "images")
        attention_images = min(10, max(config.design.attention_checks, 1) * 3) if config.design.attention_checks else 0
        manifest = build_manifest(study_dir, real_dir, fakes, copy_images=copy_images,
                                  attention_images=attention_images, seed=config.design.seed, progress=progress)
        m = config.design.trials_per_condition
        slot = config.design.image_width or NOMINAL_SLOT_PX[config.design.kind]
        small = scale_warning(manifest.shown(), slot, config.design.image_filter)
        if small:
            manifest.warnings.append(small)
        if config.design.kind == "pairwise":   # each condition appears in (conditions - 1) x m trials
            needed = m * (len(config.conditions) - 1)
            for label in config.condition_labels():
                n_fakes = len(manifest.ids("fake", label))
                if n_fakes < needed:
                    manifest.warnings.append(f"'{label}' has {n_fakes} fake images for {needed} trials per participant "
                                             f"({len(condition_pairs(config.condition_labels()))} condition pairs x {m}): "
                                             "its images will repeat within a participant")
        elif config.design.kind == "single":   # at most half the trials of a condition show each kind of image
            fakes_needed = m - m // 2
            for label in config.condition_labels():
                n_fakes = len(manifest.ids("fake", label))
                if n_fakes < fakes_needed:
                    manifest.warnings.append(f"'{label}' has {n_fakes} fake images for up to {fakes_needed} "
                                             "generated-image trials per participant: fakes will repeat within a "
                                             "participant")
            n_reals, needed = len(manifest.ids("real")), fakes_needed * len(assigned_conditions(config, 0))
            if n_reals < needed:
                manifest.warnings.append(f"{n_reals} real images for up to {needed} real-image trials per "
                                         "participant: real images will repeat within a participant")
        else:
            for label in config.condition_labels():
                n_fakes = len(manifest.ids("fake", label))
                if n_fakes < m:
                    manifest.warnings.append(f"'{label}' has {n_fakes} fake images but trials_per_condition is {m}: "
                                             "fakes will repeat within a participant")
            n_reals, needed = len(manifest.ids("real")), config.main_trials_per_participant()
            if n_reals < needed:
                manifest.warnings.append(f"{n_reals} real images for {needed} main trials per participant: "
                                         "real images will repeat within a participant")
        save_manifest(manifest, study_dir)
        save_config(config, study_dir)
    except BaseException:   # including Ctrl-C: no half-written study is left behind
        if created:
            shutil.rmtree(study_dir, ignore_errors=True)
        raise
    return study_dir


def _refuse_if_answered(study_dir: Path) -> None:
    """init --force: refuse a study dir whose database holds participants (their answers would be tied
    to the new images under the old names). Checked before anything is computed or written."""
    try:
        config = load_config(study_dir)
    except ConfigError:
        config = StudyConfig()
    url = resolve_db_url(study_dir, config)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return
    try:
        store = StudyStore(url, create=False)
        try:
            with store.engine.connect() as conn:
                if not sa.inspect(conn).has_table("participants"):
                    return
            counts = store.counts()
        finally:
            store.dispose()
    except Exception as exc:   # an unreachable server: refuse rather than guess
        raise ConfigError(f"{study_dir} already holds a study, and its response database cannot be checked for "
                          f"answers ({exc.__class__.__name__}), so --force cannot tell whether replacing the images "
                          "would orphan them. Make the database reachable, or create the new study in a new "
                          "directory.") from exc
    people = counts["started"] - counts["withdrawn"]
    if people:
        raise ConfigError(
            f"{study_dir} holds the answers of {people} participant(s) ({counts['answers']} answers in its response "
            "database): replacing its images and config would tie those answers to different images, so --force "
            "refuses. To start a new study, run `study-app init` with a new directory. To keep this study's answers "
            f"and reuse the name, archive it first, e.g. `study-app export {study_dir}` and then "
            f"`mv {study_dir} {study_dir}-archived`.")


def serve_command(study_dir: str | Path | Sequence[str | Path], port: int = 8501, db_url: str | None = None) -> str:
    """The shell command that hosts the study, or several studies on one server (print it for the user)."""
    dirs = [study_dir] if isinstance(study_dir, (str, os.PathLike)) else list(study_dir)
    if db_url and len(dirs) > 1:
        study_names(dirs, db_url)   # raises the ConfigError that `study-app serve` would print
    cmd = ["study-app", "serve", *map(str, dirs), "--port", str(port)]
    if db_url:
        cmd += ["--db", db_url]
    return shlex.join(cmd)


def analyse_study(study_dir: str | Path, db_url: str | None = None) -> stats.StudyReport:
    """Statistics of a study dir's responses (see stats.StudyReport; stats.format_report prints it)."""
    return Study(study_dir, db_url, create_db=True).analyse()
