"""Small filesystem primitives the durability promises rest on."""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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
        # filesystems without hard links (some SMB/FUSE mounts): check, then rename
        if dest.exists():
            return False
        os.rename(src, dest)
        return True


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


def random_name(length: int = 16) -> str:
    return secrets.token_hex(length // 2)


def sha256_file(path: Path, follow_symlinks: bool = False) -> str:
    """SHA-256 of a file's content; a symlink is refused unless ``follow_symlinks``."""
    flags = os.O_RDONLY | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0))
    fd = os.open(path, flags)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/name (2)``, ``(3)`` … — the first that is not taken."""
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in range(1, 100_000):
        candidate = folder / (name if n == 1 else f"{stem} ({n}){suffix}")
        if not os.path.lexists(candidate) and not os.path.lexists(f"{candidate}.error.txt"):
            return candidate
    raise OSError(f"no free name for {name} in {folder}")


def move_file(src: Path, dest: Path) -> None:
    """Move ``src`` to ``dest`` (which must not exist, or be ``src``'s own earlier copy); safe to repeat."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(src):
        return
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
        partial = dest.with_name(f".{dest.name}.partial")
        with open(src, "rb") as reader, open(partial, "wb") as writer:
            while chunk := reader.read(_CHUNK):
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        if sha256_file(partial) != sha256_file(src):
            partial.unlink()
            raise OSError(f"copy of {src.name} to {dest.parent} does not match; nothing moved")
        os.rename(partial, dest)
    fsync_dir(dest.parent)
    os.unlink(src)
    fsync_dir(src.parent)
