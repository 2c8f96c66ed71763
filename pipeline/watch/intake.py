"""Intake: what in an inbox is ours to take, and taking it (the claim).

A settled file is claimed by an atomic rename into ``<spool>/<profile>/<token>/<name>``.
The ledger row (state ``seen``) names that spool path *before* the rename, so a
crash on either side of it is finished by recovery. Where the inbox and the spool
are on different filesystems (a NAS inbox, a local workdir) the rename cannot be
atomic; then the file is copied to a hidden name, fsynced, its copy re-read and
hash-compared, given its final name, and only then removed from the inbox.

The claim works on descriptors, not names: the profile folder is opened from the
inbox one component at a time without following links, the file is opened in it
with ``O_NOFOLLOW`` and checked with ``fstat`` (a regular file with one name, on
the folder's filesystem, the same inode that settled), renamed relative to that
folder, and hashed through the descriptor. The inode it claimed is recorded, and
retirement later destroys that inode only.

Never touched: names matching the built-in or the profile's ignore patterns (temp
files of sync tools and browsers, dot-files, NAS metadata), anything that is not a
regular file (symlinks are never followed), and files whose extension is not in
the profile's allow-list. Such things are reported once and left where they are.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from hushdrop.pipeline.config import Profile, Settings
from hushdrop.pipeline.audio.containers import is_incomplete
from hushdrop.pipeline.errors import ENVIRONMENT_ERRNOS
from hushdrop.pipeline.fsutil import (
    CopyMismatch, NotOurs, can_change_folder, check_sole_regular_file, copy_verified, fsync_dir, identity_of, private_dir,
    random_name, sha256_fd, sha256_file, taken_aside, write_temp,
)
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State
from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.names import display_name, safe_name

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


def is_ignored(name: str, extra: list[str] | tuple[str, ...] = ()) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in (*BUILTIN_IGNORE, *extra))


def profile_folder(settings: Settings, profile: Profile | str) -> Path:
    """A profile's inbox folder (the one place it is computed). ``profile`` may be a name; a name
    no longer in the config gives the inbox itself."""
    if isinstance(profile, str):
        found = settings.profiles.get(profile)
        if found is None:
            return settings.inbox
        profile = found
    return settings.inbox / profile.folder if profile.folder else settings.inbox


class InboxUnsafe(Exception):
    """An inbox or profile folder that is reached through a symbolic link (or is not a folder)."""


class InboxBlocked(Exception):
    """The machine will not let hushdrop claim from this folder (read-only, no permission, disk full).

    An environment fault: the files stay where they are and intake tries again later.
    """


class ClaimRefused(Exception):
    """This file will not be taken as it is (unreadable, hard-linked…); it stays in the inbox, reported once."""


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def inbox_link_problem(settings: Settings) -> str | None:
    """Why the inbox may not be used as configured (reached through a symbolic link), or None."""
    real = os.path.realpath(settings.inbox)
    if real != str(settings.inbox):
        return (
            f"the inbox {settings.inbox} is reached through a symbolic link (it is really {real}); "
            f"hushdrop only shreds files in a folder named exactly: write `inbox: {real}` in {settings.source}"
        )
    return None


@contextmanager
def opened_profile_folder(settings: Settings, profile: Profile) -> Iterator[int]:
    """A descriptor of the profile's folder, opened from ``/`` one component at a time without
    following a link — the inbox's own ancestors included, so a folder above the inbox swapped
    for a link while hushdrop runs is refused too; raises InboxUnsafe where one is a link or
    not a folder."""
    fd = os.open("/", _DIR_FLAGS)
    try:
        here = Path("/")
        parts = [*settings.inbox.parts[1:], *(profile.folder.split("/") if profile.folder else ())]
        for part in parts:
            here = here / part
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise InboxUnsafe(_unsafe_reason(here, exc)) from None
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _unsafe_reason(path: Path, exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
        return f"{path} is a symbolic link; hushdrop never takes files through a link: make it a real folder"
    if exc.errno == errno.ENOENT:
        return f"{path} does not exist"
    return f"cannot open {path}: {exc.strerror}"


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
    if st.st_nlink != 1:
        return Verdict(profile, HARD_LINKED.format(n=st.st_nlink))
    return Verdict(profile, take=True)


HARD_LINKED = (
    "it has {n} names (hard links); hushdrop shreds what it transcribes, which would destroy the file "
    "under its other names too: copy the recording into the inbox instead of linking it"
)


def file_identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What must stay unchanged for a settle period: device, inode, size and mtime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ClaimLost(Exception):
    """The file changed or went away while it was being claimed; it was left (or put back) in the inbox."""


_claiming: set[Path] = set()
_claiming_lock = threading.Lock()


def claims_in_progress() -> frozenset[Path]:
    """The inbox paths this process is claiming right now. Their rows are ``seen`` until the claim
    ends, which a cross-filesystem copy or the hash of a large file can make minutes: the sweep for
    stalled claims (:func:`pipeline.watch.scheduler.finish_stale_seen`) leaves these alone."""
    with _claiming_lock:
        return frozenset(_claiming)


@contextmanager
def _claiming_now(path: Path) -> Iterator[None]:
    with _claiming_lock:
        _claiming.add(path)
    try:
        yield
    finally:
        with _claiming_lock:
            _claiming.discard(path)


def spool_path_for(settings: Settings, profile: Profile, name: str) -> Path:
    """Where a claimed original waits. Its name there is a safe one (valid UTF-8, no leading
    dash or dot, bounded), so no tool ever sees the user's raw bytes; the ledger keeps those."""
    return settings.spool_dir / profile.name / random_name() / safe_name(name)


