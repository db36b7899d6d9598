"""Response storage on SQLAlchemy Core: SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL).

Every answer is committed on its own, in a transaction that locks the participant row, so that:
- a participant's answers form one gap-free sequence 0, 1, 2, ... (an answer is accepted only for
  the participant's current trial; the unique (participant_id, trial_index) key backs this up);
- the same answer sent twice (double click, second tab, back button, a retried request) is
  reported as a duplicate and never changes the stored row;
- a crash loses nothing that was acknowledged (SQLite: WAL with synchronous=FULL).

Withdrawal deletes the participant and all their answers; only an unlinked count of withdrawals
remains, so the admin page can report how many people withdrew.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from harness_base.errors import HarnessError

from .planning import SIDES, TRUTHS, Trial

SCHEMA_VERSION = 1
SQLITE_BUSY_TIMEOUT_MS = 30_000

metadata = sa.MetaData()

participants = sa.Table(
    "participants", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),   # arrival order; drives image rotation
    sa.Column("token", sa.String(64), nullable=False, unique=True),       # random; the participant's link
    sa.Column("deletion_code", sa.String(32), nullable=False, unique=True),
    sa.Column("platform_id", sa.String(128), nullable=True, unique=True),  # only if the config asks for it
    sa.Column("platform_info", sa.Text, nullable=True),                   # JSON of the other platform params
    sa.Column("study_fingerprint", sa.String(64), nullable=False),        # config + manifest hash at consent
    sa.Column("conditions", sa.Text, nullable=False),                     # JSON list of assigned conditions
    sa.Column("plan", sa.Text, nullable=False),                           # JSON list of Trial dicts
    sa.Column("n_trials", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),                   # consented | in_progress | completed
    sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
)

responses = sa.Table(
    "responses", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("trial_index", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("condition", sa.String(64), nullable=False),
    sa.Column("real_image", sa.String(512), nullable=False),
    sa.Column("fake_image", sa.String(512), nullable=False),
    # Paired design: sides "left"/"right". Single design (one image): real_side holds the correct answer
    # and chosen_side the answer, "real" or "fake"; real_image or fake_image is the image shown, the other "".
    sa.Column("real_side", sa.String(8), nullable=False),
    sa.Column("chosen_side", sa.String(8), nullable=False),
    sa.Column("correct", sa.Boolean, nullable=False),
    sa.Column("rt_ms", sa.Float, nullable=True),                          # server-side: pair sent -> answer received
    sa.Column("client_rt_ms", sa.Float, nullable=True),                   # "timed" presentation: measured in the browser
    sa.Column("exposure_ms", sa.Float, nullable=True),                    # "timed": how long the pair was on screen
    sa.Column("focus_losses", sa.Integer, nullable=True),                 # "timed": window blurs / tab switches
    sa.Column("window_size", sa.String(32), nullable=True),               # "timed": e.g. "1280x720"
    # "timed" with an exposure limit: the exposure the trial was meant to have (fixed exposure_ms, or the
    # staircase's value), set by the server. Added later: older databases get it on open (_add_missing_columns).
    sa.Column("target_exposure_ms", sa.Integer, nullable=True),
    sa.Column("shown_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("participant_id", "trial_index", name="uq_response_participant_trial"),
)

withdrawals = sa.Table(  # deliberately unlinked to any participant
    "withdrawals", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("phase", sa.String(16), nullable=False),   # "during" (button) or "after" (deletion code)
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

study_state = sa.Table(
    "study_state", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)


class StorageError(HarnessError):
    """Base class: the message is written for the participant or the researcher."""


class UnknownParticipant(StorageError):
    pass


class NotCurrentTrial(StorageError):
    """An answer for a trial that is neither the current one nor already answered."""


class ParticipantFinished(StorageError):
    pass


class StudyClosed(StorageError):
    pass


@dataclass(frozen=True)
class ParticipantState:
    id: int
    token: str
    deletion_code: str
    status: str
    plan: list[Trial]
    conditions: list[str]
    answered: int                       # number of answers stored; also the index of the next trial
    study_fingerprint: str

    @property
    def next_trial(self) -> Trial | None:
        return self.plan[self.answered] if self.answered < len(self.plan) else None

    @property
    def finished(self) -> bool:
        return self.answered >= len(self.plan)


@dataclass(frozen=True)
class AnswerOutcome:
    status: str          # "recorded" or "duplicate" (the stored answer is unchanged)
    trial_index: int
    kind: str            # "practice", "main" or "attention"
    correct: bool        # of the stored answer
    chosen_side: str     # of the stored answer
    completed: bool      # the participant has now answered every trial


def _client_columns(client: dict | None) -> dict:
    """Browser-measured values, type-checked: they come from the participant's browser."""
    client = client or {}

    def number(name):
        value = client.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None

    window = client.get("window")
    return {"client_rt_ms": number("rt_ms"), "exposure_ms": number("exposure_ms"),
            "focus_losses": int(client["focus_losses"]) if isinstance(client.get("focus_losses"), int) else None,
            "window_size": window[:32] if isinstance(window, str) else None}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_sqlite_url(study_dir: str | Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / 'responses.sqlite'}"


