"""The ``results`` table: the record of a job an API request waits for, kept until the request takes it.

The coordinator writes it when it commits such a job (``request_id`` set), whatever outputs the
profile writes, so the answer never depends on the outbox holding a JSON file. The page's API
takes it (read and delete in one transaction) when it answers; a record nobody took (the client
went away) is removed after a day by the service's schedule, so nothing stays that the profile
does not keep.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hushdrop.pipeline.watch.ledger.store import Ledger

UNCLAIMED_SECONDS = 86400.0


class Results:
    """``ledger.results``: records waiting for the API request that asked for them."""

    def __init__(self, ledger: "Ledger"):
        self._ledger = ledger

    def keep(self, job_id: int, record: dict[str, Any]) -> None:
        with self._ledger._tx() as db:
            db.execute("INSERT OR REPLACE INTO results (job_id, record, created_at) VALUES (?, ?, ?)",
                       (job_id, json.dumps(record, ensure_ascii=False), time.time()))

    def take(self, job_id: int) -> dict[str, Any] | None:
        """The record of job ``job_id``, removed from the table; None when there is none (any more)."""
        with self._ledger._tx() as db:
            row = db.execute("SELECT record FROM results WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
        return json.loads(row[0])

    def expire(self, older_than: float = UNCLAIMED_SECONDS) -> int:
        """Remove records no request took within ``older_than`` seconds; returns how many."""
        with self._ledger._tx() as db:
            return db.execute("DELETE FROM results WHERE created_at < ?", (time.time() - older_than,)).rowcount