def claim(settings: Settings, ledger: Ledger, path: Path, profile: Profile, settled: os.stat_result) -> JobRow:
    """Take a settled inbox file: record it, move it into the spool, hash it, mark it claimed.

    Raises ``ClaimLost`` when the file is not there or not what settled any more,
    ``ClaimRefused`` when it must stay where it is (unreadable, hard-linked), ``InboxUnsafe``
    when its folder is reached through a link and ``InboxBlocked`` when the folder or
    the spool cannot be written (an environment fault: nothing was changed).
    """
    with opened_profile_folder(settings, profile) as folder_fd:
        if path.parent != profile_folder(settings, profile):
            raise ClaimRefused(f"{path} is not directly in the folder of profile {profile.name}")
        name = path.name
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=folder_fd)
        except FileNotFoundError:
            raise ClaimLost(f"{display_name(name)} went away before it was claimed") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ClaimLost(f"{display_name(name)} was replaced by a symbolic link") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise ClaimRefused(
                    f"cannot read it ({exc.strerror}); it stays in the inbox: give the user hushdrop runs as "
                    f"read permission (e.g. `chmod a+r`) and it will be taken"
                ) from None
            raise InboxBlocked(f"cannot open {path}: {exc.strerror}") from exc
        try:
            with _claiming_now(path):
                return _claim_open_file(settings, ledger, path, profile, settled, folder_fd, fd)
        finally:
            os.close(fd)


