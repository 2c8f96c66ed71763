"""What the coordinator and `hushdrop worker` share: the Celery app, the task, the broker keys.

Scale-out (docs/scale-out.md) runs the chain on `hushdrop worker` processes, on this machine
or others, through a Redis broker. One Celery task carries one run of one job: its one
argument is the protocol's :class:`~pipeline.watch.protocol.RunJob` as plain data (job id,
attempt, content hash, profile and its options, language, the coordinator's time limits, and
where in the shared spool the claimed original is) — never audio, never a transcript. The
worker answers with the protocol's ``Finished`` (the transcript document) or ``Failed``, as
the task's JSON result. The coordinator alone writes the ledger,
the outbox and the spool, exactly as with the local pool.

Besides Celery's own keys the broker holds three kinds of short-lived keys:

``hushdrop:task:<task id>``
    set by the coordinator while it still wants that task run. A worker that receives a task
    whose key is gone (the coordinator gave up on it, or a stale redelivery) does nothing.
``hushdrop:lease:<task id>``
    the running worker's lease: its host, pid and progress, renewed every ``lease_seconds / 4``
    with an expiry of ``lease_seconds``. Taken with SET NX, so a second delivery of the same
    task while the first runs does nothing. When it runs out the coordinator knows the worker
    is gone and runs the job again.
``hushdrop:worker:<name>``
    each worker's presence (host, queues, its job, its model), for `hushdrop status` and so
    that the coordinator sends a queue only as many jobs as it has idle workers.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from hushdrop.pipeline.errors import ConfigError

TASK_NAME = "hushdrop.run_job"
TOKEN_KEY = "hushdrop:task:{}"
LEASE_KEY = "hushdrop:lease:{}"
WORKER_KEY = "hushdrop:worker:{}"
WORKER_PATTERN = "hushdrop:worker:*"
TOKEN_LIFETIME_S = 30 * 24 * 3600  # a safety net only: the coordinator deletes each token it sets


def broker_url(settings) -> str:
    """HUSHDROP_BROKER_URL, else config.yaml's ``broker_url`` (the environment keeps the password out of the file)."""
    url = os.environ.get("HUSHDROP_BROKER_URL") or settings.broker_url
    if not url:
        raise ConfigError(str(settings.source), [
            "executor: celery needs a broker: set broker_url in config.yaml or HUSHDROP_BROKER_URL, "
            "e.g. redis://:<password>@nas.local:6379/0 (docs/scale-out.md)"
        ])
    if urlsplit(url).scheme not in ("redis", "rediss"):
        raise ConfigError(str(settings.source), [f"broker_url must be a redis:// or rediss:// URL (docs/scale-out.md), not {redact(url)}"])
    return url


def redact(url: str) -> str:
    """The URL with its password replaced, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def make_app(url: str, lease_seconds: float):
    """The Celery app both sides use, with the settings docs/scale-out.md explains."""
    try:
        from celery import Celery
    except ImportError:
        raise ConfigError("executor: celery", [
            "Celery is not installed here: run `make install-scaleout` (or pip install -e \".[scaleout]\")"
        ]) from None

    app = Celery("hushdrop", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        # JSON only: a pickled message could run code in every worker
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Acknowledged as the task starts. A killed worker's job is therefore not redelivered by
        # the broker; the coordinator's lease notices within lease_seconds and runs it again.
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        # Only a message a dead worker had reserved but not started comes back through this;
        # its token is gone by then, so it does nothing.
        broker_transport_options={"visibility_timeout": 3600},
        result_expires=7 * 24 * 3600,  # a coordinator that is down for days still finds its results
        task_default_queue="hushdrop",
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        broker_heartbeat=0,
        redis_socket_timeout=max(10.0, lease_seconds),
        redis_socket_connect_timeout=10.0,
        redis_retry_on_timeout=True,
    )
    return app


def redis_client(url: str):
    """A plain Redis client for hushdrop's own keys (leases, tokens, presence)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10, health_check_interval=30)


def host_name() -> str:
    return socket.gethostname()


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class Beat:
    """A daemon thread that calls ``tick`` every ``interval`` seconds until stopped.

    A tick that fails (the broker restarting, the network gone) is logged once when it starts
    failing and once when it works again; the thread keeps going, so a lease or presence
    comes back by itself when the broker does.
    """

    def __init__(self, name: str, interval: float, tick: Callable[[], None]):
        self.name = name
        self.interval = interval
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Beat":
        self._thread.start()
        return self

    def _run(self) -> None:
        from hushdrop.pipeline.logs import log

        failing = False
        while not self._stop.is_set():
            try:
                self._tick()
                if failing:
                    log().warning("%s: the broker answers again", self.name)
                failing = False
            except Exception as exc:  # noqa: BLE001 - the broker is down or restarting: keep trying
                if not failing:
                    log().warning("%s: cannot reach the broker (%s); trying every %.0f s", self.name, exc, self.interval)
                failing = True
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + 15)
