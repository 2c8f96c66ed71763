"""The ledger's one schema and its migrations: a file written by an older hushdrop opens, is
brought forward in place, and ends with exactly the tables a new ledger has."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hushdrop.pipeline.watch.ledger import Ledger, LedgerTooNew, State, UploadNote
from hushdrop.pipeline.watch.ledger.schema import VERSION

# What hushdrop wrote before ledgers had a schema version: the statements its Ledger ran on
# opening, copied here as they were (a file from then must still open).
UNVERSIONED = """
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
ALTER TABLE jobs ADD COLUMN language TEXT;
"""

# The first release's ledger: the job table without the columns added since, and no uploads table.
FIRST_RELEASE = """
CREATE TABLE jobs (
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
    updated_at      REAL NOT NULL
);
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE service (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def old_ledger(path: Path, statements: str) -> int:
    """A ledger file as an older hushdrop left it, holding one claimed job (its id)."""
    db = sqlite3.connect(path)
    db.executescript(statements)
    cur = db.execute(
        "INSERT INTO jobs (state, profile, name, inbox_path, spool_path, size, mtime_ns, content_hash, "
        "created_at, updated_at) VALUES ('claimed', 'default', ?, ?, ?, 10, 1, 'h', 1.0, 1.0)",
        (b"talk\xff.wav", b"/in/talk\xff.wav", b"/spool/1/talk\xff.wav"),
    )
    db.commit()
    db.close()
    return int(cur.lastrowid)


def tables(path: Path) -> dict[str, object]:
    """Every table's columns (name, type, not null, default, key) and every index, as SQLite reports them."""
    db = sqlite3.connect(path)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        shape: dict[str, object] = {name: db.execute(f"PRAGMA table_info({name})").fetchall() for name in names}
        shape["indexes"] = sorted(
            (name, table, db.execute(f"PRAGMA index_info({name})").fetchall())
            for name, table in db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
        )
        shape["user_version"] = db.execute("PRAGMA user_version").fetchone()[0]
        return shape
    finally:
        db.close()


@pytest.mark.parametrize("statements", [UNVERSIONED, FIRST_RELEASE], ids=["unversioned", "first-release"])
def test_an_older_ledger_opens_keeps_its_jobs_and_works(tmp_path, statements):
    path = tmp_path / "ledger.sqlite3"
    job = old_ledger(path, statements)
    ledger = Ledger(path)
    try:
        row = ledger.get(job)
        assert (row.state, row.name, row.content_hash) == (State.CLAIMED, "talk\udcff.wav", "h")
        assert (row.device, row.env_failures, row.interruptions, row.language) == (None, 0, 0, None)
        assert ledger.start(job, "worker-1").state == State.PROCESSING
        ledger.facts.set(heartbeat_at=2.0)
        assert ledger.facts.all() == {"heartbeat_at": 2.0}
        ledger.uploads.add(Path("/in/up.wav"), "default", UploadNote(language="de"), path.stat())
        assert [u["language"] for u in ledger.uploads.pending()] == ["de"]
    finally:
        ledger.close()


@pytest.mark.parametrize("statements", [UNVERSIONED, FIRST_RELEASE], ids=["unversioned", "first-release"])
def test_a_migrated_ledger_has_exactly_the_tables_of_a_new_one(tmp_path, statements):
    old_ledger(tmp_path / "old.sqlite3", statements)
    Ledger(tmp_path / "old.sqlite3").close()
    Ledger(tmp_path / "new.sqlite3").close()
    migrated, new = tables(tmp_path / "old.sqlite3"), tables(tmp_path / "new.sqlite3")
    assert migrated.pop("sqlite_sequence", None) is not None  # the old file has had a row
    new.pop("sqlite_sequence", None)
    assert migrated == new
    assert new["user_version"] == VERSION


def test_opening_a_current_ledger_again_changes_nothing(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    before = tables(path)
    Ledger(path).close()
    assert tables(path) == before


def test_a_ledger_from_a_newer_hushdrop_is_refused_untouched(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.execute("CREATE TABLE from_the_future (x)")
    db.close()
    with pytest.raises(LedgerTooNew, match=f"schema version {VERSION + 1}, newer than this hushdrop knows"):
        Ledger(path)
    assert tables(path)["user_version"] == VERSION + 1
