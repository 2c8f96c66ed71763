"""Small filesystem primitives the durability promises rest on."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # some filesystems (SMB) cannot open directories; nothing more to do
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_temp(directory: Path, data: bytes, prefix: str = ".hushdrop-") -> Path:
    """Write ``data`` to a new hidden temp file in ``directory`` and fsync it."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def link_no_clobber(src: Path, dest: Path) -> bool:
    """Give ``src`` the name ``dest`` unless ``dest`` exists; True on success. Atomic."""
    try:
        os.link(src, dest)
        return True
    except FileExistsError:
        return False
    except OSError:
        # filesystems without hard links (some SMB/FUSE mounts): a rename that never replaces
        return rename_no_clobber(src, dest)


def rename_no_clobber(src: Path, dest: Path) -> bool:
    """Rename ``src`` to ``dest`` unless something (a file, even a dangling symbolic link) has
    that name; True on success (:func:`rename_noreplace`, by the two folders' descriptors)."""
    src_fd = os.open(src.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        dest_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return rename_noreplace(src_fd, src.name, dest.name, dest_fd)
        finally:
            os.close(dest_fd)
    finally:
        os.close(src_fd)


def is_regular_file(path: Path) -> bool:
    """True for a regular file that is not a symlink (never follows links)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


@contextmanager
def private_tempdir(root: Path, prefix: str = "job-") -> Iterator[Path]:
    """A 0700 directory for one job's temporary audio, removed however the job ends."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))  # mkdtemp creates it 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def empty_folder(folder: Path) -> int:
    """Remove everything inside ``folder`` (never following a link out of it); returns how many entries."""
    removed = 0
    if not folder.is_dir() or folder.is_symlink():
        return removed
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def random_name(length: int = 16) -> str:
    return secrets.token_hex(length // 2)


def sha256_file(path: Path, follow_symlinks: bool = False) -> str:
    """SHA-256 of a file's content; a symlink is refused unless ``follow_symlinks``."""
    flags = os.O_RDONLY | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0))
    fd = os.open(path, flags)
    try:
        return sha256_fd(fd)
    finally:
        os.close(fd)


def sha256_fd(fd: int) -> str:
    """SHA-256 of open file ``fd``'s content, read with ``pread`` (its offset is left alone)."""
    digest = hashlib.sha256()
    for chunk in fd_chunks(fd):
        digest.update(chunk)
    return digest.hexdigest()


# "name", "name (2)" … "name (99999)": then a folder is full of one name and something is wrong
NAME_ATTEMPTS = 100_000


def candidate_stems(stem: str) -> Iterator[str]:
    """``stem``, ``stem (2)``, ``stem (3)`` … — the names hushdrop tries, in order, up to one bound."""
    yield stem
    for n in range(2, NAME_ATTEMPTS):
        yield f"{stem} ({n})"


def free_stem(folder: Path, stem: str, suffixes: Iterable[str]) -> str:
    """The first of :func:`candidate_stems` for which no ``folder/<candidate><suffix>`` exists,
    for every suffix — a dangling link counts as taken (``lexists``).

    The one "first free name" rule: outputs (one suffix per format), quarantine (the file and
    its ``.error.txt``) and moved originals all use it.
    """
    suffixes = list(suffixes)
    for candidate in candidate_stems(stem):
        if not any(os.path.lexists(folder / f"{candidate}{suffix}") for suffix in suffixes):
            return candidate
    raise OSError(f"no free name for {stem} in {folder}")


def free_name(folder: Path, name: str, companions: Iterable[str] = (".error.txt",)) -> Path:
    """``folder/name``, or ``folder/name (2)``, ``(3)`` … — the first that is free, together with
    ``name + companion`` for each of ``companions`` (by default its ``.error.txt``).

    ``name`` should already be a safe name (:func:`pipeline.names.safe_name`), so the counter fits.
    """
    stem, suffix = os.path.splitext(name)
    return folder / f"{free_stem(folder, stem, [suffix, *(suffix + c for c in companions)])}{suffix}"


def write_hashed(dest: Path, chunks: Iterable[bytes]) -> str:
    """Write ``chunks`` to the new file ``dest`` (it must not exist), hashing them on the way,
    and fsync it; returns the SHA-256 of what was written. ``dest`` is removed on failure."""
    digest = hashlib.sha256()
    try:
        with open(dest, "xb") as writer:
            for chunk in chunks:
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
    except BaseException:
        if os.path.lexists(dest):
            dest.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def fd_chunks(fd: int) -> Iterator[bytes]:
    """The content of open file ``fd`` from its start, by ``pread`` (its offset is left alone)."""
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        yield chunk
        offset += len(chunk)


class CopyMismatch(OSError):
    """A copy that read back differently from what was written (a disk or network error)."""


