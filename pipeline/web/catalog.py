"""Search over every transcript in the outbox, and per-job figures for ``/metrics``.

A small SQLite database beside the ledger (``<workdir>/web-catalog.sqlite3``) holds, for
each ``done`` job with a JSON output: its text in an FTS5 table (the ``trigram``
tokenizer, so a search finds any substring of three characters or more in any script —
Chinese has no spaces to split words at; shorter queries fall back to ``LIKE``; the
snippet around the first match is cut here, as FTS5 would cut trigrams), its
audio duration, and each stage's seconds. It is derived data: ``sync`` adds the jobs it
has not seen from the ledger, an edit re-indexes its job, and deleting the file only
makes it rebuild. So is damage: a file SQLite calls damaged (garbage bytes, a torn page, a
missing table) at open or at any query is deleted, made again empty and refilled from the
ledger, once per damage, with one log line; the query then runs again. Other database
errors (locked, read-only, disk full) are not damage: they raise :class:`CatalogUnavailable`
with a one-line message, and the file is left alone.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from hushdrop.pipeline.logs import log
from hushdrop.pipeline.watch.ledger import Ledger, State, is_corruption
from hushdrop.pipeline.names import display_name

T = TypeVar("T")

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
MAX_QUERY_CHARS = 500
_DAMAGE_WORDS = ("malformed", "not a database", "corrupt", "no such table", "no such column")
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
    except (ValueError, RecursionError):  # not JSON, or nested deeper than a parser should follow
        return None
    return record if isinstance(record, dict) else None


def _seconds(value: Any) -> float | None:
    """A number of seconds from a JSON output, or None where it is not a finite, non-negative number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def well_formed(record: dict[str, Any]) -> bool:
    """Whether a JSON output has the shape hushdrop writes, in every field the page reads, shows or
    edits (numbers are finite numbers, texts are strings, lists hold objects). A damaged or hostile
    output fails, and the page treats it as missing rather than answer 500."""

    def number(value: Any) -> bool:
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))

    def text(value: Any) -> bool:
        return value is None or isinstance(value, str)

    def objects(value: Any) -> bool:
        return value is None or (isinstance(value, list) and all(isinstance(item, dict) for item in value))

    audio, engine, segments = record.get("audio"), record.get("engine"), record.get("segments")
    if not (audio is None or isinstance(audio, dict)) or not (engine is None or isinstance(engine, dict)):
        return False
    audio = audio or {}
    if not all(number(audio.get(k)) for k in ("duration_s", "decoded_s", "sample_rate", "channels", "size_bytes")):
        return False
    if not (text(record.get("language")) and number(record.get("language_probability")) and text(record.get("edited_at"))):
        return False
    if not (objects(segments) and objects(record.get("events")) and objects(record.get("stages"))):
        return False
    if not (record.get("notes") is None or isinstance(record.get("notes"), list)):
        return False
    for segment in segments or []:
        if not (text(segment.get("text")) and text(segment.get("raw_text")) and number(segment.get("start"))
                and number(segment.get("end")) and objects(segment.get("words"))):
            return False
        if not all(number(w.get("start")) and number(w.get("end")) for w in segment.get("words") or []):
            return False
    return all(number(e.get("start")) and number(e.get("end")) for e in record.get("events") or []) and all(
        number(st.get("seconds")) for st in record.get("stages") or []
    )


def _items(value: Any) -> list[dict]:
    """The objects in a JSON list (anything else in a hostile or damaged output is skipped)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def json_output(outputs: list[Path]) -> Path | None:
    return next((p for p in outputs if p.name.endswith(".json")), None)


def query_problem(query: str) -> str | None:
    """Why a search text is refused (400), or None: too long, or holding a control character
    such as NUL, which would cut the full-text query short."""
    if len(query) > MAX_QUERY_CHARS:
        return f"the search text is {len(query)} characters long; search for at most {MAX_QUERY_CHARS}"
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r" for c in query):
        return "the search text holds a control character (such as NUL); search for plain text"
    return None


class CatalogUnavailable(Exception):
    """The catalog cannot be read or written for a reason other than damage (locked, read-only, disk full)."""


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Is this error the file's fault (so deleting and rebuilding it helps)?"""
    text = str(exc).lower()
    return is_corruption(exc) or any(word in text for word in _DAMAGE_WORDS)


