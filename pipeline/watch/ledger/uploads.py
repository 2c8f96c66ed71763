"""The ``uploads`` table: files the web page or the API renamed into an inbox, with what was asked for them.

Intake consults it when it claims the file, matched by path, inode, size and mtime, so the
choices (language, task, prompt), the job's priority and the request waiting for it reach the
job through the ledger, never through the file name; the note is dropped once the file is
claimed (or its rename did not happen).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hushdrop.pipeline.watch.ledger.jobs import stored_name

if TYPE_CHECKING:
    from hushdrop.pipeline.watch.ledger.store import Ledger


class Priority(IntEnum):
    """Who is waiting for a job: the next free worker takes the most urgent claimed job first."""

    FOLDER = 0  # a file dropped into the inbox: nobody is watching it
    UPLOAD = 1  # the page's upload: a person may be looking at the queue
    API = 2  # an API request: a client holds a connection open for the answer


@dataclass(frozen=True)
class UploadNote:
    """What an upload asks beyond its profile; None: the profile's setting."""

    language: str | None = None
    priority: int = Priority.UPLOAD
    task: str | None = None
    prompt: str | None = None
    request_id: str | None = None
    write_outputs: bool = True


_NOTE_COLUMNS = ("language", "priority", "task", "prompt", "request_id", "write_outputs")
_SAME_FILE = "inbox_path = ? AND device = ? AND inode = ? AND size = ? AND mtime_ns = ?"


def _same_file(inbox_path: Path, st: os.stat_result) -> tuple:
    return (os.fsencode(str(inbox_path)), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class Uploads:
    """``ledger.uploads``: the notes of uploads not claimed yet."""

    def __init__(self, ledger: "Ledger"):
        self._ledger = ledger

    def add(self, inbox_path: Path, profile: str, note: UploadNote, st: os.stat_result) -> None:
        """Note an upload (``st``: its file's stat) about to be renamed to ``inbox_path`` (before the rename)."""
        with self._ledger._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (inbox_path, profile, device, inode, size, mtime_ns, created_at, "
                f"{', '.join(_NOTE_COLUMNS)}) VALUES ({', '.join('?' * (7 + len(_NOTE_COLUMNS)))})",
                (os.fsencode(str(inbox_path)), profile, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, time.time(),
                 *(getattr(note, column) for column in _NOTE_COLUMNS)),
            )

    def note_for(self, inbox_path: Path, st: os.stat_result) -> UploadNote | None:
        """The note of the upload that is this very file (same path, inode, size and mtime), or None."""
        rows = self._ledger._read(f"SELECT {', '.join(_NOTE_COLUMNS)} FROM uploads WHERE {_SAME_FILE}", _same_file(inbox_path, st))
        if not rows:
            return None
        return UploadNote(**{**dict(rows[0]), "write_outputs": bool(rows[0]["write_outputs"])})

    def forget(self, inbox_path: Path, request_id: str | None = None) -> None:
        """Drop the note of ``inbox_path`` (only API request ``request_id``'s, where given: a new
        upload may have taken the name since)."""
        with self._ledger._tx() as db:
            if request_id is None:
                db.execute("DELETE FROM uploads WHERE inbox_path = ?", (os.fsencode(str(inbox_path)),))
            else:
                db.execute("DELETE FROM uploads WHERE inbox_path = ? AND request_id = ?",
                           (os.fsencode(str(inbox_path)), request_id))

    def forget_file(self, inbox_path: Path, st: os.stat_result) -> None:
        """Drop the note of the upload that is this very file (``st``), as its claim does: another
        upload renamed to the same name once this one left the inbox keeps its own note."""
        with self._ledger._tx() as db:
            db.execute(f"DELETE FROM uploads WHERE {_SAME_FILE}", _same_file(inbox_path, st))

    def waiting_file(self, request_id: str) -> tuple[Path, int, int] | None:
        """(inbox path, device, inode) of API request ``request_id``'s upload while its note is
        there (not claimed yet), else None."""
        rows = self._ledger._read("SELECT inbox_path, device, inode FROM uploads WHERE request_id = ?", (request_id,))
        return (Path(stored_name(rows[0]["inbox_path"])), rows[0]["device"], rows[0]["inode"]) if rows else None

    def pending(self) -> list[dict[str, Any]]:
        """Uploads not claimed yet, newest first."""
        return [
            {**dict(r), "inbox_path": Path(stored_name(r["inbox_path"]))}
            for r in self._ledger._read("SELECT * FROM uploads ORDER BY created_at DESC")
        ]
