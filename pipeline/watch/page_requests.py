"""The one door through which the web page changes the service's data.

The coordinator (``hushdrop watch``) owns the ledger's job table, the spool and the outbox:
it alone moves a job through its states. The web page (``hushdrop web``, or the same server
run as a thread of ``hushdrop watch``) is a third process beside the coordinator and its
workers, and it may change only what this module lets it, each on a job the coordinator has
finished with or not yet seen:

- an upload (the page's or an API request's): the page notes the name (and what was asked:
  language, task, prompt, priority, the waiting request) in the ledger's ``uploads`` table just before the file gets that name in the inbox, and forgets the note when the
  rename fails; the file itself arrives as any copied file does, and the watcher claims it;
- a quarantined job (an end state: the coordinator never runs it again) sent again or
  deleted: its ``quarantine_path`` is cleared and its ``retention`` says why, each change
  made only while the job is still quarantined (``expect=``);
- an API request's record (``results``), kept by the coordinator for the request, taken (read
  and deleted) when the request answers, or dropped when its client went away;
- a done job's outputs (an end state too) written again from an edited transcript, each
  file replaced atomically, the JSON last.

Everything else the page does reads. Its own files in the workdir (the search catalog, the
session key) are the page's and no other process reads them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.fsutil import fsync_dir, write_temp
from hushdrop.pipeline.job import Job
from hushdrop.pipeline.outputs import RENDERERS, group_id, json_text
from hushdrop.pipeline.retention import Action, Disposal
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State, UploadNote

BY_THE_PAGE = "from the web page"


class OutputReplaced(Exception):
    """An output of the job is no longer a regular file: nothing was written."""


def note_upload(ledger: Ledger, inbox_path: Path, profile: str, note: UploadNote, st: os.stat_result) -> None:
    """Note an upload (``st``: its file) about to be renamed to ``inbox_path``, so the claim
    finds what was asked for it (language, task, prompt, priority, the waiting request); called
    before the rename."""
    ledger.uploads.add(inbox_path, profile, note, st)


def forget_upload(ledger: Ledger, inbox_path: Path, request_id: str | None = None) -> None:
    """Drop the note of an upload whose rename did not happen, or (``request_id``: that API
    request's only) whose file left the inbox before it was claimed."""
    ledger.uploads.forget(inbox_path, request_id)


def take_result(ledger: Ledger, job_id: int) -> dict[str, Any] | None:
    """The record the coordinator kept for an API request's job, removed as it is read (None:
    there is none, or it was taken)."""
    return ledger.results.take(job_id)


def record_sent_again(ledger: Ledger, job_id: int, inbox_path: Path) -> JobRow:
    """A quarantined job's original was moved back into the inbox as ``inbox_path`` (a new job)."""
    sent = Disposal(Action.SENT_AGAIN, inbox_path, BY_THE_PAGE)
    return ledger.update(job_id, expect=State.QUARANTINED, quarantine_path=None, retention=sent.to_column())


def record_deleted(ledger: Ledger, job_id: int, quarantine_path: Path | None) -> JobRow:
    """A quarantined job's original (at ``quarantine_path``) was shredded from the page."""
    deleted = Disposal(Action.SHREDDED, quarantine_path, f"deleted {BY_THE_PAGE}")
    return ledger.update(job_id, expect=State.QUARANTINED, quarantine_path=None, retention=deleted.to_column())


def rewrite_outputs(settings: Settings, row: JobRow, job: Job, record: dict[str, Any], json_path: Path) -> None:
    """Render every output of done job ``row`` again from ``job`` (its edited transcript) and
    ``record`` (its JSON), replacing each file atomically, the JSON last.

    Raises OutputReplaced, writing nothing, where an output is not a regular file any more.
    """
    if row.state != State.DONE:
        raise OutputReplaced(f"job {row.id} is {row.state}, not done")
    gid = group_id(settings.output_group)
    mode = settings.output_mode_bits
    folder = json_path.parent
    plan: list[tuple[Path, bytes]] = []
    for path in row.outputs:
        if path == json_path or path.parent != folder:
            continue
        fmt = path.suffix.lstrip(".")
        if fmt in RENDERERS and fmt != "json":
            plan.append((path, RENDERERS[fmt](job).encode("utf-8")))
    plan.append((json_path, json_text(record).encode("utf-8")))
    temps: list[tuple[Path, Path]] = []
    try:
        for final, data in plan:
            if not stat.S_ISREG(os.lstat(final).st_mode):
                raise OutputReplaced(f"{final.name} is not a regular file any more")
            temp = write_temp(folder, data)
            temps.append((temp, final))
            if gid is not None:
                os.chown(temp, -1, gid)
            os.chmod(temp, mode)
        for temp, final in temps:
            os.replace(temp, final)
        fsync_dir(folder)
    finally:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
