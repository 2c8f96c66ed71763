"""The ledger: one SQLite row per job, and the one job state machine.

::

    seen ──► claimed ──► processing ──► committed ──► done
      │         ▲  │          │  │
      ▼         │  │          │  └──► quarantined
    abandoned   │  │          ▼
                │  └─(dup)─► committed
                └─────────── failed  (retry due)

- ``seen``: a settled inbox file is about to be claimed; its spool path is already
  chosen, so a crash between the two can be finished from either side.
- ``claimed``: the original is ours, in the spool, with its content hash.
- ``processing``: a worker has it. ``outputs`` holds the planned output paths
  *before* they are written, so recovery can tell a complete set from a partial one.
- ``committed``: every output is on disk; only the original's retirement is left.
- ``done`` / ``quarantined`` / ``abandoned``: terminal. ``abandoned`` is a ``seen``
  file that went away before it could be claimed (the user took it back), or a
  claimed original that someone else deleted from the spool.

Names and paths are stored as the filesystem's bytes (``os.fsencode``), so a name
that is not valid UTF-8 is kept exactly. ``device`` and ``inode`` identify the
claimed original, so nothing but that very file is ever shredded.

Every change of state is one transaction through :meth:`Ledger.transition`, which
refuses a move the table below does not allow; :meth:`Ledger.update` changes fields
without changing the state. Rows are never deleted: a claim is
an UPDATE, so a crash can never lose a job (rq's registry, not huey's DELETE).
The database runs in WAL mode so ``hushdrop status`` can read while the watcher writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterator

from hushdrop.pipeline.errors import HushdropError

class State(StrEnum):
    """A job's state; the values are what the ledger stores."""

    SEEN = "seen"
    CLAIMED = "claimed"
    PROCESSING = "processing"
    COMMITTED = "committed"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    ABANDONED = "abandoned"


TERMINAL = frozenset({State.DONE, State.QUARANTINED, State.ABANDONED})
ACTIVE = frozenset(State) - TERMINAL  # the original is (or may be) in the spool or inbox
WAITING = frozenset({State.CLAIMED, State.FAILED})  # queued: not on a worker yet

TRANSITIONS: dict[State, frozenset[State]] = {
    State.SEEN: frozenset({State.CLAIMED, State.ABANDONED}),
    # committed: a skipped duplicate
    State.CLAIMED: frozenset({State.PROCESSING, State.COMMITTED, State.QUARANTINED, State.ABANDONED}),
    # claimed: released / redo
    State.PROCESSING: frozenset({State.COMMITTED, State.FAILED, State.QUARANTINED, State.CLAIMED}),
    State.FAILED: frozenset({State.CLAIMED, State.QUARANTINED}),
    State.COMMITTED: frozenset({State.DONE}),
    State.DONE: frozenset(),
    State.QUARANTINED: frozenset(),
    State.ABANDONED: frozenset(),
}

STATES = tuple(State)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    state           TEXT NOT NULL,
    profile         TEXT NOT NULL,
    name            TEXT NOT NULL,
    inbox_path      TEXT NOT NULL,
    spool_path      TEXT NOT NULL,
    size            INTEGER,
    mtime_ns        INTEGER,
    content_hash    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    worker          TEXT,
    stage           TEXT,
    progress        REAL,
    error_stage     TEXT,
    error           TEXT,
    outputs         TEXT,
    duplicate_of    INTEGER,
    quarantine_path TEXT,
    retention       TEXT,
    created_at      REAL NOT NULL,
    claimed_at      REAL,
    started_at      REAL,
    finished_at     REAL,
    updated_at      REAL NOT NULL,
    device          INTEGER,
    inode           INTEGER,
    env_failures    INTEGER NOT NULL DEFAULT 0,
    env_since       REAL,
    interruptions   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_hash ON jobs(content_hash, profile);