def _claim_open_file(
    settings: Settings, ledger: Ledger, path: Path, profile: Profile, settled: os.stat_result, folder_fd: int, fd: int
) -> JobRow:
    name = path.name
    st = os.fstat(fd)
    try:
        check_sole_regular_file(st, path)
    except NotOurs as exc:
        if stat.S_ISREG(st.st_mode) and st.st_nlink != 1:
            raise ClaimRefused(HARD_LINKED.format(n=st.st_nlink)) from None
        raise ClaimLost(str(exc)) from None
    if file_identity(st) != file_identity(settled):
        raise ClaimLost(f"{display_name(name)} changed after it settled")
    if st.st_dev != os.fstat(folder_fd).st_dev:
        raise ClaimRefused("it is a mount of another filesystem, not a file in the inbox")
    _check_writable(folder_fd, path.parent)
    spool = spool_path_for(settings, profile, name)
    try:
        private_dir(spool.parent.parent)
        os.mkdir(spool.parent, 0o700)
    except OSError as exc:
        raise InboxBlocked(f"cannot create the spool folder {spool.parent}: {exc.strerror or exc}") from exc
    fsync_dir(spool.parent.parent)
    asked = ledger.uploads.note_for(path, st)  # an upload's choices on the page or through the API
    job_id = ledger.add(
        profile=profile.name, name=name, inbox_path=path, spool_path=spool,
        size=st.st_size, mtime_ns=st.st_mtime_ns, device=st.st_dev, inode=st.st_ino,
        **(asdict(asked) if asked else {}),
    )
    logger = job_log(job_id)
    try:
        try:
            os.rename(name, spool, src_dir_fd=folder_fd)
            copied_hash = None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copied_hash = _copy_across(fd, folder_fd, name, spool, settled)
    except (ClaimLost, OSError) as exc:  # nothing was moved: the file stays in the inbox
        ledger.transition(job_id, State.ABANDONED, expect=State.SEEN, error=str(exc))
        _remove_empty(spool.parent)
        if isinstance(exc, OSError) and exc.errno == errno.EBUSY:
            raise ClaimRefused("it is a mount point (something is mounted on it), not a file hushdrop may take") from exc
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            raise InboxBlocked(f"cannot move {path} into the spool: {exc.strerror}") from exc
        raise ClaimLost(str(exc)) from exc
    # From here the original is in the spool. Any failure leaves the row 'seen' for
    # finish_seen() (at restart, or the periodic stale-claim sweep) to complete.
    fsync_dir(spool.parent)
    fsync_dir(path.parent)
    landed = os.lstat(spool)
    if copied_hash is None and identity_of(landed) != identity_of(st):
        # replaced between the check and the rename: put it back, untouched
        os.rename(spool, name, dst_dir_fd=folder_fd)
        ledger.transition(job_id, State.ABANDONED, expect=State.SEEN, error="replaced while it was claimed")
        _remove_empty(spool.parent)
        raise ClaimLost(f"{display_name(name)} was replaced while it was being claimed")
    content_hash = copied_hash or sha256_fd(fd)
    incomplete = is_incomplete(fd) if copied_hash is None else False
    row = ledger.transition(
        job_id, State.CLAIMED, expect=State.SEEN, content_hash=content_hash,
        size=landed.st_size, mtime_ns=landed.st_mtime_ns, device=landed.st_dev, inode=landed.st_ino,
    )
    ledger.uploads.forget_file(path, st)  # this file's note only: the next upload may have its name already
    logger.info("claimed %s (profile %s, %d bytes, sha256 %s…)", path, profile.name, landed.st_size, content_hash[:12])
    if incomplete:
        logger.warning("%s is shorter than its header declares: it was taken incomplete", path)
    return row


def _check_writable(folder_fd: int, folder: Path) -> None:
    """Raise InboxBlocked when the folder cannot give up a file (read-only, no permission)."""
    if not can_change_folder(folder_fd):
        raise InboxBlocked(
            f"{folder} is on a read-only filesystem or not writable by the user hushdrop runs as, so files "
            f"cannot be moved out of it: mount it read-write or give that user write permission on the folder"
        )


def _copy_across(fd: int, folder_fd: int, name: str, dest: Path, settled: os.stat_result) -> str:
    """Copy open file ``fd`` (``name`` in ``folder_fd``) to ``dest`` on another filesystem, verify,
    then remove the inbox name — only if it still is that same file; returns the hash."""

    def unchanged() -> None:
        if file_identity(os.fstat(fd)) != file_identity(settled):
            raise ClaimLost(f"{display_name(name)} changed while it was being copied")

    try:
        try:
            expected = copy_verified(fd, dest, before_rename=unchanged)
        except CopyMismatch:
            raise ClaimLost(f"the spool copy of {display_name(name)} does not match the original (disk or network error)") from None
        if file_identity(os.stat(name, dir_fd=folder_fd, follow_symlinks=False)) != file_identity(settled):
            raise ClaimLost(f"{display_name(name)} changed while it was being copied")
        os.unlink(name, dir_fd=folder_fd)
        return expected
    except BaseException:
        try:
            os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            still_there = True
        except OSError:
            still_there = False
        if still_there:
            dest.unlink(missing_ok=True)  # the inbox original is still the one copy
        raise


