"""Uploads: a request body streamed into ``inbox/<profile>/``, exactly as a copied file arrives.

The body is read chunk by chunk (``request.stream()``: never parsed as a form, never
spooled to /tmp, never held in memory beyond about a megabyte) into a hidden file
``.hushdrop-upload-<random>.partial`` *in the profile's folder itself*, so it is on the
inbox's filesystem and the watcher ignores it (dot-files and ``*.partial`` are never
taken). It is counted against ``web.max_upload_mb`` as it arrives, fsynced, recorded in
the ledger's ``uploads`` table with the chosen language and its inode, and renamed to its
sanitised name without replacing any file (``renameat2(RENAME_NOREPLACE)``). Then the
watcher sees a complete file, waits out the settle period and claims it; intake reads the
language from the ledger.

The profile folder is opened from ``/`` one component at a time without following links
(``pipeline.fsutil.opened_folder``); a missing inbox or profile folder is made there with
``mkdirat`` relative to the folder above, never by a path resolved again. Every file operation
is relative to that descriptor, so a folder on the way swapped for a link changes nothing
outside the inbox: the request is refused with 409 instead.

"Send again" (:func:`retry_quarantined`) moves a quarantined original back the same way: from
the quarantine folder's descriptor to the profile folder's descriptor, by ``renameat2`` without
replacing anything (or a verified copy where the two are on different filesystems); the ledger
says it moved only once it has.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
import time
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import AsyncIterator, Iterator

import anyio

from hushdrop.pipeline.config import Profile, Settings, known_languages
from hushdrop.pipeline.fsutil import (
    FolderUnsafe, NotOurs, check_sole_regular_file, copy_verified_at, identity_of, opened_folder, random_name,
    rename_noreplace,
)
from hushdrop.pipeline.watch.intake import InboxUnsafe, is_ignored, opened_profile_folder, profile_folder
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State
from hushdrop.pipeline.logs import log

TEMP_PREFIX = ".hushdrop-upload-"
TEMP_SUFFIX = ".partial"
NAME_BYTES = 200  # room left for " (99)" and the inbox's own limits
_FLUSH = 1 << 20
_MIN_FREE = 64 << 20
_naming = threading.Lock()


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- names ---------------------------------------------------------------------------


def sanitize_name(raw: str) -> str:
    """A plain file name from what a browser sent: no folders, no control or format characters
    (no right-to-left override), no leading dot or dash, at most ``NAME_BYTES`` bytes."""
    name = unicodedata.normalize("NFC", raw.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join("_" if c in ':*?"<>|' else c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp"))
    name = " ".join(name.split())
    name = name.lstrip(".-_ ")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    stem = stem.rstrip(". ") or "recording"
    ext = "".join(c for c in ext if c.isalnum())[:12]
    budget = NAME_BYTES - len(ext.encode("utf-8")) - 1
    stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip() or "recording"
    return f"{stem}.{ext}" if ext else stem


def checked_name(raw: str, profile: Profile) -> str:
    name = sanitize_name(raw)
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    if ext not in profile.extensions:
        raise UploadError(415, f"{name!r} is not a recording this profile takes; accepted: {', '.join(profile.extensions)}")
    if is_ignored(name, profile.ignore):
        name = "upload " + name
        if is_ignored(name, profile.ignore):
            raise UploadError(400, f"{name!r} matches the profile's ignore patterns, so it would never be taken")
    return name


def candidates(name: str):
    stem, dot, ext = name.rpartition(".")
    yield name
    for n in range(2, 1000):
        yield f"{stem} ({n}).{ext}"


def checked_language(language: str | None, profile: Profile) -> str | None:
    """None (the profile's language), ``auto``, or a language the profile's engine can be forced to."""
    if language in (None, "", "profile"):
        return None
    language = language.strip().lower()
    if language == "auto":
        return "auto"
    supported = profile.transcribe_options().supported_languages()
    if language not in (supported if supported is not None else known_languages()):
        raise UploadError(400, f"the {profile.transcribe_options().engine} engine cannot be set to language {language!r}")
    return language


# -- the profile folder, and the rename that never replaces --------------------------------------


@contextmanager
def opened_inbox_folder(settings: Settings, profile: Profile) -> Iterator[int]:
    """A descriptor of ``profile``'s inbox folder, opened from ``/`` without following a link;
    the inbox and the profile's folders are made where missing, each relative to the folder above.

    Raises UploadError 409 where a folder on the way is a link or not a folder (nothing is
    written anywhere), 503 where the folders cannot be opened or made.
    """
    try:
        opening = opened_folder(profile_folder(settings, profile), create_from=settings.inbox)
        dir_fd = opening.__enter__()
    except FolderUnsafe as exc:
        log().warning("web: refused to write into the folder of profile %s: %s is a symbolic link or not a folder",
                      profile.name, exc.filename)
        raise UploadError(
            409, f"the folder of profile {profile.name} is reached through a symbolic link or is not a folder "
                 f"(it may have been swapped for one just now); nothing was written: make it a real folder",
        ) from None
    except OSError as exc:
        log().warning("web: cannot open the folder of profile %s: %s", profile.name, exc)
        raise UploadError(503, f"cannot open or make the inbox folder of profile {profile.name}: "
                                f"{exc.strerror or 'the folder could not be opened'}") from None
    try:
        yield dir_fd
    finally:
        opening.__exit__(None, None, None)


def place(ledger: Ledger, settings: Settings, profile: Profile, dir_fd: int, temp: str, name: str,
          language: str | None, st: os.stat_result, src_dir_fd: int | None = None) -> str:
    """Give the file ``temp`` (in ``src_dir_fd``, by default the profile folder ``dir_fd`` itself)
    its final name in the profile folder, never replacing a file; returns that name.

    The ledger learns the name (and the language) before the rename, so the claim finds it.
    """
    folder = profile_folder(settings, profile)
    src_dir_fd = dir_fd if src_dir_fd is None else src_dir_fd
    with _naming:
        for candidate in candidates(name):
            try:
                os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
                continue  # taken (perhaps by an upload still waiting to be claimed)
            except FileNotFoundError:
                pass
            ledger.add_upload(folder / candidate, profile.name, language, st)
            try:
                renamed = rename_noreplace(src_dir_fd, temp, candidate, dir_fd)
            except BaseException:
                ledger.forget_upload(folder / candidate)
                raise
            if renamed:
                os.fsync(dir_fd)
                if src_dir_fd != dir_fd:
                    os.fsync(src_dir_fd)
                return candidate
            ledger.forget_upload(folder / candidate)
    raise UploadError(409, f"no free name for {name} in the folder of profile {profile.name}")


# -- streaming ------------------------------------------------------------------------


def _write_all(fd: int, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _free_bytes(dir_fd: int) -> int:
    st = os.statvfs(dir_fd)
    return st.f_bavail * st.f_frsize


async def receive(
    settings: Settings, ledger: Ledger, body: AsyncIterator[bytes], profile: Profile, raw_name: str,
    language: str | None, length: int | None,
) -> dict:
    """Stream ``body`` into the profile's folder; returns {name, profile, language, size}."""
    limit = int(settings.web.max_upload_mb * 1024 * 1024)
    name = checked_name(raw_name, profile)
    language = checked_language(language, profile)
    if length is not None and length > limit:
        raise UploadError(413, f"the file is {length / 1e6:.0f} MB; the limit is {settings.web.max_upload_mb:g} MB (web.max_upload_mb)")
    folder = profile_folder(settings, profile)
    context = opened_inbox_folder(settings, profile)
    dir_fd = context.__enter__()
    temp = f"{TEMP_PREFIX}{random_name()}{TEMP_SUFFIX}"
    placed = False
    fd = -1
    try:
        if length is not None and _free_bytes(dir_fd) < length + _MIN_FREE:
            raise UploadError(507, f"not enough free space in the inbox folder of profile {profile.name} for {length / 1e6:.0f} MB")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        total = 0
        pending = bytearray()
        async for chunk in body:
            total += len(chunk)
            if total > limit:
                raise UploadError(413, f"the file is over the limit of {settings.web.max_upload_mb:g} MB (web.max_upload_mb)")
            pending += chunk
            if len(pending) >= _FLUSH:
                await anyio.to_thread.run_sync(_write_all, fd, pending)
                pending.clear()
        if pending:
            await anyio.to_thread.run_sync(_write_all, fd, pending)
        if total == 0:
            raise UploadError(400, "the file is empty (0 bytes); nothing to transcribe")
        if length is not None and total != length:
            raise UploadError(400, f"the upload ended after {total} of {length} bytes")
        await anyio.to_thread.run_sync(os.fsync, fd)
        st = os.fstat(fd)
        final = await anyio.to_thread.run_sync(place, ledger, settings, profile, dir_fd, temp, name, language, st)
        placed = True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UploadError(507, f"the disk holding the inbox folder of profile {profile.name} is full") from exc
        reason = exc.strerror or "the file could not be written"  # never str(exc): it names the absolute path
        raise UploadError(503, f"cannot write into the inbox folder of profile {profile.name}: {reason}") from exc
    finally:
        if fd >= 0:
            os.close(fd)
        if not placed:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except OSError:
                pass
        context.__exit__(None, None, None)
    log().info("web: upload of %d bytes placed in %s as %s (language %s)", total, folder, final, language or "of the profile")
    return {"name": final, "profile": profile.name, "language": language, "size": total}


def retry_quarantined(settings: Settings, ledger: Ledger, job_id: int) -> dict:
    """Put a quarantined original back into its profile's inbox folder (a new job); the note goes.

    The file is moved from the quarantine folder's descriptor to the profile folder's descriptor
    (opened from ``/`` without following links), under the first free name, never replacing a file.
    The ledger says it moved only once it has; if the ledger cannot say so, the move is undone.
    Any refusal leaves the recording and its note in quarantine and the ledger as it was.
    """
    from hushdrop.pipeline.web.jobs import JobActionError, opened_quarantine, quarantine_actions, quarantined

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
            raise UploadError(503, f"cannot move the recording back: {exc.strerror or 'the move failed'}; it stays in quarantine") from None
    log().info("web: quarantined job %d sent again as %s", row.id, profile_folder(settings, profile) / final)
    return {"name": final, "profile": profile.name}


def _send_back(settings: Settings, ledger: Ledger, profile: Profile, row: JobRow, quarantine_fd: int, name: str,
               source_fd: int, st: os.stat_result, inbox_fd: int) -> str:
    """Move quarantine entry ``name`` (open as ``source_fd``, ``st``) into the profile folder and
    record it in the ledger; returns the name it got. Undone on any failure."""
    from hushdrop.pipeline.web.jobs import RETRIED

    folder = profile_folder(settings, profile)
    try:  # same filesystem: one atomic rename, from one descriptor to the other
        final = place(ledger, settings, profile, inbox_fd, name, row.name, row.language, st, src_dir_fd=quarantine_fd)
        copied = None
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        temp = f"{TEMP_PREFIX}{random_name()}{TEMP_SUFFIX}"  # a hidden copy; swept if the server stops now
        copy_verified_at(source_fd, inbox_fd, temp)
        copied = os.stat(temp, dir_fd=inbox_fd, follow_symlinks=False)
        try:
            final = place(ledger, settings, profile, inbox_fd, temp, row.name, row.language, copied)
        except BaseException:
            os.unlink(temp, dir_fd=inbox_fd)
            raise
    landed = os.stat(final, dir_fd=inbox_fd, follow_symlinks=False)
    if copied is None and identity_of(landed) != identity_of(st):  # replaced between the open and the rename
        _take_back(ledger, folder, final, inbox_fd, quarantine_fd, name)
        raise NotOurs(f"{name} was replaced while it was being sent again")
    try:
        ledger.update(row.id, expect=State.QUARANTINED, quarantine_path=None, retention=RETRIED + final)
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


def _take_back(ledger: Ledger, folder: Path, final: str, inbox_fd: int, quarantine_fd: int, name: str) -> None:
    """Undo a rename into the inbox: ``final`` goes back to quarantine as ``name``."""
    if rename_noreplace(inbox_fd, final, name, quarantine_fd):
        _forget(ledger, folder / final)
    else:
        log().error("web: could not put %s back into quarantine (%s is taken there); it stays in the inbox as %s",
                    name, name, final)


def _forget(ledger: Ledger, path: Path) -> None:
    try:
        ledger.forget_upload(path)
    except sqlite3.Error:
        pass  # a row for a name that no file has is never matched (the claim checks the inode)


def sweep_stale(settings: Settings, older_than: float = 3600.0) -> int:
    """Remove upload temp files left by a server that stopped mid-upload (older than an hour)."""
    removed = 0
    now = time.time()
    for profile in settings.profiles.values():
        try:
            with opened_profile_folder(settings, profile) as dir_fd:
                for entry in os.scandir(dir_fd):
                    if not (entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX)):
                        continue
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than:
                        os.unlink(entry.name, dir_fd=dir_fd)
                        removed += 1
        except (InboxUnsafe, OSError):
            continue
    return removed
