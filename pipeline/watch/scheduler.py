"""Periodic work, on APScheduler's clock: rescans, retries, stale claims, expiry, the
quarantine's limits, heartbeat.

Each job is small and idempotent; ``coalesce`` and ``max_instances=1`` mean a slow
run is never stacked on itself.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.watch.ledger import Ledger, LedgerCorrupt, State
from hushdrop.pipeline.logs import job_log, log


def requeue_due_retries(ledger: Ledger, wake: Callable[[], None]) -> int:
    due = ledger.retries_due(time.time())
    for row in due:
        ledger.transition(row.id, State.CLAIMED, expect=State.FAILED)
        job_log(row.id).info("retry due (attempt %d was the last)", row.attempts)
    if due:
        wake()
    return len(due)


def finish_stale_seen(settings: Settings, ledger: Ledger, older_than: float = 60.0) -> int:
    """A claim that stopped halfway without a crash (an I/O error after the rename). A claim still
    under way (a long copy or hash: :func:`~pipeline.watch.intake.claims_in_progress`) is not stalled."""
    from hushdrop.pipeline.watch.intake import claims_in_progress, finish_seen

    cutoff = time.time() - older_than
    busy = claims_in_progress()
    stale = [row for row in ledger.in_state(State.SEEN) if row.updated_at < cutoff and row.inbox_path not in busy]
    for row in stale:
        finish_seen(settings, ledger, row)
    return len(stale)


def expire_outbox(settings: Settings, ledger: Ledger) -> int:
    """Delete transcripts older than ``outbox_expiry_days``: only files the ledger lists as a
    committed job's outputs, so a file someone else keeps in the outbox (their own notes, a copy
    of a transcript, a sync tool's file) is never deleted, whatever its name. What was deleted, or
    is gone already, is taken out of its job's outputs (:meth:`Ledger.forget_outputs`), so a later
    file under the same name is not taken for it. Each profile's folder is opened without
    following links and its entries removed relative to it, so a folder swapped for a symbolic
    link meanwhile is not followed."""
    if settings.outbox_expiry_days is None or not settings.outbox.is_dir():
        return 0
    cutoff = time.time() - settings.outbox_expiry_days * 86400
    ours = ledger.committed_outputs()
    removed, gone = 0, {}
    for folder in [settings.outbox / name for name in settings.profiles]:
        try:
            folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:  # not there yet, or not a real folder: nothing of ours to expire in it
            continue
        try:
            present = set()
            with os.scandir(folder_fd) as entries:
                for entry in entries:
                    path = folder / entry.name
                    if path not in ours:
                        continue
                    present.add(path)
                    if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.name, dir_fd=folder_fd)
                        gone[path] = ours[path]
                        removed += 1
            gone.update({p: ours[p] for p in ours if p.parent == folder and p not in present})
        finally:
            os.close(folder_fd)
    if gone:
        ledger.forget_outputs(gone)
    if removed:
        log().info("expired %d outbox file(s) older than %g days", removed, settings.outbox_expiry_days)
    return removed


QUARANTINE_CHECK_SECONDS = 300.0


def bound_quarantine(settings: Settings, ledger: Ledger) -> int:
    """Keep quarantine within ``quarantine_max_gb`` and ``quarantine_max_days``, the oldest
    recordings going first (``pipeline.watch.quarantine``); returns how many were removed."""
    from hushdrop.pipeline.watch.quarantine import prune

    return len(prune(settings, ledger))


class Scheduler:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60})
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

    def every(self, seconds: float, func: Callable[[], object], name: str) -> None:
        def run() -> None:
            try:
                func()
            except LedgerCorrupt:
                pass  # the service stops and says what to do
            except Exception:
                log().exception("scheduled job %s failed; it will run again", name)

        self._scheduler.add_job(run, "interval", seconds=seconds, id=name, name=name)

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        self._scheduler.shutdown(wait=True)