def finish_seen(settings: Settings, ledger: Ledger, job: JobRow) -> JobRow:
    """Recovery of a job caught between 'seen' and 'claimed' by a crash."""
    logger = job_log(job.id)
    spool = job.spool_path
    for leftover in spool.parent.glob(".hushdrop-*.partial") if spool.parent.is_dir() else ():
        leftover.unlink(missing_ok=True)
    try:
        landed = os.lstat(spool)
    except FileNotFoundError:
        _remove_empty(spool.parent)
        logger.info("claim of %s did not happen before the restart; it stays in the inbox", job.inbox_path)
        return ledger.transition(job.id, State.ABANDONED, expect=State.SEEN, error="claim interrupted; file left in the inbox")
    if not stat.S_ISREG(landed.st_mode):
        os.rename(spool, job.inbox_path)
        _remove_empty(spool.parent)
        return ledger.transition(job.id, State.ABANDONED, expect=State.SEEN, error="not a regular file")
    content_hash = sha256_file(spool)
    try:
        # the cross-filesystem copy finished but the inbox original was not removed yet: remove it
        # only if it is still the very file that was copied. It is hashed through a descriptor
        # (the claimed file, one name, whatever its name holds meanwhile), then taken aside by its
        # identity and removed at once: a new file put under its name meanwhile is not the one
        # removed, and a crash never leaves the original hidden in the inbox.
        if job.identity is not None and identity_of(landed) != tuple(job.identity):
            fd = os.open(job.inbox_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
            try:
                st = os.fstat(fd)
                copied = identity_of(st) == tuple(job.identity) and st.st_nlink == 1 and sha256_fd(fd) == content_hash
            finally:
                os.close(fd)
            if copied:
                with taken_aside(job.inbox_path, expect=job.identity) as (_, hidden):
                    os.unlink(hidden)
                fsync_dir(job.inbox_path.parent)
    except OSError:  # not the copied file (replaced, hard-linked, changed), or gone: left as it is
        pass
    logger.info("claim of %s completed after the restart", job.inbox_path)
    return ledger.transition(
        job.id, State.CLAIMED, expect=State.SEEN, content_hash=content_hash, size=landed.st_size, mtime_ns=landed.st_mtime_ns,
        device=landed.st_dev, inode=landed.st_ino,
    )


# ---------------------------------------------------------------------------
# moving originals out of the spool (quarantine, keep)


def write_error_note(target: Path, text: str) -> Path:
    note = target.with_name(f"{target.name}.error.txt")
    temp = write_temp(target.parent, text.encode("utf-8", "backslashreplace"))
    os.replace(temp, note)
    fsync_dir(target.parent)
    return note


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def clean_spool_dir(folder: Path) -> None:
    """Remove a finished job's spool folder: hidden leftovers and the folder.

    A ``.hushdrop-*.retire`` file is an original whose retirement was interrupted after its
    outputs were committed: it is shredded, not just unlinked.
    """
    from hushdrop.pipeline.retention import RetentionError, shred

    if not folder.is_dir() or folder.is_symlink():
        return
    for entry in folder.iterdir():
        if not entry.name.startswith("."):
            continue
        try:
            if entry.name.startswith(".hushdrop-") and entry.name.endswith(".retire"):
                shred(entry)
            else:
                entry.unlink()
        except (OSError, RetentionError) as exc:
            log().warning("cannot remove %s: %s", entry, getattr(exc, "strerror", None) or exc)
    _remove_empty(folder)
