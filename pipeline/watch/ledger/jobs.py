"""The job table's rows and rules: the one job state machine.

::

    seen ──► claimed ──► processing ──► committed ──► done
      │         ▲  │          │  │
      ▼         │  │          │  └──► quarantined
    abandoned   │  │          ▼
                │  └─(dup)─► committed
                └─────────── failed  (retry due)

- ``seen``: a settled inbox file is about to be claimed; its spool path is already
  chosen, so a crash between the two can be finished from either side.
- ``claimed``: the original is ours, in the spool, with its content hash (``failed``
  straight from here when that original cannot be read).
- ``processing``: a worker has it. ``outputs`` holds the planned output paths
  *before* they are written, and ``output_ids`` the (device, inode) of the files about to
  get those names, so recovery can tell a complete set from a partial one and removes
  only files that are this job's own.
- ``committed``: every output is on disk; only the original's retirement is left.
- ``done`` / ``quarantined`` / ``abandoned``: terminal. ``abandoned`` is a ``seen``
  file that went away before it could be claimed (the user took it back), or a
  claimed original that someone else deleted from the spool.

Names and paths are stored as the filesystem's bytes (``os.fsencode``), so a name
that is not valid UTF-8 is kept exactly. ``device`` and ``inode`` identify the
claimed original, so nothing but that very file is ever shredded.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


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
    # committed: a skipped duplicate; failed: its claimed original cannot be read
    State.CLAIMED: frozenset({State.PROCESSING, State.COMMITTED, State.FAILED, State.QUARANTINED, State.ABANDONED}),
    # claimed: released / redo
    State.PROCESSING: frozenset({State.COMMITTED, State.FAILED, State.QUARANTINED, State.CLAIMED}),
    State.FAILED: frozenset({State.CLAIMED, State.QUARANTINED}),
    State.COMMITTED: frozenset({State.DONE}),
    State.DONE: frozenset(),
    State.QUARANTINED: frozenset(),
    State.ABANDONED: frozenset(),
}

STATES = tuple(State)


class TransitionError(RuntimeError):
    """A state change the state machine does not allow (a bug, never a user error)."""


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
    # where a processing job is: stage number stage_index (from 0) of stage_count, ``progress``
    # (0–1) of the way through that stage; the whole run's progress is chain_progress()
    stage_index: int | None = None
    stage_count: int | None = None
    # who is waiting (``Priority``), and what the upload asked beyond its profile
    priority: int = 0
    task: str | None = None  # None: the profile's
    prompt: str | None = None  # words added to the profile's glossary for this job
    request_id: str | None = None  # the API request waiting for this job's record
    write_outputs: bool = True  # False: the record only, for the request (language detection)
    # (device, inode) of each file about to take an ``outputs`` name, recorded before it does
    output_ids: list[tuple[int, int]] = field(default_factory=list)

    def chain_progress(self) -> float:
        """How far through its whole chain the job is (0–1)."""
        count = max(1, self.stage_count or 1)
        return min(1.0, max(0.0, ((self.stage_index or 0) + (self.progress or 0.0)) / count))

    @property
    def identity(self) -> tuple[int, int] | None:
        """(device, inode) of the claimed original in the spool."""
        return (self.device, self.inode) if self.device is not None and self.inode is not None else None

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> "JobRow":
        data = dict(row)
        data["state"] = State(data["state"])
        data["name"] = stored_name(data["name"])
        data["inbox_path"] = Path(stored_name(data["inbox_path"]))
        data["spool_path"] = Path(stored_name(data["spool_path"]))
        data["outputs"] = [Path(p) for p in json.loads(data["outputs"] or "[]")]
        data["quarantine_path"] = Path(stored_name(data["quarantine_path"])) if data["quarantine_path"] else None
        data["write_outputs"] = bool(data["write_outputs"])
        data["output_ids"] = [(int(d), int(i)) for d, i in json.loads(data["output_ids"] or "[]")]
        return cls(**data)


NAME_FIELDS = {"name", "inbox_path", "spool_path", "quarantine_path"}
COLUMNS = set(JobRow.__dataclass_fields__) - {"id", "state"}


def stored_name(value: bytes | str) -> str:
    """A stored name back as Python's ``str`` for a file name (surrogate escapes for odd bytes)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def encode_field(field: str, value: Any) -> Any:
    if field == "outputs":
        # outputs get names hushdrop made (valid UTF-8), so JSON text holds them exactly
        return json.dumps([str(p) for p in value or []])
    if field == "output_ids":
        return json.dumps([[int(d), int(i)] for d, i in value or []])
    if field in NAME_FIELDS and value is not None:
        return os.fsencode(str(value))
    return value
