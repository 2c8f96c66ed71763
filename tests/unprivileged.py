"""Running a piece of a test as an ordinary user, so permissions mean what they mean for users.

CI and these machines run as root, for whom a mode-000 file or a read-only folder is no
obstacle; a user's NAS account is not root. ``run_unprivileged(fn, *args)`` calls ``fn``
in a forked child that has dropped to ``nobody`` when the test runs as root (and simply
calls it otherwise) and returns what it returned, or re-raises what it raised.
``shared_tree`` is a temp folder that user can enter.
"""

from __future__ import annotations

import multiprocessing
import os
import pwd
import shutil
import tempfile
import traceback
from pathlib import Path

NOBODY = pwd.getpwnam("nobody")


def is_root() -> bool:
    return os.geteuid() == 0


def _child(conn, fn, args):
    try:
        if is_root():
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # noqa: BLE001 - handed back to the test
        conn.send(("raised", (type(exc).__name__, str(exc), traceback.format_exc())))
    finally:
        conn.close()


class RaisedInChild(Exception):
    def __init__(self, kind: str, message: str, trace: str):
        self.kind = kind
        super().__init__(f"{kind}: {message}\n{trace}")


def run_unprivileged(fn, *args, timeout: float = 120):
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    if not parent.poll(timeout):
        proc.kill()
        raise AssertionError(f"{fn.__name__} did not finish in {timeout} s")
    kind, value = parent.recv()
    proc.join(10)
    if kind == "raised":
        raise RaisedInChild(*value)
    return value


def give_to_user(*paths: Path) -> None:
    """Make ``paths`` (recursively) belong to the unprivileged user (no-op when not root)."""
    if not is_root():
        return
    for path in paths:
        for root, dirs, files in os.walk(path):
            os.chown(root, NOBODY.pw_uid, NOBODY.pw_gid)
            for name in files + dirs:
                os.chown(os.path.join(root, name), NOBODY.pw_uid, NOBODY.pw_gid, follow_symlinks=False)


def make_shared_tree():
    """A temp folder outside pytest's private (0700) tmp root, owned by the unprivileged user."""
    base = Path(tempfile.mkdtemp(prefix="hushdrop-user-"))
    os.chmod(base, 0o755)
    give_to_user(base)
    yield base
    shutil.rmtree(base, ignore_errors=True)
