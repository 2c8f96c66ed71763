"""Intake: what in an inbox is ours to take, and taking it (the claim).

A settled file is claimed by an atomic rename into ``<spool>/<profile>/<token>/<name>``.
The ledger row (state ``seen``) names that spool path *before* the rename, so a
crash on either side of it is finished by recovery. Where the inbox and the spool
are on different filesystems (a NAS inbox, a local workdir) the rename cannot be
atomic; then the file is copied to a hidden name, fsynced, its copy re-read and
hash-compared, given its final name, and only then removed from the inbox.

Never touched: names matching the built-in or the profile's ignore patterns (temp
files of sync tools and browsers, dot-files, NAS metadata), anything that is not a
regular file (symlinks are never followed), and files whose extension is not in
the profile's allow-list. Such things are reported once and left where they are.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Profile, Settings
from pipeline.fsutil import fsync_dir, random_name, sha256_file, write_temp
from pipeline.ledger import ABANDONED, CLAIMED, Ledger, JobRow
from pipeline.logs import job_log, log

# Temp and metadata files of sync tools, browsers, NAS boxes and desktops: never ours.
BUILTIN_IGNORE = (
    ".*",  # dot-files: .syncthing.*.tmp, ._* (macOS), .DS_Store, .~lock* (Nextcloud/LibreOffice), .stfolder, .stversions
    "~syncthing~*",
    "*.tmp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.!sync",
    "*.swp",
    "~$*",
    "@eaDir",
    "#recycle",
    "#snapshot",
    "$RECYCLE.BIN",
    "System Volume Information",
    "Thumbs.db",
    "desktop.ini",
    "*.error.txt",
)

_CHUNK = 1 << 20


def is_ignored(name: str, extra: list[str] | tuple[str, ...] = ()) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in (*BUILTIN_IGNORE, *extra))


def profile_folder(settings: Settings, profile: Profile) -> Path:
    return settings.inbox / profile.folder if profile.folder else settings.inbox


def profile_for(settings: Settings, path: Path) -> Profile | None:
    """The profile whose folder ``path`` sits directly in, or None."""
    try:
        rel = path.parent.relative_to(settings.inbox)
    except ValueError:
        return None
    folder = "" if str(rel) == "." else rel.as_posix()
    return settings.profile_for_folder(folder)


@dataclass(frozen=True)
class Verdict:
    profile: Profile | None
    reason: str | None = None  # why it is left alone, for a one-time report; None = silently
    take: bool = False


def classify(settings: Settings, path: Path, st: os.stat_result | None = None) -> Verdict:
    """Should intake take ``path``? Never follows a link; ``st`` is its ``lstat``."""
    profile = profile_for(settings, path)
    if profile is None or is_ignored(path.name, profile.ignore):
        return Verdict(profile)
    if st is None:
        try:
            st = os.lstat(path)
        except OSError:
            return Verdict(profile)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if settings.profile_for_folder(path.relative_to(settings.inbox).as_posix()) is not None:
            return Verdict(profile)  # a profile's own folder
        return Verdict(profile, "a directory; hushdrop only takes files placed directly in a profile folder")
    if stat.S_ISLNK(mode):
        return Verdict(profile, "a symbolic link; hushdrop never follows links — drop the file itself")
    if not stat.S_ISREG(mode):
        what = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return Verdict(profile, f"{what}, not a regular file")
    extension = path.suffix.lower().lstrip(".")
    if extension not in profile.extensions:
        return Verdict(profile, f"its extension {path.suffix or '(none)'!r} is not in the profile's `extensions` list")
    return Verdict(profile, take=True)


def file_identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What must stay unchanged for a settle period: device, inode, size and mtime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ClaimLost(Exception):
    """The file changed or went away while it was being claimed; it was left (or put back) in the inbox."""


def spool_path_for(settings: Settings, profile: Profile, name: str) -> Path:
    return settings.spool_dir / profile.name / random_name() / name


def claim(settings: Settings, ledger: Ledger, path: Path, profile: Profile, settled: os.stat_result) -> JobRow:
    """Take a settled inbox file: record it, move it into the spool, hash it, mark it claimed.

    Raises ``ClaimLost`` when the file is not there or not what settled any more.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ClaimLost(f"{path.name} went away before it was claimed") from None
    if not stat.S_ISREG(st.st_mode) or file_identity(st) != file_identity(settled):
        raise ClaimLost(f"{path.name} changed after it settled")
    spool = spool_path_for(settings, profile, path.name)
    spool.parent.mkdir(parents=True, mode=0o700)
    fsync_dir(spool.parent.parent)
    job_id = ledger.add(
        profile=profile.name, name=path.name, inbox_path=path, spool_path=spool,
        size=st.st_size, mtime_ns=st.st_mtime_ns,
    )
    logger = job_log(job_id)
    try:
        try:
            os.rename(path, spool)
            copied_hash = None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copied_hash = _copy_across(path, spool, settled)
    except (ClaimLost, OSError) as exc:  # nothing was moved: the file stays in the inbox
        ledger.transition(job_id, ABANDONED, expect="seen", error=str(exc))
        _remove_empty(spool.parent)
        raise ClaimLost(str(exc)) from exc
    # From here the original is in the spool. Any failure leaves the row 'seen' for
    # finish_seen() (at restart, or the periodic stale-claim sweep) to complete.
    fsync_dir(spool.parent)
    fsync_dir(path.parent)
    landed = os.lstat(spool)
    if not stat.S_ISREG(landed.st_mode):
        # replaced by a link or FIFO between the check and the rename: put it back, untouched
        os.rename(spool, path)
        ledger.transition(job_id, ABANDONED, expect="seen", error="not a regular file")
        _remove_empty(spool.parent)
        raise ClaimLost(f"{path.name} was replaced by something that is not a regular file")
    content_hash = copied_hash or sha256_file(spool)
    row = ledger.transition(
        job_id, CLAIMED, expect="seen", content_hash=content_hash,
        size=landed.st_size, mtime_ns=landed.st_mtime_ns,
    )
    logger.info("claimed %s (profile %s, %d bytes, sha256 %s…)", path, profile.name, landed.st_size, content_hash[:12])
    return row


