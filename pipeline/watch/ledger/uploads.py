"""The ``uploads`` table: files the web page renamed into an inbox, with the language chosen for them.

Intake consults it when it claims the file, matched by path, inode, size and mtime, so the
choice reaches the job through the ledger, never through the file name; the note is dropped
once the file is claimed (or its rename did not happen).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hushdrop.pipeline.watch.ledger.jobs import stored_name

if TYPE_CHECKING:
    from hushdrop.pipeline.watch.ledger.store import Ledger


class Uploads:
    """``ledger.uploads``: the notes of uploads not claimed yet."""

    def __init__(self, ledger: "Ledger"):
        self._ledger = ledger

    def add(self, inbox_path: Path, profile: str, language: str | None, st: os.stat_result) -> None:
        """Note an upload (``st``: its file's stat) about to be renamed to ``inbox_path`` (before the rename)."""
        with self._ledger._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (inbox_path, profile, language, device, inode, size, mtime_ns, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (os.fsencode(str(inbox_path)), profile, language, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, time.time()),
            )

    def language_for(self, inbox_path: Path, st: os.stat_result) -> str | None:
        """The language chosen for the upload that is this very file (same path, inode, size and mtime), or None."""
        rows = self._ledger._read(
            "SELECT language FROM uploads WHERE inbox_path = ? AND device = ? AND inode = ? AND size = ? AND mtime_ns = ?",
            (os.fsencode(str(inbox_path)), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns),
        )
        return rows[0]["language"] if rows else None

    def forget(self, inbox_path: Path) -> None:
        with self._ledger._tx() as db:
            db.execute("DELETE FROM uploads WHERE inbox_path = ?", (os.fsencode(str(inbox_path)),))

    def pending(self) -> list[dict[str, Any]]:
        """Uploads not claimed yet, newest first."""
        return [
            {**dict(r), "inbox_path": Path(stored_name(r["inbox_path"]))}
            for r in self._ledger._read("SELECT * FROM uploads ORDER BY created_at DESC")
        ]
