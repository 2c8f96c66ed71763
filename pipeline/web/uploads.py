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

"Send again" (:mod:`pipeline.web.quarantine`) puts a quarantined original back through
:func:`place` the same way. The ledger's note of an upload is written through
:mod:`pipeline.watch.page_requests`, the service's one door for the page's writes.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
import unicodedata
from contextlib import asynccontextmanager, contextmanager
from typing import AsyncIterator, Iterator

import anyio

from hushdrop.pipeline.config import Profile, Settings, known_languages
from hushdrop.pipeline.fsutil import FolderUnsafe, opened_folder, random_name, rename_noreplace
from hushdrop.pipeline.watch.intake import InboxUnsafe, is_ignored, opened_profile_folder, profile_folder
from hushdrop.pipeline.logs import log
from hushdrop.pipeline.watch import page_requests
from hushdrop.pipeline.watch.ledger import Ledger, Priority, UploadNote

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
          note: UploadNote, st: os.stat_result, src_dir_fd: int | None = None) -> str:
    """Give the file ``temp`` (in ``src_dir_fd``, by default the profile folder ``dir_fd`` itself)
    its final name in the profile folder, never replacing a file; returns that name.

    The ledger learns the name (and ``note``: what was asked for the file) before the rename, so
    the claim finds it.
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
            page_requests.note_upload(ledger, folder / candidate, profile.name, note, st)
            try:
                renamed = rename_noreplace(src_dir_fd, temp, candidate, dir_fd)
            except BaseException:
                page_requests.forget_upload(ledger, folder / candidate)
                raise
            if renamed:
                os.fsync(dir_fd)
                if src_dir_fd != dir_fd:
                    os.fsync(src_dir_fd)
                return candidate
            page_requests.forget_upload(ledger, folder / candidate)
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


class Landing:
    """A hidden temp file in a profile's folder that a body is streamed into, then given its name.

    Made by :func:`landing`; the temp file is removed at the end unless :meth:`place` named it.
    """

    def __init__(self, settings: Settings, profile: Profile, dir_fd: int, temp: str, fd: int):
        self.settings = settings
        self.profile = profile
        self.dir_fd = dir_fd
        self.temp = temp
        self.fd = fd
        self.size = 0
        self.placed: str | None = None
        self._pending = bytearray()

    async def write(self, body: AsyncIterator[bytes], limit_mb: float, length: int | None = None) -> int:
        """Append ``body``, counted against ``limit_mb`` as it arrives; returns the bytes written so far."""
        self.check_length(length, limit_mb)
        async for chunk in body:
            await self.append(chunk, limit_mb)
        await self.flush()
        return self.size

    def check_length(self, length: int | None, limit_mb: float) -> None:
        """Refuse a body whose declared ``length`` is over the limit or the free space, before a byte is read."""
        if length is not None and length > int(limit_mb * 1024 * 1024):
            raise UploadError(413, too_large(length, limit_mb))
        if length is not None and _free_bytes(self.dir_fd) < length + _MIN_FREE:
            raise UploadError(507, f"not enough free space in the inbox folder of profile {self.profile.name} for {length / 1e6:.0f} MB")

    async def append(self, chunk: bytes, limit_mb: float) -> None:
        """Add ``chunk``; written out a megabyte at a time (:meth:`flush` writes the rest)."""
        self.size += len(chunk)
        if self.size > int(limit_mb * 1024 * 1024):
            raise UploadError(413, f"the file is over the limit of {limit_mb:g} MB")
        self._pending += chunk
        if len(self._pending) >= _FLUSH:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            await anyio.to_thread.run_sync(_write_all, self.fd, self._pending)
            self._pending = bytearray()

    def write_at(self, offset: int, data: bytes) -> None:
        """Overwrite bytes already flushed (a header whose sizes are known only at the end)."""
        os.pwrite(self.fd, data, offset)

    async def place(self, ledger: Ledger, profile: Profile, raw_name: str, note: UploadNote) -> str:
        """Fsync the file and give it its sanitised name in ``profile``'s folder (which may be
        another than the one it landed in), never replacing a file; returns that name."""
        if self.size == 0:
            raise UploadError(400, "the file is empty (0 bytes); nothing to transcribe")
        name = checked_name(raw_name, profile)
        await self.flush()
        await anyio.to_thread.run_sync(os.fsync, self.fd)
        st = os.fstat(self.fd)
        if profile.name == self.profile.name:
            self.placed = await anyio.to_thread.run_sync(place, ledger, self.settings, profile, self.dir_fd, self.temp, name, note, st)
        else:
            with opened_inbox_folder(self.settings, profile) as target_fd:
                self.placed = await anyio.to_thread.run_sync(
                    lambda: place(ledger, self.settings, profile, target_fd, self.temp, name, note, st, src_dir_fd=self.dir_fd))
        return self.placed


def too_large(length: int, limit_mb: float) -> str:
    return f"the file is {length / 1e6:.0f} MB; the limit is {limit_mb:g} MB"


@asynccontextmanager
async def landing(settings: Settings, profile: Profile) -> AsyncIterator[Landing]:
    """A :class:`Landing` in ``profile``'s folder; the disk's faults become UploadErrors a person
    can act on (507 full, 503 unwritable), and the temp file never outlives the request."""
    folder_name = profile.name
    try:
        with opened_inbox_folder(settings, profile) as dir_fd:
            temp = f"{TEMP_PREFIX}{random_name()}{TEMP_SUFFIX}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
            landed = Landing(settings, profile, dir_fd, temp, fd)
            try:
                yield landed
            finally:
                os.close(fd)
                if landed.placed is None:
                    try:
                        os.unlink(temp, dir_fd=dir_fd)
                    except OSError:
                        pass
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UploadError(507, f"the disk holding the inbox folder of profile {folder_name} is full") from exc
        reason = exc.strerror or "the file could not be written"  # never str(exc): it names the absolute path
        raise UploadError(503, f"cannot write into the inbox folder of profile {folder_name}: {reason}") from exc


async def receive(
    settings: Settings, ledger: Ledger, body: AsyncIterator[bytes], profile: Profile, raw_name: str,
    language: str | None, length: int | None,
) -> dict:
    """The page's upload: stream ``body`` into the profile's folder; returns {name, profile, language, size}."""
    checked_name(raw_name, profile)  # refused before a byte is written
    note = UploadNote(language=checked_language(language, profile), priority=Priority.UPLOAD)
    async with landing(settings, profile) as landed:
        try:
            await landed.write(body, settings.web.max_upload_mb, length)
        except UploadError as exc:
            if exc.status == 413:
                exc.message += " (web.max_upload_mb)"
            raise
        if length is not None and landed.size != length:
            raise UploadError(400, f"the upload ended after {landed.size} of {length} bytes")
        final = await landed.place(ledger, profile, raw_name, note)
    log().info("web: upload of %d bytes placed in %s as %s (language %s)", landed.size, profile_folder(settings, profile),
               final, note.language or "of the profile")
    return {"name": final, "profile": profile.name, "language": note.language, "size": landed.size}


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
