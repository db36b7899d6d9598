"""Response storage on SQLAlchemy Core: SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL).

Every answer is committed before it is acknowledged, in a transaction that locks the participant
row, so that:
- a participant's answers form one gap-free sequence 0, 1, 2, ... (an answer is accepted only for
  the participant's current trial; the unique (participant_id, trial_index) key backs this up);
- the same answer sent twice (double click, second tab, back button, a retried request) is
  reported as a duplicate and never changes the stored row;
- a crash loses nothing that was acknowledged (SQLite: WAL with synchronous=FULL).

SQLite has one writer at a time and every commit costs an fsync, so on SQLite the writes of one
process are group-committed (`_GroupCommit`): while one transaction runs, the writes that arrive
queue up and then run together, each in its own savepoint, under one commit. Each write still
succeeds or fails on its own, and none is acknowledged before the commit that holds it returned.

Each time a trial is put on screen a view is stored (`trial_events`), and each answer refused as
too fast an event too; the answer row then carries how often its trial was shown (`views`) and
how many too-fast attempts came before it.

Withdrawal deletes the participant, their answers and their events. What remains is one
`withdrawals` row: when, how, the participant's pseudonymous number (so that their rows can be
deleted from exports made before) and a hash of a used deletion code (so that reusing it says
"already withdrawn"). On SQLite, secure_delete overwrites the deleted content and a WAL checkpoint
follows each withdrawal, so the rows do not linger in the database or its WAL file.
"""
from __future__ import annotations

import hashlib
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
MAX_CLIENT_COUNT = 10_000   # a browser-reported count above this is not a count

metadata = sa.MetaData()

