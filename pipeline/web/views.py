"""What the page shows of the ledger, and the few things it may change.

- the queue: every job, newest first, with its stage, progress within the stage, elapsed
  and expected time, and for a failed or quarantined job its ``.error.txt`` text; uploads
  that the watcher has not claimed yet come first;
- a result: the job's JSON output, its output files (by name, only those the ledger lists
  for it), and the original recording where the profile kept or moved it;
- an edit: new text for some segments; the JSON keeps the engine's text (``raw_text``) and
  txt/srt/vtt/md are rendered again from it, written through the service's door for the page
  (:func:`pipeline.watch.page_requests.rewrite_outputs`).

Retry and delete of quarantined jobs live in :mod:`pipeline.web.quarantine`.

A name in a URL is never a path: it is compared with the names the ledger lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.job import Job, utc_time
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State
from hushdrop.pipeline.watch.page_requests import OutputReplaced, rewrite_outputs
from hushdrop.pipeline.logs import job_log
from hushdrop.pipeline.names import display_name
from hushdrop.pipeline.outputs import json_text
from hushdrop.pipeline.retention import Action, Disposal
from hushdrop.pipeline.text import stored_text
from hushdrop.pipeline.web.catalog import MAX_JSON_BYTES, json_output, well_formed

NOTE_LIMIT = 16 * 1024


class JobActionError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ProgressTracker:
    """Estimates the time left of a transcription from how fast its progress moves."""

    def __init__(self) -> None:
        self._first: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()  # the server answers from several threads

    def remaining(self, job_id: int, fraction: float, now: float) -> float | None:
        with self._lock:
            first = self._first.get(job_id)
            if first is None or fraction < first[1]:
                self._first[job_id] = (now, fraction)
                if len(self._first) > 1000:
                    self._first.pop(next(iter(self._first)))
                return None
        t0, f0 = first
        if fraction - f0 < 0.02 or now - t0 < 1.0:
            return None
        return (now - t0) / (fraction - f0) * (1.0 - fraction)

    def forget(self, job_id: int) -> None:
        with self._lock:
            self._first.pop(job_id, None)


# -- the queue ---------------------------------------------------------------------


def shown_state(row: JobRow) -> str:
    if row.state == State.QUARANTINED and row.quarantine_path is None and row.retention:
        disposal = Disposal.from_column(row.retention)
        if disposal is not None and disposal.action == Action.SENT_AGAIN:
            return "retried"
        if disposal is not None and disposal.action == Action.SHREDDED:
            return "deleted"  # from the page, or by quarantine's size or age limit
    return row.state


def error_note(row: JobRow) -> str | None:
    """The ``.error.txt`` beside a quarantined original, else the ledger's error line."""
    if row.state == State.QUARANTINED and row.quarantine_path is not None:
        text = _read_small(Path(f"{row.quarantine_path}.error.txt"), NOTE_LIMIT)
        if text is not None:
            return text.decode("utf-8", "replace")
    if row.error:
        return f"{row.error_stage or '?'}: {row.error}"
    return None


def queue_rows(settings: Settings, ledger: Ledger, tracker: ProgressTracker, limit: int = 200) -> list[dict[str, Any]]:
    now = time.time()
    rows: list[dict[str, Any]] = []
    for upload in ledger.uploads.pending():
        path = upload["inbox_path"]
        try:
            st = os.lstat(path)
        except OSError:
            continue  # claimed (or taken away) since
        if (st.st_dev, st.st_ino, st.st_size) != (upload["device"], upload["inode"], upload["size"]):
            continue
        rows.append({
            "id": None, "key": "u" + hashlib.sha256(os.fsencode(str(path))).hexdigest()[:16], "name": display_name(path.name),
            "profile": upload["profile"], "state": "uploaded", "language": upload["language"],
            "created_at": upload["created_at"], "elapsed_s": round(now - upload["created_at"], 1),
        })
    for row in ledger.recent(limit):
        rows.append(queue_row(settings, row, tracker, now))
    return rows


def queue_row(settings: Settings, row: JobRow, tracker: ProgressTracker, now: float) -> dict[str, Any]:
    state = shown_state(row)
    item: dict[str, Any] = {
        "id": row.id, "key": f"j{row.id}", "name": display_name(row.name), "profile": row.profile, "state": state,
        "stage": row.stage, "language": row.language, "created_at": row.created_at, "finished_at": row.finished_at,
        "attempts": row.attempts, "url": f"/jobs/{row.id}",
    }
    if row.state == State.PROCESSING:
        in_stage = min(1.0, max(0.0, row.progress or 0.0))
        item.update(progress=round(row.chain_progress(), 4), stage_progress=round(in_stage, 4))
        started = row.started_at or row.created_at
        item["elapsed_s"] = round(now - started, 1)
        if row.stage == "transcribe":
            remaining = tracker.remaining(row.id, in_stage, now)
            item["remaining_s"] = round(remaining, 1) if remaining is not None else None
    else:
        tracker.forget(row.id)
        if row.state in (State.DONE, State.COMMITTED) and row.started_at and row.finished_at:
            item["elapsed_s"] = round(row.finished_at - row.started_at, 1)
        elif row.state in (State.CLAIMED, State.SEEN, State.FAILED):
            item["elapsed_s"] = round(now - row.created_at, 1)
    if row.state in (State.FAILED, State.QUARANTINED) and state not in ("retried", "deleted"):
        item["error"] = error_note(row)
        item["error_stage"] = row.error_stage
    if row.state == State.FAILED:
        item["next_attempt_at"] = row.next_attempt_at
    item["can_retry"] = item["can_delete"] = state == State.QUARANTINED and row.quarantine_path is not None
    item["done"] = row.state == State.DONE
    return item


