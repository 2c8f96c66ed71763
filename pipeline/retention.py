"""What happens to an original once every output of its job is committed.

``shred`` (default) overwrites the file's bytes in place with random data, fsyncs,
truncates, renames it to a random name and unlinks it. On SSDs (wear levelling),
copy-on-write filesystems (btrfs, ZFS, APFS) and NAS snapshots the old blocks may
survive an overwrite: shredding then only guarantees the file is gone from the
folder. See the README's privacy section.

Symlinks are never followed: a path that is not a regular file is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipeline.config import OriginalsPolicy
from pipeline.fsutil import free_name, fsync_dir, move_file, random_name

_BLOCK = 1 << 20


class RetentionError(Exception):
    pass


def _open_regular(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise RetentionError(f"cannot open {path} for shredding: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RetentionError(f"{path} is not a regular file; refusing to shred it")
    return fd


def overwrite_with_random(fd: int) -> None:
    """Replace every byte of the open file with random bytes, in place, and fsync."""
    remaining = os.fstat(fd).st_size
    os.lseek(fd, 0, os.SEEK_SET)
    while remaining > 0:
        n = min(_BLOCK, remaining)
        os.write(fd, os.urandom(n))
        remaining -= n
    os.fsync(fd)


def shred(path: Path) -> None:
    fd = _open_regular(path)
    try:
        overwrite_with_random(fd)
        os.ftruncate(fd, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    hidden = path.with_name(f".{random_name()}")
    os.rename(path, hidden)
    os.unlink(hidden)
    fsync_dir(path.parent)


def apply_policy(path: Path, policy: OriginalsPolicy) -> str:
    """Apply the profile's policy to ``path``; returns a line for the log."""
    if path.is_symlink():
        raise RetentionError(f"{path} is a symlink; hushdrop never touches links")
    if policy.action == "keep":
        return f"kept {path}"
    if policy.action == "delete":
        os.unlink(path)
        fsync_dir(path.parent)
        return f"deleted {path}"
    if policy.action == "move":
        assert policy.move_to is not None
        target = free_name(policy.move_to, path.name)
        move_file(path, target)
        return f"moved to {target}"
    shred(path)
    return f"shredded {path}"