participants = sa.Table(
    "participants", metadata,
    # Arrival order; drives the image rotation. Never reused after a withdrawal (SQLite: AUTOINCREMENT
    # in new databases, and create_participant also numbers past every number ever given out).
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
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
    sqlite_autoincrement=True,
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
    # Pairwise design (two generated images): real_image / fake_image hold the left / right image,
    # real_side is "" (no right answer), left_condition / right_condition name their conditions.
    sa.Column("real_side", sa.String(8), nullable=False),
    sa.Column("chosen_side", sa.String(8), nullable=False),
    sa.Column("correct", sa.Boolean, nullable=False),
    sa.Column("rt_ms", sa.Float, nullable=True),                          # server-side: trial drawn -> answer received
    sa.Column("client_rt_ms", sa.Float, nullable=True),                   # measured in the browser from the first frame
    sa.Column("exposure_ms", sa.Float, nullable=True),                    # browser: how long the image(s) were on screen
    sa.Column("focus_losses", sa.Integer, nullable=True),                 # browser: window blurs / tab switches
    sa.Column("window_size", sa.String(32), nullable=True),               # browser: e.g. "1280x720"
    # The rest were added later: older databases get them on open (_add_missing_columns), as NULL.
    # "timed" with an exposure limit: the exposure the server asked for (fixed exposure_ms, or the staircase's).
    sa.Column("target_exposure_ms", sa.Integer, nullable=True),
    sa.Column("views", sa.Integer, nullable=True),                        # times this trial was put on screen
    sa.Column("too_fast_attempts", sa.Integer, nullable=True),            # answers refused as too fast before this one
    sa.Column("display_scale", sa.Float, nullable=True),                  # browser: displayed px per image px
    sa.Column("left_condition", sa.String(64), nullable=True),            # pairwise only
    sa.Column("right_condition", sa.String(64), nullable=True),           # pairwise only
    sa.Column("shown_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("participant_id", "trial_index", name="uq_response_participant_trial"),
)

trial_events = sa.Table(   # one row each time a trial is put on screen, or an answer is refused as too fast
    "trial_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("participant_id", sa.Integer, sa.ForeignKey("participants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("trial_index", sa.Integer, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),    # "view" or "too_fast"
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_trial_events_participant_trial", "participant_id", "trial_index"),
)

withdrawals = sa.Table(  # no token, no answers: what a withdrawal leaves behind
    "withdrawals", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("phase", sa.String(16), nullable=False),   # "during" (button) or "after" (deletion code)
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("participant", sa.Integer, nullable=True),  # pseudonymous number: delete it from older exports
    sa.Column("code_hash", sa.String(64), nullable=True), # sha256 of the deletion code used ("already withdrawn")
)

study_state = sa.Table(
    "study_state", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

LAST_PARTICIPANT_KEY = "last_participant_id"
LAST_EXPORT_KEY = "last_export_at"


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


class PlatformIdTaken(StorageError):
    """A participant with this platform ID exists already. Their session resumes only through their
    personal link: a platform ID is an identifier others know, not a secret."""


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


WITHDRAWAL_STATUSES = ("deleted", "already_withdrawn", "unknown")


@dataclass(frozen=True)
class WithdrawalOutcome:
    """What a deletion code did: "deleted", "already_withdrawn" (the code was used before) or
    "unknown" (no participant ever had it: mistyped). True only when something was deleted."""
    status: str

    def __bool__(self) -> bool:
        return self.status == "deleted"


def _client_number(value, *, integer: bool = False):
    """A browser-reported number, type-checked (it comes from the participant's browser): finite and
    not negative, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        return None
    if value == float("inf"):
        return None
    if integer:
        return int(value) if float(value).is_integer() and value <= MAX_CLIENT_COUNT else None
    return float(value)


def client_columns(client: dict | None) -> dict:
    """The browser-measured values of an answer payload, as stored (anything malformed becomes NULL)."""
    client = client or {}
    window = client.get("window")
    return {"client_rt_ms": _client_number(client.get("rt_ms")),
            "exposure_ms": _client_number(client.get("exposure_ms")),
            "focus_losses": _client_number(client.get("focus_losses"), integer=True),
            "display_scale": _client_number(client.get("scale")),
            "window_size": window[:32] if isinstance(window, str) else None}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_sqlite_url(study_dir: str | Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / 'responses.sqlite'}"


def normalise_code(deletion_code: str) -> str:
    """A deletion code as stored: upper case, dashes put back (ABCD-EFGH-JKLM)."""
    code = deletion_code.strip().upper()
    if len(code) == 12 and "-" not in code:
        code = f"{code[:4]}-{code[4:8]}-{code[8:]}"
    return code


def _code_hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


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
        cur.execute("PRAGMA secure_delete = ON")   # a withdrawal's rows are overwritten, not just unlinked
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
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                                     "check_same_thread": False})
        _configure_sqlite(engine)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    return engine


def _is_transient(exc: sa.exc.OperationalError) -> bool:
    return any(word in str(exc).lower() for word in ("locked", "busy", "deadlock", "serializ"))


# Statements of the answer path, built once: SQLAlchemy then reuses their compiled form instead of
# building a cache key for a new statement object on every answer.
_P, _R, _E = participants.c, responses.c, trial_events.c
def _event_count(kind: str):
    return (sa.select(sa.func.count()).where(_E.participant_id == _P.id, _E.trial_index == sa.bindparam("trial"),
                                             _E.event == kind).scalar_subquery())


_ANSWER_STATE = sa.select(
    _P.id, _P.status, _P.n_trials, _P.plan,
    sa.select(sa.func.count()).where(_R.participant_id == _P.id).scalar_subquery().label("answered"),
    _event_count("view").label("views"), _event_count("too_fast").label("too_fast"),
).where(_P.token == sa.bindparam("token"))
_INSERT_RESPONSE = responses.insert()
_INSERT_EVENT = trial_events.insert()
_STORED_ANSWER = sa.select(_R.kind, _R.correct, _R.chosen_side).where(
    _R.participant_id == sa.bindparam("pid"), _R.trial_index == sa.bindparam("trial"))
_PARTICIPANT_BY_TOKEN = sa.select(_P.id, _P.n_trials).where(_P.token == sa.bindparam("token"))


class _GroupCommit:
    """SQLite writes of one process, group-committed: one writer at a time (SQLite has one anyway),
    and the writes queued meanwhile run together under one commit, each in its own savepoint so
    that one failing write leaves the others in place. A write is reported done only after the
    commit that holds it returned; if that commit fails, every write in it gets the error (none of
    them was stored). The writer is whichever waiting thread finds no batch running (no extra
    thread), and the others sleep on a condition until their write is done: none of them queues on
    a lock it no longer needs."""

    def __init__(self, engine: sa.Engine, retries: int):
        self.engine, self.retries = engine, retries
        self._queue: list[_WriteRequest] = []
        self._cond = threading.Condition()
        self._writing = False

    def run(self, fn: Callable[[sa.Connection], object]):
        request = _WriteRequest(fn)
        with self._cond:
            self._queue.append(request)
            while not request.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                batch, self._queue = self._queue, []
                self._cond.release()
                try:
                    self._run_batch(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        return request.result

    def _run_batch(self, batch: list[_WriteRequest]) -> None:
        delay = 0.01
        try:
            for attempt in range(self.retries + 1):
                try:
                    self._one_transaction(batch)
                    return
                except sa.exc.OperationalError as exc:   # another process held the lock past busy_timeout
                    if not _is_transient(exc) or attempt == self.retries:
                        raise
                    time.sleep(delay)
                    delay *= 2
        except BaseException as exc:   # nothing of this batch was committed
            for request in batch:
                request.result, request.error = None, request.error or exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for request in batch:
                request.done = True

    @staticmethod
    def _savepoint(conn, statement: str) -> None:
        # Straight on the DBAPI connection: SQLAlchemy has nothing to track for a savepoint it did not
        # open, and its statement machinery would cost as much as the answer's own statements.
        conn.connection.driver_connection.execute(statement)

    def _one_transaction(self, batch: list[_WriteRequest]) -> None:
        for request in batch:
            request.result, request.error = None, None
        with self.engine.connect() as conn:
            conn = conn.execution_options(study_write=True)
            with conn.begin():
                for request in batch:
                    self._savepoint(conn, "SAVEPOINT study_write")
                    try:
                        request.result = request.fn(conn)
                    except sa.exc.OperationalError:
                        raise                       # the whole transaction is in doubt: retry it
                    except Exception as exc:        # this write alone failed (a refused answer, a conflict)
                        self._savepoint(conn, "ROLLBACK TO study_write")
                        request.error = exc
                    self._savepoint(conn, "RELEASE study_write")


@dataclass
class _WriteRequest:
    fn: Callable
    result: object = None
    error: BaseException | None = None
    done: bool = False


class StudyStore:
    """All database access of the app, the CLI and the benchmarks. Thread-safe; share one per process."""

    def __init__(self, url: str, *, create: bool = True, retries: int = 5):
        self.url = url
        self.engine = make_engine(url)
        self.retries = retries
        self.sqlite = url.startswith("sqlite")
        self._group = _GroupCommit(self.engine, retries) if self.sqlite else None
        self._plans: dict[tuple[int, int], list[Trial]] = {}
        if create:
            self.create_schema()

    # -- plumbing ---------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create the tables and state rows if missing. Safe when several app servers start at once:
        on SQLite the write lock is taken first (BEGIN IMMEDIATE), on PostgreSQL the loser of a
        creation race retries and finds everything in place."""
        def create(conn):
            metadata.create_all(conn)
            _add_missing_columns(conn)
            existing = set(conn.execute(sa.select(study_state.c.key)).scalars())
            for key, value in (("schema_version", str(SCHEMA_VERSION)), ("open", "1")):
                if key not in existing:
                    conn.execute(study_state.insert().values(key=key, value=value))

        for attempt in range(3):
            try:
                self._write(create)
                return
            except (sa.exc.ProgrammingError, sa.exc.IntegrityError, sa.exc.OperationalError):
                if attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _write(self, fn: Callable[[sa.Connection], object]):
        """Run fn(conn) in a write transaction and return its result once committed. SQLite: through
        the group commit (BEGIN IMMEDIATE); elsewhere one transaction of its own, run again when the
        database reports a transient conflict (lock, serialisation)."""
        if self._group is not None:
            return self._group.run(fn)

        def once():
            with self.engine.begin() as conn:
                return fn(conn)
        delay = 0.01
        for attempt in range(self.retries + 1):
            try:
                return once()
            except sa.exc.OperationalError as exc:
                if not _is_transient(exc) or attempt == self.retries:
                    raise
                time.sleep(delay)
                delay *= 2

    def _read(self):
        return self.engine.connect()

    def dispose(self) -> None:
        self.engine.dispose()

    def _state_value(self, conn, key: str) -> str | None:
        return conn.execute(sa.select(study_state.c.value).where(study_state.c.key == key)).scalar()

    @staticmethod
    def _set_state(conn, key: str, value: str) -> None:
        if conn.execute(study_state.update().where(study_state.c.key == key).values(value=value)).rowcount == 0:
            conn.execute(study_state.insert().values(key=key, value=value))

    # -- study state --------------------------------------------------------------------------------
    def is_open(self) -> bool:
        with self._read() as conn:
            return self._state_value(conn, "open") != "0"

    def set_open(self, is_open: bool) -> None:
        self._write(lambda conn: self._set_state(conn, "open", "1" if is_open else "0"))

    def mark_exported(self) -> None:
        """Remember now as the time of the last export (the admin page lists withdrawals since then)."""
        self._write(lambda conn: self._set_state(conn, LAST_EXPORT_KEY, _utcnow().isoformat()))

    def last_export(self) -> datetime | None:
        with self._read() as conn:
            value = self._state_value(conn, LAST_EXPORT_KEY)
        return datetime.fromisoformat(value) if value else None

    # -- participants -------------------------------------------------------------------------------
    def create_participant(self, make_plan: Callable[[str, int], tuple[list[Trial], list[str]]], *,
                           study_fingerprint: str, platform_id: str | None = None,
                           platform_info: dict | None = None) -> ParticipantState:
        """Create a participant after consent. `make_plan(token, seq)` returns (trials, conditions)
        where seq counts participants from 0 in arrival order. Raises PlatformIdTaken when a
        participant with this platform ID exists (one participant per platform ID; the existing one
        resumes only through their own link) and StudyClosed when the study is closed."""
        def create(conn):
            if self._state_value(conn, "open") == "0":
                raise StudyClosed("the study is closed to new participants")
            if platform_id is not None and conn.execute(
                    sa.select(_P.id).where(_P.platform_id == platform_id)).first() is not None:
                raise PlatformIdTaken("a participant with this platform ID has already started")
            token = new_token()
            values = dict(token=token, deletion_code=_new_code(), platform_id=platform_id,
                          platform_info=json.dumps(platform_info) if platform_info else None,
                          study_fingerprint=study_fingerprint, conditions="[]", plan="[]", n_trials=0,
                          status="consented", consented_at=_utcnow())
            if self.sqlite:
                # Numbers are never reused: past every number given out, even by databases made before
                # AUTOINCREMENT (whose ids SQLite reuses after the highest row is deleted).
                last = max(int(self._state_value(conn, LAST_PARTICIPANT_KEY) or 0),
                           conn.execute(sa.select(sa.func.coalesce(sa.func.max(_P.id), 0))).scalar())
                values["id"] = last + 1
            pid = conn.execute(participants.insert().values(**values)).inserted_primary_key[0]
            if self.sqlite:
                self._set_state(conn, LAST_PARTICIPANT_KEY, str(pid))
            # Arrival order among the participants still in the study: ids can have gaps (rollbacks,
            # withdrawals), and a withdrawn participant's rotation slot is best given to the next one.
            seq = conn.execute(sa.select(sa.func.count()).select_from(participants).where(_P.id < pid)).scalar()
            trials, conditions = make_plan(token, seq)
            conn.execute(participants.update().where(_P.id == pid).values(
                plan=json.dumps([t.to_dict() for t in trials]), conditions=json.dumps(conditions),
                n_trials=len(trials)))
            return token

        try:
            token = self._write(create)
        except IntegrityError:
            if platform_id is not None:  # the same platform ID consented in two tabs at once
                raise PlatformIdTaken("a participant with this platform ID has already started") from None
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
                                .where(_R.participant_id == row.id)).scalar()
        return self._state_from_row(row, answered)

    def get_participant(self, token: str) -> ParticipantState | None:
        with self._read() as conn:
            return self._get(conn, _P.token == token)

    def has_platform_id(self, platform_id: str) -> bool:
        """Whether a participant with this platform ID exists (their state is never handed out by it)."""
        with self._read() as conn:
            return conn.execute(sa.select(_P.id).where(_P.platform_id == platform_id)).first() is not None

    def start_trials(self, token: str) -> None:
        """The participant has read the instructions (consented → in_progress); idempotent."""
        self._write(lambda conn: conn.execute(
            participants.update().where(_P.token == token, _P.status == "consented")
            .values(status="in_progress", started_at=_utcnow())))

    def _trial_event(self, token: str, trial_index: int, kind: str) -> bool:
        def write(conn):
            row = conn.execute(_PARTICIPANT_BY_TOKEN, {"token": token}).first()
            if row is None or not 0 <= trial_index < row.n_trials:
                return False
            conn.execute(_INSERT_EVENT, {"participant_id": row.id, "trial_index": trial_index, "event": kind,
                                         "at": _utcnow()})
            return True
        return self._write(write)

    def views(self, token: str, trial_index: int) -> int:
        """How often the trial has been put on screen so far."""
        with self._read() as conn:
            row = conn.execute(_ANSWER_STATE, {"token": token, "trial": trial_index}).first()
        return 0 if row is None else int(row.views)

    def record_view(self, token: str, trial_index: int) -> bool:
        """The trial is being put on screen (again): counted in its answer's `views`."""
        return self._trial_event(token, trial_index, "view")

    def record_too_fast(self, token: str, trial_index: int) -> bool:
        """An answer to this trial was refused as too fast: counted in its answer's `too_fast_attempts`."""
        return self._trial_event(token, trial_index, "too_fast")

    def _plan(self, participant_id: int, plan_json: str) -> list[Trial]:
        """A participant's stored plan, parsed once per process (a plan never changes once written)."""
        key = (participant_id, hash(plan_json))
        plan = self._plans.get(key)
        if plan is None:
            plan = [Trial.from_dict(t) for t in json.loads(plan_json)]
            if len(self._plans) > 10_000:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def record_answer(self, token: str, trial_index: int, chosen_side: str, *, rt_ms: float | None = None,
                      shown_at: datetime | None = None, client: dict | None = None,
                      target_exposure_ms: int | None = None) -> AnswerOutcome:
        """Store the answer to the participant's current trial, exactly once. `chosen_side` is the side
        chosen ("left"/"right") in the paired and pairwise designs, "real" or "fake" in the single
        design. `client` holds what the browser measured (rt_ms, exposure_ms, focus_losses, window,
        scale, too_fast); `target_exposure_ms` is the exposure the server asked the browser for.

        Returns status "duplicate" (and the stored answer, unchanged) when that trial was already
        answered; raises NotCurrentTrial for a trial further ahead, UnknownParticipant for an
        unknown or withdrawn token, ParticipantFinished when every trial is answered."""
        if chosen_side not in SIDES + TRUTHS:
            raise ValueError(f"chosen_side must be 'left' or 'right' (paired, pairwise) or 'real' or 'fake' "
                             f"(single), got {chosen_side!r}")

        def write(conn):
            # On PostgreSQL the row lock serialises a participant's writes; SQLite has one writer anyway.
            row = conn.execute(_ANSWER_STATE.with_for_update(of=participants) if not self.sqlite else _ANSWER_STATE,
                               {"token": token, "trial": trial_index}).first()
            if row is None:
                raise UnknownParticipant("unknown participant link (or the answers were withdrawn)")
            answered = row.answered
            if trial_index < answered:
                return self._stored_outcome(conn, row, trial_index, answered)
            if answered >= row.n_trials:
                raise ParticipantFinished("every trial has already been answered")
            if trial_index != answered:
                raise NotCurrentTrial(f"trial {trial_index} is not the current trial ({answered})")
            trial = self._plan(row.id, row.plan)[trial_index]
            if chosen_side not in trial.answers:
                raise ValueError(f"trial {trial_index} takes the answers {trial.answers}, got {chosen_side!r}")
            views, too_fast = row.views, row.too_fast
            measured = client_columns(client)
            client_too_fast = _client_number((client or {}).get("too_fast"), integer=True) or 0
            now = _utcnow()
            correct = trial.is_correct(chosen_side)
            conn.execute(_INSERT_RESPONSE, dict(
                participant_id=row.id, trial_index=trial_index, kind=trial.kind, condition=trial.condition,
                real_image=trial.real_image, fake_image=trial.fake_image, real_side=trial.real_side,
                chosen_side=chosen_side, correct=correct, rt_ms=rt_ms, shown_at=shown_at, answered_at=now,
                target_exposure_ms=target_exposure_ms, views=int(views),
                too_fast_attempts=int(too_fast) + client_too_fast,
                left_condition=trial.left_condition or None, right_condition=trial.right_condition or None,
                **measured))
            completed = answered + 1 == row.n_trials
            if completed:
                conn.execute(participants.update().where(_P.id == row.id)
                             .values(status="completed", completed_at=now))
            elif row.status == "consented":
                conn.execute(participants.update().where(_P.id == row.id)
                             .values(status="in_progress", started_at=now))
            return AnswerOutcome("recorded", trial_index, trial.kind, correct, chosen_side, completed)

        try:
            return self._write(write)
        except IntegrityError:
            # Only reachable where row locks are not available: a concurrent identical submit won.
            with self._read() as conn:
                row = conn.execute(_ANSWER_STATE, {"token": token, "trial": trial_index}).first()
                if row is None:
                    raise UnknownParticipant("unknown participant link (or the answers were withdrawn)") from None
                return self._stored_outcome(conn, row, trial_index, row.answered)

    @staticmethod
    def _stored_outcome(conn, row, trial_index: int, answered: int) -> AnswerOutcome:
        stored = conn.execute(_STORED_ANSWER, {"pid": row.id, "trial": trial_index}).first()
        if stored is None:
            raise NotCurrentTrial(f"trial {trial_index} is not the current trial ({answered})")
        return AnswerOutcome("duplicate", trial_index, stored.kind, bool(stored.correct), stored.chosen_side,
                             answered >= row.n_trials)

    def answers(self, token: str) -> list[dict]:
        """The participant's stored answers in trial order (for the debrief)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(responses).join(participants)
                                .where(_P.token == token).order_by(_R.trial_index)).mappings()
            return [dict(r) for r in rows]

    # -- withdrawal ---------------------------------------------------------------------------------
    def _delete_participant(self, where, phase: str, code: str | None = None) -> bool:
        def delete(conn):
            pid = conn.execute(sa.select(_P.id).where(where).with_for_update()).scalar()
            if pid is None:
                return False
            conn.execute(trial_events.delete().where(_E.participant_id == pid))
            conn.execute(responses.delete().where(_R.participant_id == pid))
            conn.execute(participants.delete().where(_P.id == pid))
            conn.execute(withdrawals.insert().values(phase=phase, at=_utcnow(), participant=pid,
                                                     code_hash=_code_hash(code) if code else None))
            return True
        deleted = self._write(delete)
        if deleted and self.sqlite:
            self._checkpoint()
        return deleted

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file and empty it, so that a withdrawal's old pages do not
        stay in the WAL (secure_delete has already overwritten them in the pages written back).
        Best effort: a reader holding an old snapshot can keep it from completing."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except sa.exc.OperationalError:   # pragma: no cover - busy; the next checkpoint catches up
            pass

    def withdraw(self, token: str) -> bool:
        """Delete the participant and all their answers (withdrawal during the study)."""
        return self._delete_participant(_P.token == token, "during")

    def withdraw_by_code(self, deletion_code: str) -> WithdrawalOutcome:
        """Delete the participant holding this deletion code (withdrawal after the study). The outcome
        says "deleted", "already_withdrawn" (the code was used before) or "unknown"."""
        code = normalise_code(deletion_code)
        if self._delete_participant(_P.deletion_code == code, "after", code):
            return WithdrawalOutcome("deleted")
        with self._read() as conn:
            used = conn.execute(sa.select(withdrawals.c.id)
                                .where(withdrawals.c.code_hash == _code_hash(code))).first() is not None
        return WithdrawalOutcome("already_withdrawn" if used else "unknown")

    def withdrawals_since(self, since: datetime | None) -> list[dict]:
        """Withdrawals (when, participant number) after `since` (all of them for None), oldest first."""
        query = sa.select(withdrawals.c.at, withdrawals.c.participant, withdrawals.c.phase).order_by(withdrawals.c.id)
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        for r in rows:
            if r["at"].tzinfo is None:   # SQLite hands back naive datetimes; every stored time is UTC
                r["at"] = r["at"].replace(tzinfo=timezone.utc)
        return [r for r in rows if since is None or r["at"] > since]

    # -- reporting ------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Live counts, read fresh (never cached)."""
        with self._read() as conn:
            by_status = dict(conn.execute(sa.select(_P.status, sa.func.count()).group_by(_P.status)).all())
            withdrawn = self._withdrawn_count(conn)
            n_answers = conn.execute(sa.select(sa.func.count()).select_from(responses)).scalar()
        return {
            "started": sum(by_status.values()) + withdrawn,  # everyone who consented
            "in_progress": by_status.get("consented", 0) + by_status.get("in_progress", 0),
            "completed": by_status.get("completed", 0),
            "withdrawn": withdrawn,
            "answers": n_answers,
        }

    def fingerprint_counts(self) -> dict[str, int]:
        """{study fingerprint: participants} of everyone in the study."""
        with self._read() as conn:
            return dict(conn.execute(sa.select(_P.study_fingerprint, sa.func.count())
                                     .group_by(_P.study_fingerprint)).all())

    def participant_rows(self) -> list[dict]:
        """One dict per participant, in arrival order, without the link token and deletion code
        (the participants table of `Study.participants`); `conditions` is the list assigned."""
        query = (sa.select(
            _P.id.label("participant"), _P.status.label("participant_status"),
            _P.study_fingerprint, _P.conditions, _P.n_trials, _P.platform_id, _P.consented_at, _P.started_at,
            _P.completed_at)
            .order_by(_P.id))
        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        for r in rows:
            r["conditions"] = json.loads(r["conditions"])
        return rows

    def trial_rows(self) -> list[dict]:
        """One dict per stored answer, joined with its participant (export and statistics)."""
        query = (sa.select(
            _P.id.label("participant"), _P.status.label("participant_status"),
            _P.study_fingerprint, _P.platform_id, _P.platform_info,
            _P.consented_at, _P.completed_at.label("participant_completed_at"),
            _R.trial_index, _R.kind.label("trial_kind"), _R.condition,
            _R.real_image, _R.fake_image, _R.real_side, _R.chosen_side,
            _R.correct, _R.rt_ms, _R.client_rt_ms, _R.exposure_ms,
            _R.focus_losses, _R.window_size, _R.target_exposure_ms, _R.views, _R.too_fast_attempts,
            _R.display_scale, _R.left_condition, _R.right_condition,
            _R.shown_at, _R.answered_at)
            .join(participants, _R.participant_id == _P.id)
            .order_by(_P.id, _R.trial_index))
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
