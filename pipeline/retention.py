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

What happened is a :class:`Disposal` (an action and the path it concerns), stored as data in
the ledger's ``retention`` column; the sentence for the log and ``hushdrop status`` is made
from it (:meth:`Disposal.sentence`), never parsed back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hushdrop.pipeline.config import OriginalsPolicy
from hushdrop.pipeline.fsutil import Identity, NotOurs, free_name, fsync_dir, move_file, taken_aside
from hushdrop.pipeline.names import safe_name

_BLOCK = 1 << 20


class RetentionError(Exception):
    pass


class Action(StrEnum):
    KEPT = "kept"  # left where it was (``hushdrop run`` without a policy, ``originals: keep``)
    DELETED = "deleted"
    SHREDDED = "shredded"
    MOVED = "moved"  # ``target`` is the file in its new place
    ALREADY_GONE = "already gone"  # a restart found it retired before the ledger could say so
    LEFT_ALONE = "left alone"  # not a regular file: hushdrop touches nothing else
    SENT_AGAIN = "sent again"  # a quarantined original moved back into the inbox; ``target`` is its new name there


@dataclass(frozen=True)
class Disposal:
    """What became of an original: ``action``, and the file it concerns (where it was, or for
    ``moved`` and ``sent again`` where it is now; None for ``already gone``); ``note`` says who
    or what decided it where that is not the profile's policy (the page, quarantine's limit)."""

    action: Action
    target: Path | None = None
    note: str | None = None

    def sentence(self) -> str:
        """The line for the log and ``hushdrop status``."""
        if self.action == Action.MOVED:
            said = f"moved to {self.target}"
        elif self.action == Action.SENT_AGAIN:
            said = f"sent again as {self.target}"
        elif self.action == Action.ALREADY_GONE:
            said = "already retired before a restart"
        elif self.action == Action.LEFT_ALONE:
            said = f"left alone: {self.target} is not a regular file"
        else:
            said = f"{self.action} {self.target}" if self.target is not None else str(self.action)
        return f"{said} ({self.note})" if self.note else said

    def to_column(self) -> str:
        """The ledger's ``retention`` column: JSON (a name with odd bytes as ``\\udcXX``)."""
        data = {"action": str(self.action), "target": None if self.target is None else str(self.target)}
        if self.note:
            data["note"] = self.note
        return json.dumps(data)

    @classmethod
    def from_column(cls, text: str | None) -> "Disposal | None":
        """The disposal a ``retention`` column holds; rows written before it was data hold the
        sentence, read here once. None: no disposal (empty, or another note on the row, such as
        a quarantine's)."""
        if not text:
            return None
        if text.startswith("{"):
            try:
                data = json.loads(text)
                return cls(Action(data["action"]), None if data.get("target") is None else Path(data["target"]),
                           data.get("note"))
            except (ValueError, KeyError, TypeError):
                return None
        if text == "already retired before a restart":
            return cls(Action.ALREADY_GONE)
        if text.startswith("sent again from the web page as "):  # the page's notes, before they were data
            return cls(Action.SENT_AGAIN, Path(text.removeprefix("sent again from the web page as ")), "from the web page")
        if text == "deleted from the web page" or text.startswith("removed from quarantine "):
            return cls(Action.SHREDDED, None, text)
        for action, prefix, suffix in _SENTENCES:
            if text.startswith(prefix) and text.endswith(suffix) and text[len(prefix) :].startswith("/"):
                return cls(action, Path(text[len(prefix) : len(text) - len(suffix)]))
        return None


def retention_words(column: str | None) -> str | None:
    """What a ledger's ``retention`` column says, as a sentence: a disposal's, or the note as
    stored (what became of a quarantined original)."""
    disposal = Disposal.from_column(column)
    return disposal.sentence() if disposal is not None else column


# the sentences that rows written before Disposal hold (each names an absolute path)
_SENTENCES = (
    (Action.MOVED, "moved to ", ""),
    (Action.LEFT_ALONE, "left alone: ", " is not a regular file"),
    *((action, f"{action} ", "") for action in (Action.KEPT, Action.DELETED, Action.SHREDDED)),
)


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


def move_target(path: Path, policy: OriginalsPolicy) -> Path:
    """Where ``policy`` (a move) puts ``path``: a free safe name in its folder."""
    assert policy.move_to is not None
    return free_name(policy.move_to, safe_name(path.name))


def move(path: Path, target: Path) -> None:
    """Move ``path`` to ``target`` (:func:`pipeline.fsutil.move_file`: safe to repeat)."""
    try:
        move_file(path, target)
    except OSError as exc:
        raise _refusal(path, "move", exc) from exc


def apply_policy(path: Path, policy: OriginalsPolicy, expect: Identity | None = None, target: Path | None = None) -> Disposal:
    """Apply ``policy`` to ``path``; returns what was done. ``target``: for a move, the place
    chosen (and recorded) beforehand, by default :func:`move_target`."""
    if path.is_symlink():
        raise RetentionError(f"{path} is a symlink; hushdrop never touches links")
    if policy.action == "keep":
        return Disposal(Action.KEPT, path)
    if policy.action == "delete":
        delete(path, expect)
        return Disposal(Action.DELETED, path)
    if policy.action == "move":
        target = target or move_target(path, policy)
        move(path, target)
        return Disposal(Action.MOVED, target)
    shred(path, expect)
    return Disposal(Action.SHREDDED, path)
