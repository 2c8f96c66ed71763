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

The profile folder is opened from the inbox one component at a time without following
links (``pipeline.watch.intake.opened_profile_folder``), and every file operation is relative to
that descriptor.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import threading
import time
import unicodedata
from pathlib import Path
from typing import AsyncIterator

import anyio

from hushdrop.pipeline.config import Profile, Settings, known_languages
from hushdrop.pipeline.fsutil import random_name
from hushdrop.pipeline.watch.intake import InboxUnsafe, is_ignored, opened_profile_folder, profile_folder
from hushdrop.pipeline.watch.ledger import Ledger
from hushdrop.pipeline.logs import log

TEMP_PREFIX = ".hushdrop-upload-"
TEMP_SUFFIX = ".partial"
NAME_BYTES = 200  # room left for " (99)" and the inbox's own limits
_FLUSH = 1 << 20
_RENAME_NOREPLACE = 1
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


# -- the rename that never replaces ---------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def rename_noreplace(dir_fd: int, src: str, dst: str) -> bool:
    """Rename ``src`` to ``dst`` in ``dir_fd``; False (and nothing changed) where ``dst`` exists."""
    if _renameat2 is not None:
        if _renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), dst)
    # a filesystem without RENAME_NOREPLACE: look, then rename (the naming lock serialises our own uploads)
    try:
        os.stat(dst, dir_fd=dir_fd, follow_symlinks=False)
        return False
    except FileNotFoundError:
        pass
    os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return True


def place(ledger: Ledger, settings: Settings, profile: Profile, dir_fd: int, temp: str, name: str,
          language: str | None, st: os.stat_result) -> str:
    """Give the finished temp file its final name in the profile folder; returns that name."""
    folder = profile_folder(settings, profile)
    with _naming:
        for candidate in candidates(name):
            try:
                os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
                continue  # taken (perhaps by an upload still waiting to be claimed)
            except FileNotFoundError:
                pass
            ledger.add_upload(folder / candidate, profile.name, language, st)
            if rename_noreplace(dir_fd, temp, candidate):
                os.fsync(dir_fd)
                return candidate
            ledger.forget_upload(folder / candidate)
    raise UploadError(409, f"no free name for {name} in {folder}")


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
    try:
        folder.mkdir(parents=True, exist_ok=True)
        context = opened_profile_folder(settings, profile)
        dir_fd = context.__enter__()
    except (InboxUnsafe, OSError) as exc:
        raise UploadError(503, f"cannot write into {folder}: {exc}") from exc
    temp = f"{TEMP_PREFIX}{random_name()}{TEMP_SUFFIX}"
    placed = False
    fd = -1
    try:
        if length is not None and _free_bytes(dir_fd) < length + _MIN_FREE:
            raise UploadError(507, f"not enough free space in {folder} for {length / 1e6:.0f} MB")
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
            raise UploadError(507, f"the disk holding {folder} is full") from exc
        raise UploadError(503, f"cannot write into {folder}: {exc.strerror or exc}") from exc
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
    """Put a quarantined original back into its profile's inbox folder (a new job); the note goes."""
    from hushdrop.pipeline.fsutil import move_file
    from hushdrop.pipeline.web.jobs import RETRIED, quarantined

    row = quarantined(ledger, job_id)
    profile = settings.profiles.get(row.profile)
    if profile is None:
        raise UploadError(409, f"profile {row.profile!r} is no longer in the config")
    source = row.quarantine_path
    assert source is not None
    folder = profile_folder(settings, profile)
    folder.mkdir(parents=True, exist_ok=True)
    with opened_profile_folder(settings, profile) as dir_fd:
        temp = f"{TEMP_PREFIX}{random_name()}{TEMP_SUFFIX}"
        try:
            move_file(source, folder / temp)  # a link, or a verified copy across filesystems
        except OSError as exc:
            raise UploadError(409, f"cannot move {source} back: {exc}") from exc
        try:
            st = os.stat(temp, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise UploadError(409, "the quarantined original is not a regular file")
            final = place(ledger, settings, profile, dir_fd, temp, row.name, row.language, st)
        except BaseException:
            try:  # give it back to quarantine rather than leave a hidden file
                os.rename(temp, source, src_dir_fd=dir_fd)
            except OSError:
                pass
            raise
    Path(f"{source}.error.txt").unlink(missing_ok=True)
    ledger.update(row.id, quarantine_path=None, retention=RETRIED + final)
    log().info("web: quarantined job %d sent again as %s", row.id, folder / final)
    return {"name": final, "profile": profile.name}


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
