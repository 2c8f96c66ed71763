"""Retry and delete, the page's two actions on a quarantined job.

Both act only on jobs in quarantine (an end state: no worker or stage is racing them), one at
a time, and every step is relative to the quarantine folder's descriptor (the folder itself
never a link):

- "send again" (:func:`retry_quarantined`) moves the original back into its profile's inbox
  folder, from the quarantine folder's descriptor to the profile folder's descriptor (opened
  from ``/`` without following links), by ``renameat2`` without replacing anything, or a
  verified copy where the two are on different filesystems. It becomes a new job; the note
  beside it goes. The ledger says it moved only once it has; if the ledger cannot say so, the
  move is undone;
- "delete" (:func:`delete_quarantined`) shreds the original and removes its note.

The ledger learns of either through :mod:`pipeline.watch.page_requests`, the service's one
door for the page's writes.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hushdrop.pipeline.config import Profile, Settings
from hushdrop.pipeline.fsutil import (
    FolderUnsafe, NotOurs, check_sole_regular_file, copy_verified_at, identity_of, random_name, rename_noreplace,
    taken_aside_at,
)
from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.retention import overwrite_with_random
from hushdrop.pipeline.watch import page_requests
from hushdrop.pipeline.watch.intake import profile_folder
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State, UploadNote
from hushdrop.pipeline.web.views import JobActionError
from hushdrop.pipeline.web.uploads import TEMP_PREFIX, TEMP_SUFFIX, UploadError, opened_inbox_folder, place


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
            return page_requests.record_deleted(ledger, row.id, row.quarantine_path)
        except sqlite3.Error as exc:  # the file is gone; deleting again finds nothing and records it
            job_log(row.id).error("the ledger could not record the deletion: %s", exc)
            raise JobActionError(503, "the recording was shredded but the ledger could not record it; delete it again") from None


def retry_quarantined(settings: Settings, ledger: Ledger, job_id: int) -> dict:
    """Put a quarantined original back into its profile's inbox folder (a new job); the note goes.

    The file is moved from the quarantine folder's descriptor to the profile folder's descriptor
    (opened from ``/`` without following links), under the first free name, never replacing a file.
    The ledger says it moved only once it has; if the ledger cannot say so, the move is undone.
    Any refusal leaves the recording and its note in quarantine and the ledger as it was.
    """
    with quarantine_actions:
        row = quarantined(ledger, job_id)
        profile = settings.profiles.get(row.profile)
        if profile is None:
            raise UploadError(409, f"profile {row.profile!r} is no longer in the config")
        try:
            with opened_quarantine(row) as (quarantine_fd, name):
                source_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                                    dir_fd=quarantine_fd)
                try:
                    st = os.fstat(source_fd)
                    check_sole_regular_file(st, Path(name))
                    with opened_inbox_folder(settings, profile) as inbox_fd:
                        final = _send_back(settings, ledger, profile, row, quarantine_fd, name, source_fd, st, inbox_fd)
                finally:
                    os.close(source_fd)
                try:
                    os.unlink(f"{name}.error.txt", dir_fd=quarantine_fd)
                except FileNotFoundError:
                    pass
        except (UploadError, JobActionError):
            raise
        except FileNotFoundError:
            raise UploadError(409, "the recording is no longer in quarantine; nothing was moved") from None
        except (NotOurs, FolderUnsafe) as exc:
            log().warning("web: quarantined job %d not sent again: %s", row.id, exc)
            raise UploadError(409, "the quarantined recording is not a plain file with one name; nothing was moved") from None
        except sqlite3.Error as exc:
            log().error("web: quarantined job %d not sent again: the ledger could not record it: %s", row.id, exc)
            raise UploadError(503, "the ledger could not record the move, so it was undone; try again") from None
        except OSError as exc:
            log().warning("web: quarantined job %d not sent again: %s", row.id, exc)
            if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a link where the recording was
                raise UploadError(409, "the quarantined recording is a symbolic link now, not the recording; nothing was moved") from None
            raise UploadError(503, f"cannot move the recording back: {exc.strerror or 'the move failed'}; it stays in quarantine") from None
    log().info("web: quarantined job %d sent again as %s", row.id, profile_folder(settings, profile) / final)
    return {"name": final, "profile": profile.name}


def _send_back(settings: Settings, ledger: Ledger, profile: Profile, row: JobRow, quarantine_fd: int, name: str,
               source_fd: int, st: os.stat_result, inbox_fd: int) -> str:
    """Move quarantine entry ``name`` (open as ``source_fd``, ``st``) into the profile folder and
    record it in the ledger; returns the name it got. Undone on any failure."""
    folder = profile_folder(settings, profile)
    try:  # same filesystem: one atomic rename, from one descriptor to the other
        final = place(ledger, settings, profile, inbox_fd, name, row.name, _asked_again(row), st, src_dir_fd=quarantine_fd)
        copied = None
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        temp = f"{TEMP_PREFIX}{random_name()}{TEMP_SUFFIX}"  # a hidden copy; swept if the server stops now
        copy_verified_at(source_fd, inbox_fd, temp)
        copied = os.stat(temp, dir_fd=inbox_fd, follow_symlinks=False)
        try:
            final = place(ledger, settings, profile, inbox_fd, temp, row.name, _asked_again(row), copied)
        except BaseException:
            os.unlink(temp, dir_fd=inbox_fd)
            raise
    landed = os.stat(final, dir_fd=inbox_fd, follow_symlinks=False)
    if copied is None and identity_of(landed) != identity_of(st):  # replaced between the open and the rename
        _take_back(ledger, folder, final, inbox_fd, quarantine_fd, name)
        raise NotOurs(f"{name} was replaced while it was being sent again")
    try:
        page_requests.record_sent_again(ledger, row.id, folder / final)
    except BaseException:
        if copied is None:
            _take_back(ledger, folder, final, inbox_fd, quarantine_fd, name)
        elif identity_of(os.stat(final, dir_fd=inbox_fd, follow_symlinks=False)) == identity_of(copied):
            os.unlink(final, dir_fd=inbox_fd)  # the original never left quarantine
            _forget(ledger, folder / final)
        raise
    if copied is not None and identity_of(os.stat(name, dir_fd=quarantine_fd, follow_symlinks=False)) == identity_of(st):
        os.unlink(name, dir_fd=quarantine_fd)
        os.fsync(quarantine_fd)
    return final


def _asked_again(row: JobRow) -> UploadNote:
    """A recording sent again is asked for as it was the first time, at the page's priority."""
    return UploadNote(language=row.language, task=row.task, prompt=row.prompt)


def _take_back(ledger: Ledger, folder: Path, final: str, inbox_fd: int, quarantine_fd: int, name: str) -> None:
    """Undo a rename into the inbox: ``final`` goes back to quarantine as ``name``."""
    if rename_noreplace(inbox_fd, final, name, quarantine_fd):
        _forget(ledger, folder / final)
    else:
        log().error("web: could not put %s back into quarantine (%s is taken there); it stays in the inbox as %s",
                    name, name, final)


def _forget(ledger: Ledger, path: Path) -> None:
    try:
        page_requests.forget_upload(ledger, path)
    except sqlite3.Error:
        pass  # a row for a name that no file has is never matched (the claim checks the inode)
