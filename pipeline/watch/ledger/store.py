"""The ledger file: one SQLite database, opened once per process, and the job table's face.

:class:`Ledger` owns the connection. Its own methods are the job table's: every change of
state is one transaction through :meth:`Ledger.transition`, which refuses a move
:data:`~hushdrop.pipeline.watch.ledger.jobs.TRANSITIONS` does not allow;
:meth:`Ledger.update` changes fields without changing the state. Rows are never deleted: a
claim is an UPDATE, so a crash can never lose a job. The other tables have their own
faces: ``ledger.uploads`` (:class:`~hushdrop.pipeline.watch.ledger.uploads.Uploads`),
``ledger.results`` (:class:`~hushdrop.pipeline.watch.ledger.results.Results`) and
``ledger.facts`` (:class:`~hushdrop.pipeline.watch.ledger.facts.ServiceFacts`).

The database runs in WAL mode so ``hushdrop status`` can read while the watcher writes;
opening it (not read-only) creates or migrates its tables (:mod:`.schema`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from hushdrop.pipeline.errors import HushdropError
from hushdrop.pipeline.watch.ledger.facts import ServiceFacts
from hushdrop.pipeline.watch.ledger.jobs import (
    ACTIVE, COLUMNS, TERMINAL, TRANSITIONS, JobRow, State, TransitionError, encode_field,
)
from hushdrop.pipeline.watch.ledger.schema import LedgerTooNew, prepare
from hushdrop.pipeline.watch.ledger.results import Results
from hushdrop.pipeline.watch.ledger.uploads import Uploads


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


class Ledger:
    """The ledger file and its job table. Thread-safe: one connection, one lock, one transaction per change."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self._lock = threading.RLock()
        self.broken: LedgerCorrupt | None = None
        self.uploads = Uploads(self)
        self.facts = ServiceFacts(self)
        self.results = Results(self)
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
                try:
                    prepare(self._db, self.path)
                except LedgerTooNew:
                    self._db.close()
                    raise
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
                tuple(encode_field(k, v) for k, v in values.items()),
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
        unknown = set(fields) - COLUMNS
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
                (*(encode_field(k, v) for k, v in fields.items()), job_id),
            )
            return JobRow.from_sql(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def start(self, job_id: int, worker: str) -> JobRow:
        """claimed → processing on ``worker``; counts an attempt."""
        with self._tx():
            job = self.get(job_id)
            return self.transition(
                job_id, State.PROCESSING, expect=State.CLAIMED, worker=worker, attempts=job.attempts + 1,
                stage=None, progress=0.0, outputs=[], output_ids=[], next_attempt_at=None,
            )

    def release(self, job_id: int, *, count_attempt: bool = False, **fields: Any) -> JobRow:
        """processing → claimed: the job will run again (shutdown, crash recovery, redo)."""
        with self._tx():
            job = self.get(job_id)
            attempts = job.attempts if count_attempt else max(0, job.attempts - 1)
            return self.transition(
                job_id, State.CLAIMED, expect=State.PROCESSING, worker=None, stage=None, progress=None,
                outputs=[], output_ids=[], attempts=attempts, **fields,
            )

    def progress(self, job_id: int, stage: str, fraction: float, stage_index: int, stage_count: int) -> None:
        """Not a state change: where a processing job is (``fraction`` of stage ``stage``, number
        ``stage_index`` of ``stage_count``), for ``hushdrop status`` and the page."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET stage = ?, progress = ?, stage_index = ?, stage_count = ?, updated_at = ? "
                "WHERE id = ? AND state = ?",
                (stage, fraction, stage_index, stage_count, time.time(), job_id, State.PROCESSING),
            )

    def plan_outputs(self, job_id: int, outputs: list[Path], identities: list[tuple[int, int]] | None = None) -> None:
        """Record the output paths a processing job is about to write (before writing them) and,
        once its files exist under temporary names, their (device, inode) ``identities`` (before
        they take those paths)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET outputs = ?, output_ids = ?, updated_at = ? WHERE id = ? AND state = ?",
                (encode_field("outputs", outputs), encode_field("output_ids", identities), time.time(), job_id,
                 State.PROCESSING),
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
        """Claimed jobs, the most urgent first (``priority``), then in arrival order: what the executor may start next."""
        return self._select("state = ?", (State.CLAIMED,), f"ORDER BY priority DESC, id LIMIT {int(limit)}")

    def for_request(self, request_id: str) -> JobRow | None:
        """The job an API request waits for, or None (not claimed yet)."""
        rows = self._select("request_id = ?", (request_id,), "ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

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

    def committed_outputs(self) -> dict[Path, set[int]]:
        """Every output path a committed or done job lists (the files hushdrop wrote and owns),
        with the jobs that list it (a duplicate lists its original's)."""
        listed: dict[Path, set[int]] = {}
        for row in self._read("SELECT id, outputs FROM jobs WHERE state IN (?, ?)", (State.COMMITTED, State.DONE)):
            for p in json.loads(row["outputs"] or "[]"):
                listed.setdefault(Path(p), set()).add(row["id"])
        return listed

    def forget_outputs(self, gone: dict[Path, set[int]]) -> int:
        """Take each path of ``gone`` (outputs hushdrop deleted, or found gone) out of the jobs
        given with it, the ones that listed it when it was found gone, so that nothing later
        takes a new file under that name for theirs: not a duplicate recording (it would be
        pointed at another recording's transcript), not the page, not the next expiry. A job
        that took the name since keeps it. Returns how many jobs changed."""
        by_job: dict[int, set[Path]] = {}
        for path, job_ids in gone.items():
            for job_id in job_ids:
                by_job.setdefault(job_id, set()).add(path)
        changed = 0
        with self._tx() as db:
            for job_id, paths in by_job.items():
                row = db.execute("SELECT outputs, output_ids FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    continue
                outputs = json.loads(row["outputs"] or "[]")
                keep = [i for i, p in enumerate(outputs) if Path(p) not in paths]
                if len(keep) == len(outputs):
                    continue
                ids = json.loads(row["output_ids"] or "[]")
                db.execute(
                    "UPDATE jobs SET outputs = ?, output_ids = ?, updated_at = ? WHERE id = ?",
                    (json.dumps([outputs[i] for i in keep]),
                     json.dumps([ids[i] for i in keep] if len(ids) == len(outputs) else []), time.time(), job_id),
                )
                changed += 1
        return changed

    def all(self) -> Iterator[JobRow]:
        yield from self._select("1")

    def recent(self, limit: int) -> list[JobRow]:
        """The newest ``limit`` jobs, newest first (the web page's queue)."""
        return self._select("1", (), f"ORDER BY id DESC LIMIT {int(limit)}")


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
