"""The quarantine's bound: a size and an age limit, the recordings set aside longest ago going first.

Quarantine (``<workdir>/quarantine/<profile>/``) holds the originals hushdrop could not
transcribe, each beside its ``.error.txt``. Unbounded, it only grows: a 1.5 GB upload of zeros
would stay until someone deleted it by hand. ``quarantine_max_gb`` and ``quarantine_max_days``
bound it: :func:`prune`, run by the scheduler, shreds the recordings set aside longest ago, each
with its note, until the folder is under the size limit and nothing in it is older than the age
limit. Each removal gets a log line, and the job's ledger row keeps its ``quarantined`` state
(rows are never deleted) with ``quarantine_path`` cleared and a ``retention`` note saying when
and why the original went.

Only hushdrop's own files are touched: every profile folder is opened from the quarantine
folder with ``O_NOFOLLOW | O_DIRECTORY``, every entry is looked at relative to its folder's
descriptor without following links, and only a regular file with one name is removed — opened
through its folder's descriptor, renamed aside, overwritten and unlinked through it. Links,
FIFOs, folders, hard-linked files and hidden files are never removed, followed or counted as
recordings.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.fsutil import NotOurs, check_sole_regular_file, identity_of, random_name
from hushdrop.pipeline.logs import job_log
from hushdrop.pipeline.names import display_name
from hushdrop.pipeline.retention import Action, Disposal, overwrite_with_random
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State

NOTE_SUFFIX = ".error.txt"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_left_alone: set[tuple[int, int]] = set()  # (device, inode) of files already reported as not removable


@dataclass(frozen=True)
class Usage:
    """What quarantine holds: bytes of its regular files (recordings and notes), and recordings."""

    bytes: int
    files: int


@dataclass
class _Unit:
    """A recording and its note (or a note whose recording is gone), removed together."""

    profile: str
    folder_fd: int
    name: str  # the recording's name in its folder; for a lone note, the note's name
    size: int  # with its note
    recording_size: int
    set_aside_at: float
    has_recording: bool
    has_note: bool
    row: JobRow | None


@dataclass(frozen=True)
class Removed:
    profile: str
    name: str
    size: int
    set_aside_at: float
    reason: str  # "size" or "age"
    job_id: int | None


def _open_folder(name: str | os.PathLike, dir_fd: int | None = None) -> int | None:
    """A folder's descriptor, never through a link; None where it is missing, a link or not a folder."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise


def _entries(folder_fd: int) -> tuple[dict[str, os.stat_result], dict[str, os.stat_result], set[str]]:
    """(recordings, notes, every name) in a profile folder: recordings and notes are regular
    files only, looked at without following links."""
    recordings: dict[str, os.stat_result] = {}
    notes: dict[str, os.stat_result] = {}
    names = set(os.listdir(folder_fd))
    for name in names:
        if name.startswith("."):
            continue  # hushdrop's own temp files (a note being written, a file being shredded)
        try:
            st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        (notes if name.endswith(NOTE_SUFFIX) else recordings)[name] = st
    return recordings, notes, names


def _profile_folders(stack: ExitStack, settings: Settings) -> list[tuple[str, int]]:
    """(name, descriptor) of every real folder in quarantine, each kept open by ``stack``."""
    root = _open_folder(settings.quarantine)
    if root is None:
        return []
    stack.callback(os.close, root)
    folders = []
    for name in sorted(os.listdir(root)):
        fd = _open_folder(name, dir_fd=root)
        if fd is not None:
            stack.callback(os.close, fd)
            folders.append((name, fd))
    return folders


def usage(settings: Settings) -> Usage:
    """Bytes and recordings in quarantine, read from the folder itself (links and hidden files not counted)."""
    total = files = 0
    with ExitStack() as stack:
        for _, fd in _profile_folders(stack, settings):
            recordings, notes, _ = _entries(fd)
            total += sum(st.st_size for st in recordings.values()) + sum(st.st_size for st in notes.values())
            files += len(recordings)
    return Usage(total, files)


def _units(stack: ExitStack, settings: Settings, ledger: Ledger) -> list[_Unit]:
    rows = {row.quarantine_path: row for row in ledger.in_state(State.QUARANTINED) if row.quarantine_path is not None}
    units = []
    for profile, fd in _profile_folders(stack, settings):
        recordings, notes, names = _entries(fd)
        for name, st in recordings.items():
            note = notes.pop(name + NOTE_SUFFIX, None)
            row = rows.get(settings.quarantine / profile / name)
            # when it was set aside: the ledger's word, else its note's, else the file's own last change
            when = row.finished_at if row and row.finished_at else note.st_mtime if note else st.st_ctime
            size = st.st_size + (note.st_size if note else 0)
            units.append(_Unit(profile, fd, name, size, st.st_size, when, True, note is not None, row))
        for name, st in notes.items():  # a note whose recording is gone (not merely something else now)
            if name[: -len(NOTE_SUFFIX)] not in names:
                units.append(_Unit(profile, fd, name, st.st_size, 0, st.st_mtime, False, True, None))
    units.sort(key=lambda u: (u.set_aside_at, u.profile, u.name))
    return units


def prune(settings: Settings, ledger: Ledger, now: float | None = None) -> list[Removed]:
    """Shred the oldest quarantined recordings until quarantine is within its limits; returns what went."""
    max_bytes = settings.quarantine_max_gb * 1e9 if settings.quarantine_max_gb is not None else None
    max_age = settings.quarantine_max_days * 86400 if settings.quarantine_max_days is not None else None
    if max_bytes is None and max_age is None:
        return []
    now = time.time() if now is None else now
    removed: list[Removed] = []
    with ExitStack() as stack:
        units = _units(stack, settings, ledger)
        total = sum(u.size for u in units)
        for unit in units:
            too_old = max_age is not None and now - unit.set_aside_at > max_age
            too_big = max_bytes is not None and total > max_bytes
            if not (too_old or too_big):
                break  # the rest are newer, and the folder is small enough
            reason = "age" if too_old else "size"
            if not _remove(settings, ledger, unit, reason):
                continue
            total -= unit.size
            removed.append(Removed(unit.profile, unit.name, unit.size, unit.set_aside_at, reason,
                                   unit.row.id if unit.row else None))
    return removed


