"""Fixtures for the notification tests: a real HTTP receiver on loopback that Apprise's
``json://`` URL reaches, and real ``hushdrop watch`` runs (tests/harness.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.conftest import watch_run  # noqa: F401 - the real `hushdrop watch` runs, as there


@dataclass
class Received:
    at: float  # time.time() when it arrived
    path: str
    status: int  # what the receiver answered
    payload: dict[str, Any]

    @property
    def title(self) -> str:
        return self.payload.get("title", "")

    @property
    def message(self) -> str:
        return self.payload.get("message", "")


@dataclass
class Receiver:
    """Counts every request; answers 500 to the first ``failures`` of them (``-1``: to all)."""

    port: int = 0
    failures: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def delivered(self, path: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.status == 200 and (path is None or r.path == f"/{path}")]

    def tries(self) -> int:
        with self.lock:
            return len(self.requests)

    def titled(self, prefix: str) -> list[Received]:
        return [r for r in self.delivered() if r.title.startswith(prefix)]


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                failing = receiver.failures < 0 or len(receiver.requests) < receiver.failures
                status = 500 if failing else 200
                receiver.requests.append(Received(time.time(), self.path, status, json.loads(body or b"{}")))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver():
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: a receiver that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
