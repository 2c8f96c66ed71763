"""Small filesystem primitives the durability promises rest on."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
