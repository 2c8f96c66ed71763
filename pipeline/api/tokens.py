"""API tokens: made by ``hushdrop api add-token NAME``, shown once, kept only as their SHA-256.

The store is ``api-tokens.json`` in the workdir (mode 0600, replaced atomically under a lock
file, so two commands at once cannot lose a token). A token is 32 random bytes, so its plain
SHA-256 is as good as a slow password hash: nobody can guess one from the hash. Each token may
carry its own limits (``max_upload_mb``, ``concurrent_jobs``); where it does not, the ``api:``
settings' apply. The server reads the file again whenever it changes, so a token added or
revoked takes effect on the next request without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.errors import HushdropError
from hushdrop.pipeline.fsutil import fsync_dir, private_dir, write_temp

PREFIX = "hd-"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class TokenError(HushdropError):
    """A token command that cannot be done as asked (a taken or unknown name, a bad name)."""


@dataclass(frozen=True)
class Token:
    """One token as stored: never the token itself."""

    name: str
    sha256: str
    created_at: float
    max_upload_mb: float | None = None  # None: api.max_upload_mb
    concurrent_jobs: int | None = None  # None: api.concurrent_jobs

    def upload_limit_mb(self, settings: Settings) -> float:
        return self.max_upload_mb if self.max_upload_mb is not None else settings.api.max_upload_mb

    def job_limit(self, settings: Settings) -> int:
        return self.concurrent_jobs if self.concurrent_jobs is not None else settings.api.concurrent_jobs


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class TokenStore:
    """The tokens of one workdir."""

    def __init__(self, settings: Settings):
        self.path = settings.workdir / "api-tokens.json"
        self._lock_path = settings.workdir / "api-tokens.lock"
        self._cache: tuple[tuple[int, int, int], dict[str, Token]] | None = None
        self._cache_lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------

    def _load(self) -> dict[str, Token]:
        try:
            with open(self.path, "rb") as f:
                data = json.load(f)
            return {entry["name"]: Token(**entry) for entry in data.get("tokens", [])}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:  # unreadable, not JSON, not its shape
            raise TokenError(f"cannot read the API tokens in {self.path}: {exc}; fix or remove the file "
                             f"(every token in it stops working) and add tokens again") from None

    def tokens(self) -> dict[str, Token]:
        """Every token by name, read again only when the file changed."""
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return {}
        with self._cache_lock:
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, self._load())
            return self._cache[1]

    def find(self, presented: str | None) -> Token | None:
        """The token ``presented`` is (the part after ``Bearer``), or None."""
        if not presented:
            return None
        wanted = digest(presented.strip())
        for token in self.tokens().values():
            if secrets.compare_digest(token.sha256, wanted):
                return token
        return None

    # -- changing ------------------------------------------------------------------------

    @contextmanager
    def _changing(self) -> Iterator[dict[str, Token]]:
        private_dir(self.path.parent)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            tokens = self._load()
            yield tokens
            data = json.dumps({"tokens": [asdict(t) for t in tokens.values()]}, indent=2).encode() + b"\n"
            temp = write_temp(self.path.parent, data, prefix=".api-tokens-")
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
            fsync_dir(self.path.parent)
        finally:
            os.close(fd)

    def add(self, name: str, max_upload_mb: float | None = None, concurrent_jobs: int | None = None) -> str:
        """Make a token called ``name``; returns the token itself, the only time it exists in the clear."""
        if not NAME.fullmatch(name):
            raise TokenError(f"token name {name!r}: use letters, digits, '.', '_' and '-' (up to 64), e.g. bazarr")
        if max_upload_mb is not None and max_upload_mb <= 0:
            raise TokenError("--max-upload-mb must be more than 0")
        if concurrent_jobs is not None and concurrent_jobs < 1:
            raise TokenError("--concurrent-jobs must be at least 1")
        token = PREFIX + secrets.token_urlsafe(32)
        with self._changing() as tokens:
            if name in tokens:
                raise TokenError(f"a token called {name!r} exists already: revoke it first "
                                 f"(`hushdrop api revoke-token {name}`) or choose another name")
            tokens[name] = Token(name, digest(token), round(time.time(), 3), max_upload_mb, concurrent_jobs)
        return token

    def revoke(self, name: str) -> None:
        with self._changing() as tokens:
            if name not in tokens:
                known = ", ".join(tokens) or "none"
                raise TokenError(f"no token called {name!r}; tokens: {known}")
            del tokens[name]