class Catalog:
    """The derived search catalog; ``ledger`` (when given) is what a damaged file is refilled from."""

    def __init__(self, path: Path, ledger: Ledger | None = None):
        self.path = path
        self.ledger = ledger
        self._lock = threading.RLock()  # held through a rebuild and its refill, so nobody reads it half-filled
        self._generation = 0  # how many times the file was made again: one rebuild per damage
        try:
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    raise
                self._replace_damaged(exc)
                self._db = self._open()  # empty: the first sync fills it
        except sqlite3.DatabaseError as exc:
            raise CatalogUnavailable(_unavailable(exc)) from exc

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM jobs").fetchone()
            os.chmod(self.path, 0o600)
        except BaseException:
            db.close()
            raise
        return db

    def _replace_damaged(self, exc: sqlite3.DatabaseError) -> None:
        """Delete the damaged file (and its WAL) so the next open starts empty."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
        log().warning(
            "the search catalog %s was damaged (%s); it is derived data, so it was deleted and is being rebuilt "
            "from the ledger", self.path.name, exc,
        )

    def _rebuild(self, generation: int, exc: sqlite3.DatabaseError) -> None:
        """Make the file again and refill it, unless another thread already did since ``generation``."""
        with self._lock:
            if generation != self._generation:
                return
            self._generation += 1
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._replace_damaged(exc)
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as again:
                raise CatalogUnavailable(_unavailable(again)) from again
            if self.ledger is not None:
                self.sync(self.ledger)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(db)`` under the lock; on damage the file is rebuilt and ``work`` runs once more."""
        for attempt in (1, 2):
            with self._lock:
                generation = self._generation
                try:
                    return work(self._db)
                except sqlite3.DatabaseError as exc:
                    if self._db.in_transaction:
                        try:
                            self._db.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    failure = exc
            if attempt == 2 or not is_damage(failure):
                raise CatalogUnavailable(_unavailable(failure)) from failure
            self._rebuild(generation, failure)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- indexing ---------------------------------------------------------------------

    def sync(self, ledger: Ledger) -> int:
        """Index every done job (with its own JSON output) not indexed yet; returns how many."""
        known = self._run(lambda db: {r[0] for r in db.execute("SELECT id FROM jobs")})
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
        record = record or {}  # every field read as the type hushdrop writes, whatever the file holds
        audio = record.get("audio") if isinstance(record.get("audio"), dict) else {}
        audio_s = _seconds(audio.get("decoded_s")) or _seconds(audio.get("duration_s"))
        text = "\n".join(s["text"] for s in _items(record.get("segments")) if isinstance(s.get("text"), str))
        stages = [
            (s["name"], _seconds(s.get("seconds")) or 0.0)
            for s in _items(record.get("stages")) if isinstance(s.get("name"), str) and s["name"]
        ]
        language = record.get("language") if isinstance(record.get("language"), str) else None
        if language and record.get("task") == "translate":  # the text is English: say both
            language = f"{language} → en"
        shown = display_name(name)

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM docs WHERE rowid = ?", (job_id,))
            db.execute("DELETE FROM stage_times WHERE job_id = ?", (job_id,))
            db.execute(
                "INSERT OR REPLACE INTO jobs (id, profile, name, language, audio_s, finished_at, json_path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, profile, shown, language, audio_s, finished_at, str(path) if path else None),
            )
            if record:
                db.execute("INSERT INTO docs (rowid, name, text) VALUES (?, ?, ?)", (job_id, shown, text))
                db.executemany(
                    "INSERT INTO stage_times (job_id, stage, seconds) VALUES (?, ?, ?)", [(job_id, n, s) for n, s in stages]
                )
            db.execute("COMMIT")

        self._run(write)

    # -- search -----------------------------------------------------------------------

    def search(self, query: str, limit: int = 50) -> list[Hit]:
        """Transcripts holding ``query`` (whitespace folded, at most 200 characters), newest first.

        The text is only ever a bound parameter (an FTS5 phrase, or a ``LIKE`` pattern); a NUL
        would end the FTS5 query text early, so callers refuse it (see ``check_query``)."""
        query = " ".join(query.replace("\x00", " ").split())[:200]
        if not query:
            return []

        def find(db: sqlite3.Connection) -> list:
            if len(query) >= 3:
                phrase = '"' + query.replace('"', '""') + '"'
                return db.execute(
                    "SELECT docs.rowid, docs.text, jobs.name, jobs.profile, jobs.language, jobs.finished_at"
                    " FROM docs JOIN jobs ON jobs.id = docs.rowid WHERE docs MATCH ?"
                    " ORDER BY jobs.finished_at DESC LIMIT ?",
                    (phrase, limit),
                ).fetchall()
            # shorter than a trigram: a scan (LIKE), still over the catalog only
            like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            return db.execute(
                "SELECT docs.rowid, docs.text, jobs.name, jobs.profile, jobs.language, jobs.finished_at"
                " FROM docs JOIN jobs ON jobs.id = docs.rowid WHERE docs.text LIKE ? ESCAPE '\\'"
                " OR docs.name LIKE ? ESCAPE '\\' ORDER BY jobs.finished_at DESC LIMIT ?",
                (like, like, limit),
            ).fetchall()

        rows = [(r[0], _own_snippet(r[1], query), *r[2:]) for r in self._run(find)]
        return [Hit(r[0], r[2], r[3], r[4], r[5], _parts(r[1])) for r in rows]

    # -- figures for /metrics ------------------------------------------------------------

    def audio_seconds(self) -> float:
        return float(self._run(lambda db: db.execute("SELECT COALESCE(SUM(audio_s), 0) FROM jobs").fetchone()[0]))

    def stage_histogram(self, buckets: tuple[float, ...]) -> dict[str, tuple[list[int], int, float]]:
        """stage → (cumulative count per bucket, count, sum of seconds)."""
        columns = ", ".join(f"SUM(seconds <= {b!r})" for b in buckets)
        rows = self._run(lambda db: db.execute(
            f"SELECT stage, {columns}, COUNT(*), SUM(seconds) FROM stage_times GROUP BY stage ORDER BY stage"
        ).fetchall())
        return {r[0]: ([int(v or 0) for v in r[1:1 + len(buckets)]], int(r[-2]), float(r[-1] or 0.0)) for r in rows}


def _unavailable(exc: sqlite3.Error) -> str:
    return f"the search catalog cannot be used right now ({exc}); try again in a moment"


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