CREATE INDEX IF NOT EXISTS jobs_inbox ON jobs(inbox_path, state);
CREATE TABLE IF NOT EXISTS service (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- files the web page renamed into an inbox, with the language chosen for them; intake
-- consults it when it claims the file (matched by path, inode, size and mtime), so the choice reaches
-- the job through the ledger, never through the file name
CREATE TABLE IF NOT EXISTS uploads (
    inbox_path TEXT PRIMARY KEY,
    profile    TEXT NOT NULL,
    language   TEXT,
    device     INTEGER NOT NULL,
    inode      INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""


# columns added after the first release, for ledgers created before them
_ADDED_COLUMNS = {
    "device": "INTEGER",
    "inode": "INTEGER",
    "env_failures": "INTEGER NOT NULL DEFAULT 0",
    "env_since": "REAL",
    "interruptions": "INTEGER NOT NULL DEFAULT 0",
    "language": "TEXT",  # a per-job language override (an upload's choice); NULL: the profile's
}


class TransitionError(RuntimeError):
    """A state change the state machine does not allow (a bug, never a user error)."""


class LedgerCorrupt(HushdropError):
    """The ledger file is damaged; the service stops rather than act on a wrong view of its jobs."""

    def __init__(self, path: Path, detail: str):
        self.path = path
        super().__init__(
            f"the ledger {path} is damaged ({detail}).\n"
            f"  Nothing was lost: originals are still in the spool, transcripts in the outbox.\n"
            f"  To recover, stop hushdrop and run `hushdrop doctor --rebuild-ledger`: it moves the damaged\n"
            f"  file aside and rebuilds the queue from the spool (each original there is transcribed again)."
        )


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return type(exc) is sqlite3.DatabaseError or "malformed" in text or "not a database" in text


@dataclass(frozen=True)
class JobRow:
    id: int
    state: State
    profile: str
    name: str
    inbox_path: Path
    spool_path: Path
    size: int | None
    mtime_ns: int | None
    content_hash: str | None
    attempts: int
    next_attempt_at: float | None
    worker: str | None
    stage: str | None
    progress: float | None
    error_stage: str | None
    error: str | None
    outputs: list[Path]
    duplicate_of: int | None
    quarantine_path: Path | None
    retention: str | None
    created_at: float
    claimed_at: float | None
    started_at: float | None
    finished_at: float | None
    updated_at: float

    device: int | None = None
    inode: int | None = None
    env_failures: int = 0
    env_since: float | None = None
    interruptions: int = 0
    language: str | None = None

    @property
    def identity(self) -> tuple[int, int] | None:
        """(device, inode) of the claimed original in the spool."""
        return (self.device, self.inode) if self.device is not None and self.inode is not None else None

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> "JobRow":
        data = dict(row)
        data["state"] = State(data["state"])
        data["name"] = _text(data["name"])
        data["inbox_path"] = Path(_text(data["inbox_path"]))
        data["spool_path"] = Path(_text(data["spool_path"]))
        data["outputs"] = [Path(p) for p in json.loads(data["outputs"] or "[]")]
        data["quarantine_path"] = Path(_text(data["quarantine_path"])) if data["quarantine_path"] else None
        return cls(**data)


_NAME_FIELDS = {"name", "inbox_path", "spool_path", "quarantine_path"}
_COLUMNS = set(JobRow.__dataclass_fields__) - {"id", "state"}


def _text(value: bytes | str) -> str:
    """A stored name back as Python's ``str`` for a file name (surrogate escapes for odd bytes)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _encode(field: str, value: Any) -> Any:
    if field == "outputs":
        # outputs get names hushdrop made (valid UTF-8), so JSON text holds them exactly
        return json.dumps([str(p) for p in value or []])
    if field in _NAME_FIELDS and value is not None:
        return os.fsencode(str(value))
    return value


class Ledger:
    """The job table. Thread-safe: one connection, one lock, one transaction per change."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self._lock = threading.RLock()
        self.broken: LedgerCorrupt | None = None
        try:
            if readonly:
                uri = f"file:{self.path}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=10)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # a committed state survives power loss
                self._check_integrity()
                self._db.executescript(_SCHEMA)
                self._add_missing_columns()
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise LedgerCorrupt(self.path, str(exc)) from None
            raise

    def _check_integrity(self) -> None:
        problems = [r[0] for r in self._db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            self._db.close()
            raise LedgerCorrupt(self.path, "; ".join(problems[:3]))

    def _add_missing_columns(self) -> None:
        have = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)").fetchall()}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions -------------------------------------------------------

    def _tx(self) -> "_Tx":
        return _Tx(self)

    # -- the state machine ------------------------------------------------------

    def add(
        self, *, profile: str, name: str, inbox_path: Path, spool_path: Path, size: int, mtime_ns: int,
        state: State = State.SEEN, **fields: Any,
    ) -> int:
        """Record a settled file about to be claimed (or, rebuilding, one already claimed); returns the job id."""
        now = time.time()
        values = {
            "state": state, "profile": profile, "name": name, "inbox_path": inbox_path, "spool_path": spool_path,
            "size": size, "mtime_ns": mtime_ns, "created_at": now, "updated_at": now, **fields,
        }
        with self._tx() as db:
            cur = db.execute(
                f"INSERT INTO jobs ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
                tuple(_encode(k, v) for k, v in values.items()),
            )
            return int(cur.lastrowid)

    def transition(
        self, job_id: int, to: State, *, expect: State | tuple[State, ...] | None = None, **fields: Any
    ) -> JobRow:
        """Move job ``job_id`` to state ``to`` and set ``fields``, in one transaction.

        ``expect`` (a state or states) guards against acting on a stale view: the
        change happens only if the row is in one of them right now. A field change
        that keeps the state is :meth:`update`, not a transition.
        """
        return self._write(job_id, to, expect, fields)

    def update(self, job_id: int, *, expect: State | tuple[State, ...] | None = None, **fields: Any) -> JobRow:
        """Change fields of a job without changing its state (optionally only in the ``expect`` state)."""
        return self._write(job_id, None, expect, fields)

    def _write(
        self, job_id: int, to: State | None, expect: State | tuple[State, ...] | None, fields: dict[str, Any]
    ) -> JobRow:
        unknown = set(fields) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown job fields: {', '.join(sorted(unknown))}")
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise TransitionError(f"no job {job_id}")
            current = State(row["state"])
            if expect is not None and current not in ((expect,) if isinstance(expect, str) else expect):
                raise TransitionError(f"job {job_id} is {current!r}, expected {expect!r}")
            fields.setdefault("updated_at", now)
            if to is not None:
                if to not in TRANSITIONS[current]:
                    raise TransitionError(f"job {job_id}: {current} → {to} is not allowed")
                if to == State.CLAIMED and current == State.SEEN:
                    fields.setdefault("claimed_at", now)
                if to == State.PROCESSING:
                    fields.setdefault("started_at", now)
                if to in TERMINAL:
                    fields.setdefault("finished_at", now)
                fields["state"] = to
            names = ", ".join(f"{k} = ?" for k in fields)
            db.execute(
                f"UPDATE jobs SET {names} WHERE id = ?",
                (*(_encode(k, v) for k, v in fields.items()), job_id),
            )
            return JobRow.from_sql(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def start(self, job_id: int, worker: str) -> JobRow:
        """claimed → processing on ``worker``; counts an attempt."""
        with self._tx():
            job = self.get(job_id)
            return self.transition(
                job_id, State.PROCESSING, expect=State.CLAIMED, worker=worker, attempts=job.attempts + 1,
                stage=None, progress=0.0, outputs=[], next_attempt_at=None,
            )

    def release(self, job_id: int, *, count_attempt: bool = False, **fields: Any) -> JobRow:
        """processing → claimed: the job will run again (shutdown, crash recovery, redo)."""
        with self._tx():
            job = self.get(job_id)
            attempts = job.attempts if count_attempt else max(0, job.attempts - 1)
            return self.transition(
                job_id, State.CLAIMED, expect=State.PROCESSING, worker=None, stage=None, progress=None,
                outputs=[], attempts=attempts, **fields,
            )

    def progress(self, job_id: int, stage: str, fraction: float) -> None:
        """Not a state change: where a processing job is, for ``hushdrop status``."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET stage = ?, progress = ?, updated_at = ? WHERE id = ? AND state = ?",
                (stage, fraction, time.time(), job_id, State.PROCESSING),
            )

    def plan_outputs(self, job_id: int, outputs: list[Path]) -> None:
        """Record the output paths a processing job is about to write (before writing them)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET outputs = ?, updated_at = ? WHERE id = ? AND state = ?",
                (_encode("outputs", outputs), time.time(), job_id, State.PROCESSING),
            )
            if cur.rowcount != 1:
                raise TransitionError(f"job {job_id} is not processing")

    # -- queries ----------------------------------------------------------------

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """Run a query; damage found while reading marks the ledger broken and raises LedgerCorrupt."""
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise
                self.broken = self.broken or LedgerCorrupt(self.path, str(exc))
                raise self.broken from None

    def get(self, job_id: int) -> JobRow:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        row = rows[0] if rows else None
        if row is None:
            raise KeyError(job_id)
        return JobRow.from_sql(row)

    def _select(self, where: str, params: tuple = (), tail: str = "ORDER BY id") -> list[JobRow]:
        return [JobRow.from_sql(r) for r in self._read(f"SELECT * FROM jobs WHERE {where} {tail}", params)]

    def in_state(self, *states: State, limit: int | None = None, newest_first: bool = False) -> list[JobRow]:
        marks = ", ".join("?" for _ in states)
        tail = "ORDER BY " + ("COALESCE(finished_at, updated_at) DESC, id DESC" if newest_first else "id")
        if limit is not None:
            tail += f" LIMIT {int(limit)}"
        return self._select(f"state IN ({marks})", tuple(states), tail)

    def runnable(self, limit: int) -> list[JobRow]:
        """Claimed jobs in arrival order: what the executor may start next."""
        return self._select("state = ?", (State.CLAIMED,), f"ORDER BY id LIMIT {int(limit)}")

    def retries_due(self, now: float) -> list[JobRow]:
        return self._select("state = ? AND COALESCE(next_attempt_at, 0) <= ?", (State.FAILED, now))

    def same_content(self, job: JobRow) -> list[JobRow]:
        """Other jobs of the same profile with the same content hash, oldest first."""
        if not job.content_hash:
            return []
        return self._select(
            "content_hash = ? AND profile = ? AND id != ?", (job.content_hash, job.profile, job.id)
        )

    def counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self._read("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")}

    def count_active(self) -> int:
        marks = ", ".join("?" for _ in ACTIVE)
        return int(self._read(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", tuple(ACTIVE))[0][0])

    def all(self) -> Iterator[JobRow]:
        yield from self._select("1")

    def recent(self, limit: int) -> list[JobRow]:
        """The newest ``limit`` jobs, newest first (the web page's queue)."""
        return self._select("1", (), f"ORDER BY id DESC LIMIT {int(limit)}")

    # -- uploads from the web page ---------------------------------------------------

    def add_upload(self, inbox_path: Path, profile: str, language: str | None, st: os.stat_result) -> None:
        """Record an upload (``st``: its file's stat) about to be renamed to ``inbox_path`` (before the rename)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (inbox_path, profile, language, device, inode, size, mtime_ns, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (os.fsencode(str(inbox_path)), profile, language, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, time.time()),
            )

    def upload_language(self, inbox_path: Path, st: os.stat_result) -> str | None:
        """The language chosen for the upload that is this very file (same path, inode, size and mtime), or None."""
        rows = self._read(
            "SELECT language FROM uploads WHERE inbox_path = ? AND device = ? AND inode = ? AND size = ? AND mtime_ns = ?",
            (os.fsencode(str(inbox_path)), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns),
        )
        return rows[0]["language"] if rows else None

    def forget_upload(self, inbox_path: Path) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM uploads WHERE inbox_path = ?", (os.fsencode(str(inbox_path)),))

    def uploads(self) -> list[dict[str, Any]]:
        """Uploads not claimed yet, newest first."""
        return [
            {**dict(r), "inbox_path": Path(_text(r["inbox_path"]))}
            for r in self._read("SELECT * FROM uploads ORDER BY created_at DESC")
        ]

    # -- service facts (heartbeat, model, device) --------------------------------

    def set_service(self, **values: Any) -> None:
        with self._tx() as db:
            for key, value in values.items():
                db.execute(
                    "INSERT INTO service (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value)),
                )

    def service(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self._read("SELECT key, value FROM service")}


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK``), re-entrant within a thread."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        self.ledger._lock.acquire()
        db = self.ledger._db
        if not db.in_transaction:
            db.execute("BEGIN IMMEDIATE")
            self.outer = True
        return db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.outer:
                self.ledger._db.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.DatabaseError as failure:
            self._note_corruption(failure)
            raise
        finally:
            self.ledger._lock.release()
        if isinstance(exc, sqlite3.DatabaseError):
            self._note_corruption(exc)

    def _note_corruption(self, exc: sqlite3.DatabaseError) -> None:
        if is_corruption(exc) and self.ledger.broken is None:
            self.ledger.broken = LedgerCorrupt(self.ledger.path, str(exc))