def _new_code() -> str:
    alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no look-alikes (0/O, 1/I/L)
    raw = "".join(secrets.choice(alphabet) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def new_token() -> str:
    return secrets.token_urlsafe(16)


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is deferred,
        # which lets two writers read the same state and then fight over the lock).
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")   # a committed answer survives a crash or power cut
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Write transactions take the write lock up front (waiting up to busy_timeout), so the
        # read-check-insert in record_answer cannot be overtaken by another writer.
        immediate = conn.get_execution_options().get("study_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _add_missing_columns(conn: sa.Connection) -> None:
    """Add columns that a table gained after databases holding it already existed: create_all makes
    missing tables but never alters existing ones. Only nullable columns can be added this way (old
    rows get NULL); a concurrent server adding the same column fails and create_schema retries."""
    inspector = sa.inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:  # pragma: no cover - a schema change that needs a real migration
                raise StorageError(f"the database's table {table.name} lacks the column {column.name}, "
                                   "which cannot be added automatically (it is not nullable)")
            conn.exec_driver_sql(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} "
                                 f"{column.type.compile(dialect=conn.dialect)}")


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    return engine


class StudyStore:
    """All database access of the app, the CLI and the benchmarks. Thread-safe; share one per process."""

    def __init__(self, url: str, *, create: bool = True, retries: int = 5):
        self.url = url
        self.engine = make_engine(url)
        self.retries = retries
        self._sqlite_write_lock = threading.Lock() if url.startswith("sqlite") else None
        if create:
            self.create_schema()

    # -- plumbing ---------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create the tables and state rows if missing. Safe when several app servers start at once:
        on SQLite the write lock is taken first (BEGIN IMMEDIATE), on PostgreSQL the loser of a
        creation race retries and finds everything in place."""
        for attempt in range(3):
            try:
                with self._write() as conn:
                    metadata.create_all(conn)
                    _add_missing_columns(conn)
                    existing = set(conn.execute(sa.select(study_state.c.key)).scalars())
                    for key, value in (("schema_version", str(SCHEMA_VERSION)), ("open", "1")):
                        if key not in existing:
                            conn.execute(study_state.insert().values(key=key, value=value))
                return
            except (sa.exc.ProgrammingError, sa.exc.IntegrityError, sa.exc.OperationalError):
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _write(self):
        """A connection in a write transaction (SQLite: BEGIN IMMEDIATE). SQLite has one writer at a
        time anyway; queueing this process's writers on a lock spares them SQLite's busy-wait sleeps
        (up to 100 ms each), while busy_timeout still arbitrates between processes."""
        return _Tx(self.engine, self._sqlite_write_lock, study_write=True)

    def _read(self):
        return _Tx(self.engine)

    def _retrying(self, fn: Callable):
        """Run fn again when the database reports a transient conflict (lock, serialisation)."""
        delay = 0.01
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except sa.exc.OperationalError as exc:
                transient = any(word in str(exc).lower() for word in ("locked", "busy", "deadlock", "serializ"))
                if not transient or attempt == self.retries:
                    raise
                time.sleep(delay)
                delay *= 2

    def dispose(self) -> None:
        self.engine.dispose()

    # -- study state --------------------------------------------------------------------------------
    def is_open(self) -> bool:
        with self._read() as conn:
            value = conn.execute(sa.select(study_state.c.value).where(study_state.c.key == "open")).scalar()
        return value != "0"

    def set_open(self, is_open: bool) -> None:
        with self._write() as conn:
            conn.execute(study_state.update().where(study_state.c.key == "open").values(value="1" if is_open else "0"))

    # -- participants -------------------------------------------------------------------------------
    def create_participant(self, make_plan: Callable[[str, int], tuple[list[Trial], list[str]]], *,
                           study_fingerprint: str, platform_id: str | None = None,
                           platform_info: dict | None = None) -> ParticipantState:
        """Create a participant after consent. `make_plan(token, seq)` returns (trials, conditions)
        where seq counts participants from 0 in arrival order. With a platform ID that already has a
        participant, that participant is returned instead (one participant per platform ID)."""
        if platform_id is not None:
            existing = self.find_by_platform_id(platform_id)
            if existing is not None:
                return existing

        def attempt():
            token = new_token()
            with self._write() as conn:
                if conn.execute(sa.select(study_state.c.value).where(study_state.c.key == "open")).scalar() == "0":
                    raise StudyClosed("the study is closed to new participants")
                pid = conn.execute(participants.insert().values(
                    token=token, deletion_code=_new_code(), platform_id=platform_id,
                    platform_info=json.dumps(platform_info) if platform_info else None,
                    study_fingerprint=study_fingerprint, conditions="[]", plan="[]", n_trials=0,
                    status="consented", consented_at=_utcnow(),
                )).inserted_primary_key[0]
                # Arrival order among the participants still in the study: ids can have gaps (rollbacks,
                # withdrawals), and a withdrawn participant's rotation slot is best given to the next one.
                seq = conn.execute(sa.select(sa.func.count()).select_from(participants)
                                   .where(participants.c.id < pid)).scalar()
                trials, conditions = make_plan(token, seq)
                conn.execute(participants.update().where(participants.c.id == pid).values(
                    plan=json.dumps([t.to_dict() for t in trials]), conditions=json.dumps(conditions),
                    n_trials=len(trials)))
            return token

        try:
            token = self._retrying(attempt)
        except IntegrityError:
            if platform_id is not None:  # the same platform ID consented in two tabs at once
                existing = self.find_by_platform_id(platform_id)
                if existing is not None:
                    return existing
            raise
        return self.get_participant(token)

    @staticmethod
    def _withdrawn_count(conn) -> int:
        return conn.execute(sa.select(sa.func.count()).select_from(withdrawals)).scalar()

    def _state_from_row(self, row, answered: int) -> ParticipantState:
        return ParticipantState(
            id=row.id, token=row.token, deletion_code=row.deletion_code, status=row.status,
            plan=[Trial.from_dict(t) for t in json.loads(row.plan)], conditions=json.loads(row.conditions),
            answered=answered, study_fingerprint=row.study_fingerprint)

    def _get(self, conn, where) -> ParticipantState | None:
        row = conn.execute(sa.select(participants).where(where)).first()
        if row is None:
            return None
        answered = conn.execute(sa.select(sa.func.count()).select_from(responses)
                                .where(responses.c.participant_id == row.id)).scalar()
        return self._state_from_row(row, answered)

    def get_participant(self, token: str) -> ParticipantState | None:
        with self._read() as conn:
            return self._get(conn, participants.c.token == token)

    def find_by_platform_id(self, platform_id: str) -> ParticipantState | None:
        with self._read() as conn:
            return self._get(conn, participants.c.platform_id == platform_id)

    def start_trials(self, token: str) -> None:
        """The participant has read the instructions (consented → in_progress); idempotent."""
        with self._write() as conn:
            conn.execute(participants.update()
                         .where(participants.c.token == token, participants.c.status == "consented")
                         .values(status="in_progress", started_at=_utcnow()))

    def record_answer(self, token: str, trial_index: int, chosen_side: str, *, rt_ms: float | None = None,
                      shown_at: datetime | None = None, client: dict | None = None,
                      target_exposure_ms: int | None = None) -> AnswerOutcome:
        """Store the answer to the participant's current trial, exactly once. `chosen_side` is the side
        chosen as real ("left"/"right") in the paired design, "real" or "fake" in the single design.
        `target_exposure_ms` is the exposure the server asked the browser for (timed presentation).

        Returns status "duplicate" (and the stored answer, unchanged) when that trial was already
        answered; raises NotCurrentTrial for a trial further ahead, UnknownParticipant for an
        unknown or withdrawn token, ParticipantFinished when every trial is answered."""
        if chosen_side not in SIDES + TRUTHS:
            raise ValueError(f"chosen_side must be 'left' or 'right' (paired) or 'real' or 'fake' (single), "
                             f"got {chosen_side!r}")

        def attempt():
            with self._write() as conn:
                row = conn.execute(sa.select(participants).where(participants.c.token == token)
                                   .with_for_update()).first()  # serialises a participant's writes (PostgreSQL)
                if row is None:
                    raise UnknownParticipant("unknown participant link (or the answers were withdrawn)")
                answered = conn.execute(sa.select(sa.func.count()).select_from(responses)
                                        .where(responses.c.participant_id == row.id)).scalar()
                if trial_index < answered:
                    return self._stored_outcome(conn, row, trial_index, answered)
                if answered >= row.n_trials:
                    raise ParticipantFinished("every trial has already been answered")
                if trial_index != answered:
                    raise NotCurrentTrial(f"trial {trial_index} is not the current trial ({answered})")
                trial = Trial.from_dict(json.loads(row.plan)[trial_index])
                if chosen_side not in trial.answers:
                    raise ValueError(f"trial {trial_index} takes the answers {trial.answers}, got {chosen_side!r}")
                now = _utcnow()
                correct = trial.is_correct(chosen_side)
                conn.execute(responses.insert().values(
                    participant_id=row.id, trial_index=trial_index, kind=trial.kind, condition=trial.condition,
                    real_image=trial.real_image, fake_image=trial.fake_image, real_side=trial.real_side,
                    chosen_side=chosen_side, correct=correct, rt_ms=rt_ms, shown_at=shown_at, answered_at=now,
                    target_exposure_ms=target_exposure_ms, **_client_columns(client)))
                completed = answered + 1 == row.n_trials
                if completed:
                    conn.execute(participants.update().where(participants.c.id == row.id)
                                 .values(status="completed", completed_at=now))
                elif row.status == "consented":
                    conn.execute(participants.update().where(participants.c.id == row.id)
                                 .values(status="in_progress", started_at=now))
                return AnswerOutcome("recorded", trial_index, trial.kind, correct, chosen_side, completed)

        try:
            return self._retrying(attempt)
        except IntegrityError:
            # Only reachable where row locks are not available: a concurrent identical submit won.
            with self._read() as conn:
                row = conn.execute(sa.select(participants).where(participants.c.token == token)).first()
                if row is None:
                    raise UnknownParticipant("unknown participant link (or the answers were withdrawn)") from None
                answered = conn.execute(sa.select(sa.func.count()).select_from(responses)
                                        .where(responses.c.participant_id == row.id)).scalar()
                return self._stored_outcome(conn, row, trial_index, answered)

    @staticmethod
    def _stored_outcome(conn, row, trial_index: int, answered: int) -> AnswerOutcome:
        stored = conn.execute(sa.select(responses.c.kind, responses.c.correct, responses.c.chosen_side).where(
            responses.c.participant_id == row.id, responses.c.trial_index == trial_index)).first()
        if stored is None:
            raise NotCurrentTrial(f"trial {trial_index} is not the current trial ({answered})")
        return AnswerOutcome("duplicate", trial_index, stored.kind, bool(stored.correct), stored.chosen_side,
                             answered >= row.n_trials)

    def answers(self, token: str) -> list[dict]:
        """The participant's stored answers in trial order (for the debrief)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(responses).join(participants)
                                .where(participants.c.token == token).order_by(responses.c.trial_index)).mappings()
            return [dict(r) for r in rows]

    # -- withdrawal ---------------------------------------------------------------------------------
    def _delete_participant(self, where, phase: str) -> bool:
        def attempt():
            with self._write() as conn:
                pid = conn.execute(sa.select(participants.c.id).where(where).with_for_update()).scalar()
                if pid is None:
                    return False
                conn.execute(responses.delete().where(responses.c.participant_id == pid))
                conn.execute(participants.delete().where(participants.c.id == pid))
                conn.execute(withdrawals.insert().values(phase=phase, at=_utcnow()))
                return True
        return self._retrying(attempt)

    def withdraw(self, token: str) -> bool:
        """Delete the participant and all their answers (withdrawal during the study)."""
        return self._delete_participant(participants.c.token == token, "during")

    def withdraw_by_code(self, deletion_code: str) -> bool:
        """Delete the participant holding this deletion code (withdrawal after the study)."""
        code = deletion_code.strip().upper()
        if len(code) == 12 and "-" not in code:
            code = f"{code[:4]}-{code[4:8]}-{code[8:]}"
        return self._delete_participant(participants.c.deletion_code == code, "after")

    # -- reporting ------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Live counts, read fresh (never cached)."""
        with self._read() as conn:
            by_status = dict(conn.execute(sa.select(participants.c.status, sa.func.count())
                                          .group_by(participants.c.status)).all())
            withdrawn = self._withdrawn_count(conn)
            n_answers = conn.execute(sa.select(sa.func.count()).select_from(responses)).scalar()
        return {
            "started": sum(by_status.values()) + withdrawn,  # everyone who consented
            "in_progress": by_status.get("consented", 0) + by_status.get("in_progress", 0),
            "completed": by_status.get("completed", 0),
            "withdrawn": withdrawn,
            "answers": n_answers,
        }

    def participant_rows(self) -> list[dict]:
        """One dict per participant, in arrival order, without the link token and deletion code
        (the participants table of `Study.participants`); `conditions` is the list assigned."""
        query = (sa.select(
            participants.c.id.label("participant"), participants.c.status.label("participant_status"),
            participants.c.study_fingerprint, participants.c.conditions, participants.c.n_trials,
            participants.c.platform_id, participants.c.consented_at, participants.c.started_at,
            participants.c.completed_at)
            .order_by(participants.c.id))
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        for r in rows:
            r["conditions"] = json.loads(r["conditions"])
        return rows

    def trial_rows(self) -> list[dict]:
        """One dict per stored answer, joined with its participant (export and statistics)."""
        query = (sa.select(
            participants.c.id.label("participant"), participants.c.status.label("participant_status"),
            participants.c.study_fingerprint, participants.c.platform_id, participants.c.platform_info,
            participants.c.consented_at, participants.c.completed_at.label("participant_completed_at"),
            responses.c.trial_index, responses.c.kind.label("trial_kind"), responses.c.condition,
            responses.c.real_image, responses.c.fake_image, responses.c.real_side, responses.c.chosen_side,
            responses.c.correct, responses.c.rt_ms, responses.c.client_rt_ms, responses.c.exposure_ms,
            responses.c.focus_losses, responses.c.window_size, responses.c.target_exposure_ms,
            responses.c.shown_at, responses.c.answered_at)
            .join(participants, responses.c.participant_id == participants.c.id)
            .order_by(participants.c.id, responses.c.trial_index))
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


class _Tx:
    """`with` a connection inside one transaction: commit on success, roll back on error, close.
    An optional lock is held for the whole transaction."""

    def __init__(self, engine: sa.Engine, lock: threading.Lock | None = None, **options):
        self.engine, self.lock, self.options = engine, lock, options

    def __enter__(self) -> sa.Connection:
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.conn = self.engine.connect()
            if self.options:
                self.conn = self.conn.execution_options(**self.options)
            self._tx = self.conn.begin()
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._tx.commit()
            else:
                self._tx.rollback()
        finally:
            self.conn.close()
            if self.lock is not None:
                self.lock.release()
        return False