# -- a result ------------------------------------------------------------------------


def _read_small(path: Path, limit: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        return os.pread(fd, limit, 0)
    finally:
        os.close(fd)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return Path(os.path.realpath(path.parent)).is_relative_to(os.path.realpath(folder))
    except OSError:
        return False


def output_file(settings: Settings, row: JobRow, name: str) -> Path | None:
    """The output of ``row`` called exactly ``name``: one the ledger lists, a regular file in the outbox."""
    for path in row.outputs:
        if path.name == name and _inside(path, settings.outbox):
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    return path
            except OSError:
                return None
    return None


def read_output(path: Path) -> bytes | None:
    return _read_small(path, MAX_JSON_BYTES)


def original_path(settings: Settings, row: JobRow) -> Path | None:
    """Where a done job's original was moved (``originals: keep`` or ``move``), if it is still there."""
    disposal = Disposal.from_column(row.retention) if row.state == State.DONE else None
    if disposal is None or disposal.action != Action.MOVED or disposal.target is None:
        return None
    path = disposal.target
    allowed = [settings.workdir / "kept"] + [
        p.originals.move_to for p in settings.profiles.values() if p.originals.move_to is not None
    ]
    if not any(_inside(path, folder) for folder in allowed):
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return path if stat.S_ISREG(st.st_mode) else None


def load_result(settings: Settings, row: JobRow) -> tuple[Path, dict[str, Any], str] | None:
    """(JSON path, record, sha256 of the file) of a done job, or None."""
    path = json_output(row.outputs)
    if path is None or not _inside(path, settings.outbox):
        return None
    data = read_output(path)
    if data is None:
        return None
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not well_formed(record):
        return None  # damaged, or planted in the outbox: shown as missing, never a 500
    return path, record, hashlib.sha256(data).hexdigest()


# -- editing --------------------------------------------------------------------------


def _clean_text(text: Any) -> str:
    """A segment's new text from the page: one line, control characters dropped the way every
    output drops them (:func:`pipeline.text.stored_text`: no NUL or ESC in the JSON either,
    nor a lone surrogate, which UTF-8 cannot hold), whitespace runs as one space."""
    if not isinstance(text, str):
        raise JobActionError(400, "each segment's text must be a string")
    return " ".join(stored_text(text).split())[:20_000]


def save_edits(settings: Settings, row: JobRow, edits: list[dict[str, Any]], base: str) -> tuple[dict[str, Any], str]:
    """Apply ``edits`` ({index, text}) to a done job's transcript and write its outputs again.

    ``base`` is the sha256 of the JSON the page loaded: if the file changed since, nothing
    is written (409). Returns the new record and its sha256.
    """
    loaded = load_result(settings, row)
    if loaded is None:
        raise JobActionError(404, "this job has no JSON output to edit")
    json_path, record, sha = loaded
    if base != sha:
        raise JobActionError(409, "the transcript changed since the page loaded it")
    segments = record.get("segments") or []
    changed = 0
    for edit in edits:
        index = edit.get("index") if isinstance(edit, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(segments):
            raise JobActionError(400, f"no segment {index!r}")
        text = _clean_text(edit.get("text"))
        segment = segments[index]
        if text == segment.get("text"):
            continue
        if segment.get("raw_text") is None:
            segment["raw_text"] = segment.get("text")  # keep what the pipeline wrote
        segment["text"] = text
        segment["edited"] = True
        changed += 1
    if changed:
        record["text"] = " ".join(s.get("text") or "" for s in segments if s.get("text")).strip()
        record["edited_at"] = utc_time(time.time())
        try:
            rewrite_outputs(settings, row, Job.from_record(record), record, json_path)
        except OutputReplaced as exc:
            raise JobActionError(409, str(exc)) from None
        job_log(row.id).info("transcript edited on the web page (%d segment(s)); outputs written again", changed)
    data = json_text(record)
    return record, hashlib.sha256(data.encode("utf-8")).hexdigest() if changed else sha


__all__ = [
    "JobActionError", "ProgressTracker", "load_result", "original_path", "output_file", "queue_rows",
    "save_edits", "shown_state",
]
