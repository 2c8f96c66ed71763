"""What happens to an original once every output of its job is committed.

``shred`` (default) overwrites the file's bytes in place with random data, fsyncs,
truncates and unlinks it. On SSDs (wear levelling), copy-on-write filesystems
(btrfs, ZFS, APFS) and NAS snapshots the old blocks may survive an overwrite:
shredding then only guarantees the file is gone from the folder. See the README's
privacy section.

Every destructive action goes through :func:`pipeline.fsutil.taken_aside`: the file
is opened without following links, checked (a regular file with exactly one name,
and — for a claimed original — the very inode that was claimed), and renamed to a
hidden name in its own folder *before* any byte changes. A file that is
hard-linked, read-only, in a read-only folder or swapped for another is refused
with nothing changed.
"""

from __future__ import annotations

import os
from pathlib import Path

from hushdrop.pipeline.config import OriginalsPolicy
from hushdrop.pipeline.fsutil import Identity, NotOurs, free_name, fsync_dir, move_file, taken_aside
from hushdrop.pipeline.names import safe_name

_BLOCK = 1 << 20


class RetentionError(Exception):
    pass


def overwrite_with_random(fd: int) -> None:
    """Replace every byte of the open file with random bytes, in place, and fsync."""
    remaining = os.fstat(fd).st_size
    os.lseek(fd, 0, os.SEEK_SET)
    while remaining > 0:
        n = min(_BLOCK, remaining)
        os.write(fd, os.urandom(n))
        remaining -= n
    os.fsync(fd)


def _refusal(path: Path, verb: str, exc: OSError) -> RetentionError:
    reason = str(exc) if isinstance(exc, NotOurs) else (exc.strerror or str(exc))
    return RetentionError(f"did not {verb} {path}: {reason}; nothing was changed")


def shred(path: Path, expect: Identity | None = None) -> None:
    """Overwrite, truncate and unlink ``path`` — only if it is the sole name of a regular file
    (and, with ``expect``, the inode hushdrop claimed)."""
    try:
        with taken_aside(path, expect, writable=True) as (fd, hidden):
            overwrite_with_random(fd)
            os.ftruncate(fd, 0)
            os.fsync(fd)
            os.unlink(hidden)
    except OSError as exc:
        raise _refusal(path, "shred", exc) from exc
    fsync_dir(path.parent)


def delete(path: Path, expect: Identity | None = None) -> None:
    try:
        with taken_aside(path, expect) as (_, hidden):
            os.unlink(hidden)
    except OSError as exc:
        raise _refusal(path, "delete", exc) from exc
    fsync_dir(path.parent)


def apply_policy(path: Path, policy: OriginalsPolicy, expect: Identity | None = None) -> str:
    """Apply ``policy`` to ``path``; returns a line for the log."""
    if path.is_symlink():
        raise RetentionError(f"{path} is a symlink; hushdrop never touches links")
    if policy.action == "keep":
        return f"kept {path}"
    if policy.action == "delete":
        delete(path, expect)
        return f"deleted {path}"
    if policy.action == "move":
        assert policy.move_to is not None
        target = free_name(policy.move_to, safe_name(path.name))
        try:
            move_file(path, target)
        except OSError as exc:
            raise _refusal(path, "move", exc) from exc
        return f"moved to {target}"
    shred(path, expect)
    return f"shredded {path}"