def _copy_across(src: Path, dest: Path, settled: os.stat_result) -> str:
    """Copy ``src`` to ``dest`` on another filesystem, verify, then remove ``src``; returns the hash."""
    partial = dest.with_name(f".{dest.name}.partial")
    digest = hashlib.sha256()
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        with os.fdopen(fd, "rb") as reader, open(partial, "xb") as writer:
            if file_identity(os.fstat(reader.fileno())) != file_identity(settled):
                raise ClaimLost(f"{src.name} changed after it settled")
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
            if file_identity(os.fstat(reader.fileno())) != file_identity(settled):
                raise ClaimLost(f"{src.name} changed while it was being copied")
        expected = digest.hexdigest()
        if sha256_file(partial) != expected:
            raise ClaimLost(f"the spool copy of {src.name} does not match the original (disk or network error)")
        os.rename(partial, dest)
        fsync_dir(dest.parent)
        if file_identity(os.lstat(src)) != file_identity(settled):
            raise ClaimLost(f"{src.name} changed while it was being copied")
        os.unlink(src)
        return expected
    except BaseException:
        partial.unlink(missing_ok=True)
        if os.path.lexists(src):
            dest.unlink(missing_ok=True)  # the inbox original is still the one copy
        raise


def finish_seen(settings: Settings, ledger: Ledger, job: JobRow) -> JobRow:
    """Recovery of a job caught between 'seen' and 'claimed' by a crash."""
    logger = job_log(job.id)
    spool = job.spool_path
    for leftover in spool.parent.glob(".*.partial") if spool.parent.is_dir() else ():
        leftover.unlink(missing_ok=True)
    try:
        landed = os.lstat(spool)
    except FileNotFoundError:
        _remove_empty(spool.parent)
        logger.info("claim of %s did not happen before the restart; it stays in the inbox", job.inbox_path)
        return ledger.transition(job.id, ABANDONED, expect="seen", error="claim interrupted; file left in the inbox")
    if not stat.S_ISREG(landed.st_mode):
        os.rename(spool, job.inbox_path)
        _remove_empty(spool.parent)
        return ledger.transition(job.id, ABANDONED, expect="seen", error="not a regular file")
    content_hash = sha256_file(spool)
    try:
        # the cross-filesystem copy finished but the inbox original was not removed yet
        if os.path.lexists(job.inbox_path) and sha256_file(job.inbox_path) == content_hash:
            os.unlink(job.inbox_path)
            fsync_dir(job.inbox_path.parent)
    except OSError:
        pass
    logger.info("claim of %s completed after the restart", job.inbox_path)
    return ledger.transition(
        job.id, CLAIMED, expect="seen", content_hash=content_hash, size=landed.st_size, mtime_ns=landed.st_mtime_ns
    )


# ---------------------------------------------------------------------------
# moving originals out of the spool (quarantine, keep)


def write_error_note(target: Path, text: str) -> Path:
    note = target.with_name(f"{target.name}.error.txt")
    temp = write_temp(target.parent, text.encode("utf-8"))
    os.replace(temp, note)
    fsync_dir(target.parent)
    return note


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def clean_spool_dir(folder: Path) -> None:
    """Remove a finished job's spool folder: hidden leftovers (a shred's renamed file) and the folder."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            try:
                entry.unlink()
            except OSError as exc:
                log().warning("cannot remove %s: %s", entry, exc.strerror)
    _remove_empty(folder)
