"""Search over every transcript in the outbox, and per-job figures for ``/metrics``.

A small SQLite database beside the ledger (``<workdir>/web-catalog.sqlite3``) holds, for
each ``done`` job with a JSON output: its text in an FTS5 table (the ``trigram``
tokenizer, so a search finds any substring of three characters or more in any script —
Chinese has no spaces to split words at; shorter queries fall back to ``LIKE``; the
snippet around the first match is cut here, as FTS5 would cut trigrams), its
audio duration, and each stage's seconds. It is derived data: ``sync`` adds the jobs it
has not seen from the ledger, an edit re-indexes its job, and deleting the file only
makes it rebuild.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.names import display_name

_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(name, text, tokenize='trigram');
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY,
    profile     TEXT NOT NULL,
    name        TEXT NOT NULL,
    language    TEXT,
    audio_s     REAL,
    finished_at REAL,
    json_path   TEXT
);
CREATE TABLE IF NOT EXISTS stage_times (
    job_id  INTEGER NOT NULL,
    stage   TEXT NOT NULL,
    seconds REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stage_times_job ON stage_times(job_id);
"""

MAX_JSON_BYTES = 64 << 20
_MARK_OPEN, _MARK_CLOSE = "\x02", "\x03"


@dataclass
class Hit:
    job_id: int
    name: str
    profile: str
    language: str | None
    finished_at: float | None
    snippet: list[tuple[str, bool]]  # (text, highlighted)


def read_json_output(path: Path) -> dict[str, Any] | None:
    """A JSON output, read without following a link; None if it is missing or not hushdrop's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not (os.fstat(fd).st_mode & 0o170000) == 0o100000 or os.fstat(fd).st_size > MAX_JSON_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    finally:
        os.close(fd)
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def json_output(outputs: list[Path]) -> Path | None:
    return next((p for p in outputs if p.name.endswith(".json")), None)


class Catalog:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        os.chmod(path, 0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- indexing ---------------------------------------------------------------------

    def sync(self, ledger: Ledger) -> int:
        """Index every done job (with its own JSON output) not indexed yet; returns how many."""
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT id FROM jobs")}
        added = 0
        for row in ledger.in_state(State.DONE):
            if row.id in known or row.duplicate_of is not None:
                continue
            path = json_output(row.outputs)
            record = read_json_output(path) if path else None
            self._store(row.id, row.profile, row.name, row.finished_at, path, record)
            added += 1
        return added

    def reindex(self, job_id: int, profile: str, name: str, finished_at: float | None, path: Path, record: dict) -> None:
        self._store(job_id, profile, name, finished_at, path, record)

    def _store(self, job_id: int, profile: str, name: str, finished_at: float | None,
               path: Path | None, record: dict | None) -> None:
        record = record or {}
        audio = record.get("audio") or {}
        audio_s = audio.get("decoded_s") or audio.get("duration_s")
        segments = record.get("segments") or []
        text = "\n".join(str(s.get("text") or "") for s in segments if isinstance(s, dict))
        stages = [
            (str(s.get("name")), float(s.get("seconds") or 0.0))
            for s in record.get("stages") or [] if isinstance(s, dict) and s.get("name")
        ]
        shown = display_name(name)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM docs WHERE rowid = ?", (job_id,))
            self._db.execute("DELETE FROM stage_times WHERE job_id = ?", (job_id,))
            self._db.execute(
                "INSERT OR REPLACE INTO jobs (id, profile, name, language, audio_s, finished_at, json_path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, profile, shown, record.get("language"), audio_s, finished_at, str(path) if path else None),
            )
            if record:
                self._db.execute("INSERT INTO docs (rowid, name, text) VALUES (?, ?, ?)", (job_id, shown, text))
                self._db.executemany(
                    "INSERT INTO stage_times (job_id, stage, seconds) VALUES (?, ?, ?)", [(job_id, n, s) for n, s in stages]
                )
            self._db.execute("COMMIT")

    # -- search -----------------------------------------------------------------------

    def search(self, query: str, limit: int = 50) -> list[Hit]:
        query = " ".join(query.split())[:200]
        if not query:
            return []
        with self._lock:
            if len(query) >= 3:
                phrase = '"' + query.replace('"', '""') + '"'
                found = self._db.execute(
                    "SELECT docs.rowid, docs.text, jobs.name, jobs.profile, jobs.language, jobs.finished_at"
                    " FROM docs JOIN jobs ON jobs.id = docs.rowid WHERE docs MATCH ?"
                    " ORDER BY jobs.finished_at DESC LIMIT ?",
                    (phrase, limit),
                ).fetchall()
            else:  # shorter than a trigram: a scan (LIKE), still over the catalog only
                like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                found = self._db.execute(
                    "SELECT docs.rowid, docs.text, jobs.name, jobs.profile, jobs.language, jobs.finished_at"
                    " FROM docs JOIN jobs ON jobs.id = docs.rowid WHERE docs.text LIKE ? ESCAPE '\\'"
                    " OR docs.name LIKE ? ESCAPE '\\' ORDER BY jobs.finished_at DESC LIMIT ?",
                    (like, like, limit),
                ).fetchall()
            rows = [(r[0], _own_snippet(r[1], query), *r[2:]) for r in found]
        return [Hit(r[0], r[2], r[3], r[4], r[5], _parts(r[1])) for r in rows]

    # -- figures for /metrics ------------------------------------------------------------

    def audio_seconds(self) -> float:
        with self._lock:
            return float(self._db.execute("SELECT COALESCE(SUM(audio_s), 0) FROM jobs").fetchone()[0])

    def stage_histogram(self, buckets: tuple[float, ...]) -> dict[str, tuple[list[int], int, float]]:
        """stage → (cumulative count per bucket, count, sum of seconds)."""
        columns = ", ".join(f"SUM(seconds <= {b!r})" for b in buckets)
        with self._lock:
            rows = self._db.execute(
                f"SELECT stage, {columns}, COUNT(*), SUM(seconds) FROM stage_times GROUP BY stage ORDER BY stage"
            ).fetchall()
        return {r[0]: ([int(v or 0) for v in r[1:1 + len(buckets)]], int(r[-2]), float(r[-1] or 0.0)) for r in rows}


def _own_snippet(text: str, query: str, width: int = 60) -> str:
    at = text.lower().find(query.lower())
    if at < 0:
        return text[: 2 * width] + ("…" if len(text) > 2 * width else "")
    start = max(0, at - width)
    end = min(len(text), at + len(query) + width)
    return (
        ("…" if start else "") + text[start:at] + _MARK_OPEN + text[at:at + len(query)] + _MARK_CLOSE
        + text[at + len(query):end] + ("…" if end < len(text) else "")
    )


def _parts(snippet: str) -> list[tuple[str, bool]]:
    parts: list[tuple[str, bool]] = []
    for i, piece in enumerate(snippet.replace(_MARK_CLOSE, _MARK_OPEN).split(_MARK_OPEN)):
        if piece:
            parts.append((piece, i % 2 == 1))
    return parts