def copy_verified(src_fd: int, dest: Path, before_rename: Callable[[], None] | None = None) -> str:
    """Copy open file ``src_fd`` to ``dest`` durably; returns the content's SHA-256.

    The one copy → fsync → hash → rename routine: the bytes go to a hidden
    ``.hushdrop-<random>.partial`` beside ``dest`` while being hashed, are fsynced, read back
    and compared; ``before_rename`` (e.g. "the source did not change meanwhile") may raise to
    give up; then the copy is renamed to ``dest`` — never over a file that appeared there
    meanwhile (FileExistsError) — and the folder fsynced. On any failure the partial copy is
    removed and ``dest`` is left as it was.
    """
    partial = dest.with_name(f".hushdrop-{random_name()}.partial")
    try:
        expected = write_hashed(partial, fd_chunks(src_fd))
        if sha256_file(partial) != expected:
            raise CopyMismatch(f"the copy of {dest.name} in {dest.parent} does not match what was read (disk or network error)")
        if before_rename is not None:
            before_rename()
        if not rename_no_clobber(partial, dest):
            raise FileExistsError(errno.EEXIST, f"{dest} appeared while it was being copied; it was left as it is", str(dest))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return expected


def can_change_folder(folder: Path | int) -> bool:
    """Can this user create, rename and remove entries in ``folder`` (a path or an open
    descriptor)? False on a read-only filesystem or without write and search permission."""
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return False
    effective = os.access in os.supports_effective_ids
    if isinstance(folder, int):
        return os.access(".", os.W_OK | os.X_OK, dir_fd=folder, effective_ids=effective)
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=effective)


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700, and make ``path`` itself 0700."""
    missing = []
    probe = path
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
    if os.path.islink(path):
        raise OSError(f"{path} is a symbolic link; hushdrop keeps its private folders real")
    os.chmod(path, 0o700)
    return path


Identity = tuple[int, int]  # (st_dev, st_ino): which file, whatever its name


def identity_of(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino)


class NotOurs(OSError):
    """A path that hushdrop must not change: not a regular file, hard-linked, or not the file it claimed."""


def check_sole_regular_file(st: os.stat_result, path: Path, expect: Identity | None = None) -> None:
    """Raise :class:`NotOurs` unless ``st`` is a regular file with one name (and the expected one)."""
    if not stat.S_ISREG(st.st_mode):
        raise NotOurs(f"{path} is not a regular file")
    if st.st_nlink != 1:
        raise NotOurs(
            f"{path} has {st.st_nlink} names (hard links); changing it would change the file under "
            f"its other names too"
        )
    if expect is not None and identity_of(st) != tuple(expect):
        raise NotOurs(f"{path} is no longer the file hushdrop claimed (it was replaced)")


@contextmanager
def taken_aside(path: Path, expect: Identity | None = None, writable: bool = False) -> Iterator[tuple[int, Path]]:
    """Open ``path`` without following links, check it is ours, and rename it to a hidden name
    in its own folder before anything else happens to it.

    Yields (descriptor, hidden path). Opening and renaming first means a file hushdrop may
    not change (read-only, in a read-only folder, hard-linked, swapped) is refused before a
    single byte of it changes. If the body raises, the file is given its name back. The folder
    is opened once and every step is relative to it (:func:`taken_aside_at`).
    """
    folder_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with taken_aside_at(folder_fd, path.name, expect, writable, shown=path) as (fd, hidden):
            yield fd, path.with_name(hidden)
    finally:
        os.close(folder_fd)


@contextmanager
def taken_aside_at(
    dir_fd: int, name: str, expect: Identity | None = None, writable: bool = False, shown: Path | None = None,
) -> Iterator[tuple[int, str]]:
    """:func:`taken_aside` for the entry ``name`` of the open folder ``dir_fd``: every open, rename
    and check is relative to that descriptor, so a folder swapped by name meanwhile changes nothing.

    Yields (descriptor, hidden name in ``dir_fd``); ``shown`` is the path used in messages.
    """
    shown = shown if shown is not None else Path(name)
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        check_sole_regular_file(st, shown, expect)
        hidden = f".hushdrop-{random_name()}.retire"
        os.rename(name, hidden, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        try:
            if identity_of(os.stat(hidden, dir_fd=dir_fd, follow_symlinks=False)) != identity_of(st):
                os.rename(hidden, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # swapped between open and rename
                raise NotOurs(f"{shown} was replaced while hushdrop was taking it")
            yield fd, hidden
        except BaseException:
            if _lexists_at(dir_fd, hidden) and not _lexists_at(dir_fd, name):
                os.rename(hidden, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            raise
    finally:
        os.close(fd)


def _lexists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def move_file(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest`` (which must not exist, or be ``src``'s own earlier copy); safe to repeat."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(src):
        return
    if not stat.S_ISREG(os.lstat(src).st_mode):
        raise NotOurs(f"{src} is not a regular file; hushdrop does not move it")
    if os.path.lexists(dest):
        if os.path.samefile(src, dest) or sha256_file(src) == sha256_file(dest):
            os.unlink(src)  # an interrupted earlier move already put it there
            fsync_dir(src.parent)
            return
        raise FileExistsError(f"{dest} exists and is another file")
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            copy_verified(fd, dest)
        finally:
            os.close(fd)
    fsync_dir(dest.parent)
    os.unlink(src)
    fsync_dir(src.parent)


# -- folders and moves relative to descriptors ------------------------------------------------
#
# A path is resolved again by every call that takes one, so a folder on the way that is swapped
# for a symbolic link between two calls sends the second one elsewhere. The helpers below open a
# folder once, from ``/``, one component at a time without following a link, and then create,
# rename and copy only relative to the descriptors they hold.

_DIR_NOFOLLOW = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FolderUnsafe(OSError):
    """A folder on the way is a symbolic link or not a folder (now, or swapped in while hushdrop walked)."""


def open_folder_at(dir_fd: int, name: str, create: bool = False, mode: int = 0o777) -> int:
    """A descriptor of the folder ``name`` in the open folder ``dir_fd``, never through a link.

    With ``create`` a missing folder is made first, relative to ``dir_fd`` (``mkdirat``, which
    never follows a link either). Raises :class:`FolderUnsafe` where ``name`` is a link or not a
    folder, FileNotFoundError where it is missing and not to be created.
    """
    if create:
        try:
            os.mkdir(name, mode, dir_fd=dir_fd)
            os.fsync(dir_fd)
        except FileExistsError:
            pass
    try:
        return os.open(name, _DIR_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FolderUnsafe(exc.errno, "a symbolic link or not a folder", name) from None
        raise


@contextmanager
def opened_folder(path: Path, create_from: Path | None = None, mode: int = 0o777) -> Iterator[int]:
    """A descriptor of the absolute folder ``path``, opened from ``/`` one component at a time
    without following a link — so no folder on the way is a link, even one swapped in meanwhile.

    ``create_from`` (``path`` itself or a folder above it): that folder and those below it are
    made where missing, each relative to the descriptor of the folder above (:func:`open_folder_at`),
    never by a path resolved later. Raises :class:`FolderUnsafe` naming the first component that
    is a link or not a folder, FileNotFoundError naming the first missing one not to be created.
    """
    if not path.is_absolute():
        raise ValueError(f"{path} is not an absolute path")
    parts = path.parts[1:]
    if create_from is None:
        first_made = len(parts)
    elif create_from == path or create_from in path.parents:
        first_made = len(create_from.parts) - 2
    else:
        raise ValueError(f"{create_from} is not {path} or a folder above it")
    fd = os.open("/", _DIR_NOFOLLOW)
    try:
        here = Path("/")
        for index, part in enumerate(parts):
            here = here / part
            try:
                inner = open_folder_at(fd, part, create=index >= first_made, mode=mode)
            except FolderUnsafe as exc:
                raise FolderUnsafe(exc.errno, "a symbolic link or not a folder", str(here)) from None
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, "no such folder", str(here)) from None
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
_RENAME_NOREPLACE = 1


def rename_noreplace(src_dir_fd: int, src: str, dst: str, dst_dir_fd: int | None = None) -> bool:
    """Rename ``src`` in ``src_dir_fd`` to ``dst`` in ``dst_dir_fd`` (by default the same folder);
    False, with nothing changed, where ``dst`` exists. Never follows a link and never replaces.

    OSError(EXDEV) where the two folders are on different filesystems: nothing changed.
    """
    dst_dir_fd = src_dir_fd if dst_dir_fd is None else dst_dir_fd
    if _renameat2 is not None:
        if _renameat2(src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), dst)
    # a filesystem without RENAME_NOREPLACE: look, then rename (callers serialise their own renames)
    if _lexists_at(dst_dir_fd, dst):
        return False
    os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
    return True


def copy_verified_at(src_fd: int, dir_fd: int, name: str, mode: int = 0o600) -> str:
    """Copy open file ``src_fd`` to the new file ``name`` in the open folder ``dir_fd``: written,
    fsynced, read back and compared; returns the content's SHA-256. ``name`` must not exist
    (never a link followed); on any failure it is removed again."""
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        digest = hashlib.sha256()
        for chunk in fd_chunks(src_fd):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
        expected = digest.hexdigest()
        if sha256_fd(fd) != expected:
            raise CopyMismatch(f"the copy of {name} does not match what was read (disk or network error)")
    except BaseException:
        os.close(fd)
        try:
            os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    os.close(fd)
    os.fsync(dir_fd)
    return expected
