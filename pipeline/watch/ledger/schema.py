"""The ledger's tables, and the steps that bring an older ledger file up to them.

:data:`SCHEMA` is the one description of the tables: a new ledger is made from it. An
existing file carries its schema version in SQLite's ``PRAGMA user_version`` and is brought
forward by the :data:`MIGRATIONS` after it, in one transaction, when it is opened. A file from
before versions (``user_version`` 0) is migrated from step 1.

To change the schema: edit :data:`SCHEMA` and append a step to :data:`MIGRATIONS` that
makes the same change to a file at the previous version (tests/pipeline/test_ledger_schema.py
checks that both give the same tables).
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from hushdrop.pipeline.errors import HushdropError

SCHEMA = (
    """CREATE TABLE jobs (
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
        interruptions   INTEGER NOT NULL DEFAULT 0,
        language        TEXT,
        stage_index     INTEGER,
        stage_count     INTEGER,
        priority        INTEGER NOT NULL DEFAULT 0,
        task            TEXT,
        prompt          TEXT,
        request_id      TEXT,
        write_outputs   INTEGER NOT NULL DEFAULT 1,
        output_ids      TEXT
    )""",
    "CREATE INDEX jobs_state ON jobs(state)",
    "CREATE INDEX jobs_hash ON jobs(content_hash, profile)",
    "CREATE INDEX jobs_inbox ON jobs(inbox_path, state)",
    "CREATE INDEX jobs_request ON jobs(request_id)",
    """CREATE TABLE service (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE uploads (
        inbox_path TEXT PRIMARY KEY,
        profile    TEXT NOT NULL,
        language   TEXT,
        device     INTEGER NOT NULL,
        inode      INTEGER NOT NULL,
        size       INTEGER NOT NULL,
        mtime_ns   INTEGER NOT NULL,
        created_at REAL NOT NULL,
        priority   INTEGER NOT NULL DEFAULT 1,
        task       TEXT,
        prompt     TEXT,
        request_id TEXT,
        write_outputs INTEGER NOT NULL DEFAULT 1
    )""",
    """CREATE TABLE results (
        job_id     INTEGER PRIMARY KEY,
        record     TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
)


def _add_column(db: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _versioned(db: sqlite3.Connection) -> None:
    """A ledger from before schema versions: the tables, indexes and columns it may lack."""
    db.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state)")
    db.execute("CREATE INDEX IF NOT EXISTS jobs_hash ON jobs(content_hash, profile)")
    db.execute("CREATE INDEX IF NOT EXISTS jobs_inbox ON jobs(inbox_path, state)")
    db.execute("CREATE TABLE IF NOT EXISTS service (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS uploads (inbox_path TEXT PRIMARY KEY, profile TEXT NOT NULL, language TEXT, "
        "device INTEGER NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
        "created_at REAL NOT NULL)"
    )
    for column, kind in (
        ("device", "INTEGER"),
        ("inode", "INTEGER"),
        ("env_failures", "INTEGER NOT NULL DEFAULT 0"),
        ("env_since", "REAL"),
        ("interruptions", "INTEGER NOT NULL DEFAULT 0"),
        ("language", "TEXT"),
    ):
        _add_column(db, "jobs", column, kind)


def _stage_position(db: sqlite3.Connection) -> None:
    """``progress`` becomes the fraction of the current stage; ``stage_index`` / ``stage_count``
    say which stage of how many, so readers work out the whole run's progress themselves."""
    _add_column(db, "jobs", "stage_index", "INTEGER")
    _add_column(db, "jobs", "stage_count", "INTEGER")


def _requests(db: sqlite3.Connection) -> None:
    """A job's priority (the API's before the page's uploads before the folder's), what a request
    asked of it beyond the profile (``task``, ``prompt``, no outputs), the request that waits for
    it, and the ``results`` that request takes its record from."""
    asked = (("task", "TEXT"), ("prompt", "TEXT"), ("request_id", "TEXT"), ("write_outputs", "INTEGER NOT NULL DEFAULT 1"))
    for column, kind in (("priority", "INTEGER NOT NULL DEFAULT 0"), *asked):
        _add_column(db, "jobs", column, kind)
    db.execute("CREATE INDEX IF NOT EXISTS jobs_request ON jobs(request_id)")
    for column, kind in (("priority", "INTEGER NOT NULL DEFAULT 1"), *asked):
        _add_column(db, "uploads", column, kind)
    db.execute("CREATE TABLE IF NOT EXISTS results (job_id INTEGER PRIMARY KEY, record TEXT NOT NULL, created_at REAL NOT NULL)")


def _output_identities(db: sqlite3.Connection) -> None:
    """The (device, inode) of each output a commit is about to link (``output_ids``), so that a
    restart removes only files that are provably this job's, never another writer's under a
    planned name."""
    _add_column(db, "jobs", "output_ids", "TEXT")


# Step i takes a ledger at version i to version i + 1. Append; never change a step that has shipped.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _versioned,
    _stage_position,
    _requests,
    _output_identities,
)
VERSION = len(MIGRATIONS)


class LedgerTooNew(HushdropError):
    """The ledger was written by a newer hushdrop, whose tables this one does not know."""

    def __init__(self, path: object, version: int):
        super().__init__(
            f"the ledger {path} has schema version {version}, newer than this hushdrop knows ({VERSION}): "
            f"it was written by a newer hushdrop; run that one, or upgrade this one"
        )


def prepare(db: sqlite3.Connection, path: object) -> None:
    """Create the tables in an empty file, or migrate an older one; one transaction, so two processes
    opening the same file at once (the watcher and the page) cannot both do it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > VERSION:
            raise LedgerTooNew(path, version)
        empty = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone()[0] == 0
        if empty:
            for statement in SCHEMA:
                db.execute(statement)
        else:
            for step in MIGRATIONS[version:]:
                step(db)
        if version != VERSION:
            db.execute(f"PRAGMA user_version = {VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
