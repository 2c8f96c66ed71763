"""Fixtures for the scale-out tests: a real Redis-compatible server per test."""

from __future__ import annotations

import pytest

from tests.redis_server import RedisServer


@pytest.fixture
def redis_server():
    """A fresh password-protected server on 127.0.0.1 and a free port (tests/redis_server.py).

    Stopped and its temp folder removed after the test; ``redis_server.restart()`` keeps the port.
    """
    with RedisServer() as server:
        yield server
