"""What the page shows of the ledger, and the few things it may change.

- the queue: every job, newest first, with its stage, progress within the stage, elapsed
  and expected time, and for a failed or quarantined job its ``.error.txt`` text; uploads
  that the watcher has not claimed yet come first;
- a result: the job's JSON output, its output files (by name, only those the ledger lists
  for it), and the original recording where the profile kept or moved it;
- an edit: new text for some segments; the JSON keeps the engine's text (``raw_text``) and
  txt/srt/vtt/md are rendered again from it, each written to a temp file, fsynced and
  renamed over the old one (the JSON last);
- retry and delete, for quarantined jobs only (nothing else is racing them): retry puts the
  original back into the inbox folder (it becomes a new job); delete shreds it.

A name in a URL is never a path: it is compared with the names the ledger lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.fsutil import NotOurs, fsync_dir, taken_aside_at, write_temp
from hushdrop.pipeline.audio import AudioFacts
from hushdrop.pipeline.job import Event, Job, Segment, Transcript, Word
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State
from hushdrop.pipeline.watch.quarantine import REMOVED as QUARANTINE_LIMIT
from hushdrop.pipeline.logs import job_log
from hushdrop.pipeline.names import display_name
from hushdrop.pipeline.outputs import RENDERERS, group_id, json_text, utc_time
from hushdrop.pipeline.text import stored_text
from hushdrop.pipeline.web.catalog import MAX_JSON_BYTES, json_output, well_formed

NOTE_LIMIT = 16 * 1024
RETRIED = "sent again from the web page as "
DELETED = "deleted from the web page"


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
        if row.retention.startswith(RETRIED):
            return "retried"
        if row.retention == DELETED or row.retention.startswith(QUARANTINE_LIMIT):
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
    for upload in ledger.uploads():
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
        profile = settings.profiles.get(row.profile)
        names = [spec.name for spec in profile.chain] if profile else []
        overall = row.progress or 0.0
        index = names.index(row.stage) if row.stage in names else 0
        in_stage = min(1.0, max(0.0, overall * max(1, len(names)) - index))
        item.update(progress=round(overall, 4), stage_progress=round(in_stage, 4))
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
    if row.state != State.DONE or not row.retention or not row.retention.startswith("moved to "):
        return None
    path = Path(row.retention.removeprefix("moved to "))
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


def _pick(cls, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def timestamp_of(text: Any) -> float | None:
    """Unix time of an ISO 8601 string from a JSON output (``2026-11-21T17:04:05Z``), or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def job_from_record(record: dict[str, Any]) -> Job:
    """A Job again from its JSON output, enough for every renderer."""
    source = record.get("source") or {}
    audio = record.get("audio")
    facts = AudioFacts(**{"path": "", **_pick(AudioFacts, audio)}) if isinstance(audio, dict) else None
    segments = []
    for s in record.get("segments") or []:
        words = [Word(**_pick(Word, w)) for w in s.get("words") or []]
        segments.append(Segment(**{**_pick(Segment, s), "words": words}))
    transcript = Transcript(
        language=record.get("language"),
        language_probability=record.get("language_probability"),
        segments=segments,
        events=[Event(**_pick(Event, e)) for e in record.get("events") or []],
        speech_regions=[tuple(r) for r in record.get("speech_regions") or []],
        no_speech=bool(record.get("no_speech")),
    )
    timestamps = not any(
        s.get("name") == "tag" and (s.get("options") or {}).get("timestamps") is False for s in record.get("stages") or []
    )
    job = Job(
        source=Path(source.get("name") or "recording"), profile=source.get("profile") or "default", facts=facts,
        transcript=transcript, engine_info=record.get("engine") or {}, notes=list(record.get("notes") or []),
        show_timestamps=timestamps,
    )
    for key, value in (("script", record.get("script")),):
        if value is not None and hasattr(job, key):
            setattr(job, key, value)
    for key in ("received_at", "finished_at"):
        if hasattr(job, key):
            setattr(job, key, timestamp_of(record.get(key)))
    return job


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
        write_outputs(settings, row, record, json_path)
        job_log(row.id).info("transcript edited on the web page (%d segment(s)); outputs written again", changed)
    data = json_text(record)
    return record, hashlib.sha256(data.encode("utf-8")).hexdigest() if changed else sha


def write_outputs(settings: Settings, row: JobRow, record: dict[str, Any], json_path: Path) -> None:
    """Render every output of ``row`` from ``record`` and replace each file atomically (JSON last)."""
    job = job_from_record(record)
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
                raise JobActionError(409, f"{final.name} is not a regular file any more")
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


# -- retry and delete ---------------------------------------------------------------------


# one retry or delete at a time: both act on quarantine entries and then on the ledger
quarantine_actions = threading.Lock()


def quarantined(ledger: Ledger, job_id: int) -> JobRow:
    try:
        row = ledger.get(job_id)
    except KeyError:
        raise JobActionError(404, "no such job") from None
    if row.state != State.QUARANTINED or row.quarantine_path is None:
        raise JobActionError(409, "only a quarantined recording can be sent again or deleted")
    return row


@contextmanager
def opened_quarantine(row: JobRow) -> Iterator[tuple[int, str]]:
    """The quarantine folder of ``row``'s original, as a descriptor (the folder itself never a
    link), and the original's name in it: every retry and delete step is relative to it."""
    assert row.quarantine_path is not None
    try:
        folder_fd = os.open(row.quarantine_path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise JobActionError(409, "the recording is no longer in quarantine") from None
    except OSError as exc:
        job_log(row.id).warning("cannot open the quarantine folder %s: %s", row.quarantine_path.parent, exc.strerror)
        raise JobActionError(409, "the quarantine folder is a symbolic link or cannot be opened; nothing was changed") from None
    try:
        yield folder_fd, row.quarantine_path.name
    finally:
        os.close(folder_fd)


def delete_quarantined(settings: Settings, ledger: Ledger, job_id: int) -> JobRow:
    """Shred a quarantined original and remove its note, through the quarantine folder's descriptor."""
    from hushdrop.pipeline.retention import overwrite_with_random

    with quarantine_actions:
        row = quarantined(ledger, job_id)
        with opened_quarantine(row) as (folder_fd, name):
            try:
                with taken_aside_at(folder_fd, name, writable=True, shown=Path(name)) as (fd, hidden):
                    overwrite_with_random(fd)
                    os.ftruncate(fd, 0)
                    os.fsync(fd)
                    os.unlink(hidden, dir_fd=folder_fd)
            except FileNotFoundError:
                pass  # already gone: the note and the ledger follow
            except OSError as exc:
                reason = str(exc) if isinstance(exc, NotOurs) else (exc.strerror or str(exc))
                raise JobActionError(409, f"did not shred it: {reason}; nothing was changed") from exc
            try:
                os.unlink(f"{name}.error.txt", dir_fd=folder_fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                job_log(row.id).warning("the note of the deleted original stays: %s", exc.strerror)
            os.fsync(folder_fd)
        job_log(row.id).info("quarantined original deleted (shredded) from the web page")
        try:
            return ledger.update(row.id, quarantine_path=None, retention=DELETED)
        except sqlite3.Error as exc:  # the file is gone; deleting again finds nothing and records it
            job_log(row.id).error("the ledger could not record the deletion: %s", exc)
            raise JobActionError(503, "the recording was shredded but the ledger could not record it; delete it again") from None


__all__ = [
    "JobActionError", "ProgressTracker", "delete_quarantined", "job_from_record", "load_result",
    "opened_quarantine", "original_path", "output_file", "queue_rows", "quarantine_actions", "quarantined", "save_edits",
    "shown_state",
]