def _why(settings: Settings, reason: str) -> str:
    if reason == "size":
        return f"quarantine over {settings.quarantine_max_gb:g} GB (quarantine_max_gb)"
    return f"quarantine keeps recordings {settings.quarantine_max_days:g} days (quarantine_max_days)"


def _remove(settings: Settings, ledger: Ledger, unit: _Unit, reason: str) -> bool:
    """Shred one recording (and remove its note); False, with a log line, where it is not hushdrop's to remove."""
    logger = job_log(unit.row.id if unit.row else None)
    shown = display_name(unit.name)
    day = time.strftime("%Y-%m-%d", time.localtime(unit.set_aside_at))
    if unit.has_recording:
        try:
            _shred_in(unit.folder_fd, unit.name, lambda: _forget(ledger, unit, reason, day, settings))
        except OSError as exc:
            _report_once(unit, logger, "%s, but %s was left alone: %s", _why(settings, reason), shown,
                         exc.strerror if exc.strerror else exc)
            return False
    if unit.has_note:
        note = unit.name + NOTE_SUFFIX if unit.has_recording else unit.name
        try:
            if stat.S_ISREG(os.stat(note, dir_fd=unit.folder_fd, follow_symlinks=False).st_mode):
                os.unlink(note, dir_fd=unit.folder_fd)
        except FileNotFoundError:
            pass
        os.fsync(unit.folder_fd)
    if unit.has_recording:
        logger.warning("%s: removed the oldest, %s (%s), set aside on %s", _why(settings, reason), shown,
                       _size(unit.recording_size), day)
    else:
        logger.info("%s: removed the note %s, set aside on %s; its recording was already gone", _why(settings, reason), shown, day)
    return True


def _report_once(unit: _Unit, logger, message: str, *args: object) -> None:
    """Log a file pruning cannot remove once per file (the scheduler asks again every few minutes)."""
    try:
        st = os.stat(unit.name, dir_fd=unit.folder_fd, follow_symlinks=False)
        key = (st.st_dev, st.st_ino)
    except OSError:
        key = (-1, hash((unit.profile, unit.name)))
    if key not in _left_alone:
        if len(_left_alone) > 10_000:
            _left_alone.clear()
        _left_alone.add(key)
        logger.warning(message, *args)


def _forget(ledger: Ledger, unit: _Unit, reason: str, day: str, settings: Settings) -> None:
    """The ledger row says the original is gone (before a byte of it changes)."""
    if unit.row is None:
        return
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    ledger.update(
        unit.row.id, expect=State.QUARANTINED, quarantine_path=None,
        retention=Disposal(
            Action.SHREDDED, unit.row.quarantine_path,
            f"removed from quarantine on {when}: {_why(settings, reason)}; set aside on {day}",
        ).to_column(),
    )


def _shred_in(folder_fd: int, name: str, before: Callable[[], None]) -> None:
    """Shred ``name`` in ``folder_fd``: opened without following a link, checked (a regular file
    with one name), renamed aside, then ``before()`` runs (the ledger), then overwritten and
    unlinked. Before the ledger is written, a refusal leaves the file exactly as it was."""
    try:
        fd = os.open(name, os.O_RDWR | _FILE_FLAGS, dir_fd=folder_fd)
    except PermissionError:
        fd = _made_writable(folder_fd, name)
    try:
        st = os.fstat(fd)
        check_sole_regular_file(st, Path(name))
        hidden = f".hushdrop-{random_name()}.retire"
        os.rename(name, hidden, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        try:
            if identity_of(os.stat(hidden, dir_fd=folder_fd, follow_symlinks=False)) != identity_of(st):
                raise NotOurs(f"{display_name(name)} was replaced while hushdrop was taking it")
            before()
        except BaseException:
            os.rename(hidden, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            raise
        overwrite_with_random(fd)
        os.ftruncate(fd, 0)
        os.fsync(fd)
        os.unlink(hidden, dir_fd=folder_fd)
        os.fsync(folder_fd)
    finally:
        os.close(fd)


def _made_writable(folder_fd: int, name: str) -> int:
    """A read-only recording hushdrop owns (the mode it was dropped with): made 0600, then opened for writing."""
    fd = os.open(name, os.O_RDONLY | _FILE_FLAGS, dir_fd=folder_fd)
    try:
        st = os.fstat(fd)
        check_sole_regular_file(st, Path(name))
        os.fchmod(fd, 0o600)
        writable = os.open(name, os.O_RDWR | _FILE_FLAGS, dir_fd=folder_fd)
    finally:
        os.close(fd)
    if identity_of(os.fstat(writable)) != identity_of(st):
        os.close(writable)
        raise NotOurs(f"{display_name(name)} was replaced while hushdrop was taking it")
    return writable


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def describe(settings: Settings, found: Usage) -> str:
    """One line for ``hushdrop status``: what quarantine holds, and its limits."""
    limits = [f"{settings.quarantine_max_gb:g} GB" if settings.quarantine_max_gb is not None else "no size limit",
              f"{settings.quarantine_max_days:g} days" if settings.quarantine_max_days is not None else "no age limit"]
    return f"quarantine: {found.files} recording(s), {_size(found.bytes)} (limits: {', '.join(limits)})"
