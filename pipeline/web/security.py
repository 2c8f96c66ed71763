"""Passwords, sessions, CSRF tokens and the login rate limit of the web page.

- The password is stored only as a scrypt hash (``scrypt$N$r$p$salt$hash``, base64 parts),
  written into config.yaml by ``hushdrop web --set-password``.
- A session is a signed cookie (HMAC-SHA256 with a random key kept in the private workdir):
  HttpOnly, SameSite=Strict, Secure over HTTPS. It carries a session id, a CSRF token,
  whether the password was given, when, and a fingerprint of the password hash, so changing
  the password ends every session.
- Every state-changing request must come from the page's own origin (``Origin``) and carry
  the session's CSRF token (header ``X-CSRF-Token``, or a form field for the login form).
- Failed logins are limited per client address and in total, within a sliding window. The
  address is the connection's peer, or the client a trusted proxy names (``address.client_of``),
  so clients behind one proxy are counted apart; an IPv6 client is counted by its /64, the block
  one host is usually given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_MAXMEM = 64 * 1024 * 1024

SESSION_COOKIE = "hushdrop_session"
SESSION_SECONDS = 12 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM, dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def load_key(path: Path) -> bytes:
    """The session signing key: 32 random bytes in a 0600 file, made on first use."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        key = f.read()
    if len(key) < 32:
        raise OSError(f"{path} is not a hushdrop session key (remove it and start again)")
    return key


@dataclass
class Session:
    sid: str
    csrf: str
    authed: bool = False
    issued: float = field(default_factory=time.time)
    fingerprint: str = ""
    new: bool = False  # not from a cookie: the response sets one

    @classmethod
    def fresh(cls, fingerprint: str = "") -> "Session":
        return cls(sid=secrets.token_urlsafe(16), csrf=secrets.token_urlsafe(24), fingerprint=fingerprint, new=True)


class SessionSigner:
    def __init__(self, key: bytes, password_hash: str | None):
        self._key = key
        self.fingerprint = hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]

    def dump(self, session: Session) -> str:
        payload = _b64(json.dumps(
            {"s": session.sid, "c": session.csrf, "a": session.authed, "t": int(session.issued), "p": session.fingerprint},
            separators=(",", ":"),
        ).encode())
        return f"{payload}.{self._sign(payload)}"

    def load(self, cookie: str | None) -> Session | None:
        """The session in ``cookie`` if its signature holds and it has not expired, else None."""
        if not cookie or "." not in cookie or len(cookie) > 1024:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(sid=str(data["s"]), csrf=str(data["c"]), authed=bool(data["a"]),
                              issued=float(data["t"]), fingerprint=str(data["p"]))
        except (ValueError, KeyError, TypeError):
            return None
        if time.time() - session.issued > SESSION_SECONDS or session.fingerprint != self.fingerprint:
            return None
        return session

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())


def limit_key(client: str) -> str:
    """What the login limit counts by: the address itself, or for IPv6 its /64."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class LoginLimiter:
    """At most ``per_client`` failed logins per client (``limit_key``) per ``window`` seconds; once
    ``overall`` have failed in that window, a client that has failed once may not try again until
    it ends, while a client with no failure still may."""

    def __init__(self, per_client: int = 5, overall: int = 50, window: float = 900.0):
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self._lock = threading.Lock()
        self._by_client: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def _trim(self, stamps: deque[float], now: float) -> None:
        while stamps and now - stamps[0] > self.window:
            stamps.popleft()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        now = time.monotonic()
        client = limit_key(client)
        with self._lock:
            mine = self._by_client.get(client, deque())
            self._trim(mine, now)
            self._trim(self._all, now)
            waits = []
            if len(mine) >= self.per_client:
                waits.append(self.window - (now - mine[0]))
            # the overall limit holds back only clients that have failed themselves: a flood of wrong
            # guesses from many addresses must not lock the owner out of their own page
            if mine and len(self._all) >= self.overall:
                waits.append(self.window - (now - self._all[0]))
            return max(waits, default=0.0)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        client = limit_key(client)
        with self._lock:
            self._by_client.setdefault(client, deque()).append(now)
            self._all.append(now)
            if len(self._by_client) > 10_000:  # bounded memory under a spray of addresses
                for key in list(self._by_client)[:5_000]:
                    self._by_client.pop(key, None)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._by_client.pop(limit_key(client), None)


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())
