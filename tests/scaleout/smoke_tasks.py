"""A tiny Celery app for tests/scaleout/test_redis_celery_smoke.py, with the broker settings the
scale-out executor uses (``pipeline.watch.remote.make_app``; docs/scale-out.md, "Broker settings").

The worker subprocess loads it with ``celery -A tests.scaleout.smoke_tasks worker``; the broker
URL (password included) comes from ``$HUSHDROP_TEST_BROKER_URL``, never from the command line,
so it stays out of ``ps``. The test process builds its own app with ``make_app(url)`` and sends
tasks by name, so the two never share a connection pool.
"""

from __future__ import annotations

import os
import time

from celery import Celery

ENV_URL = "HUSHDROP_TEST_BROKER_URL"
RAN_KEY = "hushdrop-smoke:ran"  # a Redis list: one entry per task body actually executed


def make_app(url: str | None) -> Celery:
    """hushdrop's own Celery settings (``pipeline.watch.remote.make_app``) on a test app."""
    from hushdrop.pipeline.watch.remote import make_app as hushdrop_app

    if not url:
        return Celery("hushdrop_smoke", set_as_current=False)
    app = hushdrop_app(url, lease_seconds=10)
    app.conf.task_track_started = True
    return app


app = make_app(os.environ.get(ENV_URL))


def _record(tag: str) -> None:
    client = app.backend.client  # the result backend's redis client (same server)
    client.rpush(RAN_KEY, tag)


@app.task(name="hushdrop_smoke.echo")
def echo(value, tag: str = ""):
    """Returns what it was given, and notes that it ran."""
    _record(tag or "echo")
    return {"echo": value, "pid": os.getpid()}


@app.task(name="hushdrop_smoke.sleep_echo")
def sleep_echo(seconds: float, value, tag: str = ""):
    """As ``echo``, after ``seconds``: a job still running when the test restarts Redis."""
    time.sleep(seconds)
    _record(tag or "sleep_echo")
    return {"echo": value, "pid": os.getpid()}
