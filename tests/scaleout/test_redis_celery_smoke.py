"""The ground the scale-out executor stands on: a real Redis-compatible server, a real Celery worker.

Each test starts its own password-protected server (tests/redis_server.py) and a real
``celery worker`` subprocess (solo pool, hushdrop's settings: JSON only, early acks, prefetch 1) running the tiny
app of tests/scaleout/smoke_tasks.py, and checks one thing the coordinator will rely on:

- a task round-trips through broker and result backend;
- a pickled message is refused by the worker and its task never runs;
- a restart of Redis while the client waits for a running job: the worker stores the result
  and the client's subscription reconnects and receives it, and new jobs still go through.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from celery.exceptions import TimeoutError as CeleryTimeout

from tests.harness import wait_for
from tests.redis_server import RedisServer, die_with_parent
from tests.scaleout.smoke_tasks import ENV_URL, RAN_KEY, make_app

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(180)


class Worker:
    """A real ``celery worker`` subprocess on the smoke app, in its own process group."""

    def __init__(self, server: RedisServer, logdir: Path) -> None:
        self.server = server
        self.name = f"smoke-{uuid.uuid4().hex[:8]}@localhost"
        self.log = logdir / "worker.log"
        self.proc: subprocess.Popen | None = None

    def start(self, app, timeout: float = 60.0) -> None:
        env = {**os.environ, ENV_URL: self.server.url, "PYTHONPATH": str(REPO)}
        cmd = [
            sys.executable, "-m", "celery", "-A", "tests.scaleout.smoke_tasks", "worker",
            "--pool=solo", "--concurrency=1", "--loglevel=INFO", f"--hostname={self.name}",
            "--without-gossip", "--without-mingle",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: teardown kills everything it started
                preexec_fn=die_with_parent,  # and it dies with this process, even after a SIGKILL
            )

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            return bool(app.control.ping(destination=[self.name], timeout=1.0))

        wait_for(answers, timeout, f"worker {self.name} to answer a ping", interval=0.2)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM) first, SIGKILL to the whole group if it does not exit in time."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group
            except ProcessLookupError:
                pass
            proc.wait(timeout=timeout)


@pytest.fixture
def app(redis_server):
    app = make_app(redis_server.url)
    yield app
    # An AsyncResult unsubscribes from its result channel when it is garbage-collected. One still
    # referenced after the test (a log record's traceback kept by pytest, say) would do that after
    # the server is gone, and retry for 20 s. Collect what can be collected while the server runs,
    # then close the subscription and forget its channels, so a later __del__ has nothing to do.
    gc.collect()
    consumer = app.backend.result_consumer
    consumer.stop()
    consumer.subscribed_to.clear()
    app.close()


@pytest.fixture
def worker(redis_server, app, tmp_path):
    worker = Worker(redis_server, tmp_path)
    try:
        worker.start(app)
        yield worker
    finally:
        pid = worker.proc.pid if worker.proc is not None else None
        worker.stop()
        if pid is not None:  # nothing of the worker outlives the test
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)


def ran(server: RedisServer) -> list[str]:
    return [tag.decode() for tag in server.client().lrange(RAN_KEY, 0, -1)]


def test_a_task_round_trips_through_redis(redis_server, app, worker):
    result = app.send_task("hushdrop_smoke.echo", args=[{"job": "j1", "attempt": 1, "text": "grüße, 你好"}],
                           kwargs={"tag": "j1"})
    value = result.get(timeout=30)
    assert value["echo"] == {"job": "j1", "attempt": 1, "text": "grüße, 你好"}
    assert value["pid"] == worker.proc.pid  # solo pool: the task ran in the worker process itself
    assert result.state == "SUCCESS"
    assert ran(redis_server) == ["j1"]
    # the message went as JSON and was acknowledged: the queue and the unacked set are empty
    client = redis_server.client()
    wait_for(lambda: client.llen("celery") == 0 and client.hlen("unacked") == 0, 10, "the message to be acknowledged")


def test_a_pickled_message_is_refused_and_never_runs(redis_server, app, worker):
    refused = app.send_task("hushdrop_smoke.echo", args=["pickled"], kwargs={"tag": "pickled"}, serializer="pickle")
    with pytest.raises(CeleryTimeout):
        refused.get(timeout=5)
    wait_for(lambda: "untrusted content" in worker.log_text() or "ContentDisallowed" in worker.log_text(),
             15, "the worker to log the refused message")
    # the worker goes on: a JSON task sent afterwards runs, and the pickled one never ran
    assert app.send_task("hushdrop_smoke.echo", args=["json"], kwargs={"tag": "json"}).get(timeout=30)["echo"] == "json"
    assert ran(redis_server) == ["json"]
    assert refused.state == "PENDING"


def test_the_client_and_the_worker_reconnect_after_redis_restarts_mid_job(redis_server, app, worker):
    result = app.send_task("hushdrop_smoke.sleep_echo", args=[4.0, "survived"], kwargs={"tag": "long"})
    wait_for(lambda: result.state == "STARTED", 20, "the worker to start the job")
    # The client waits in another thread; this one restarts the server (it must be the main
    # thread: the server dies with the thread that started it, see tests/redis_server.py).
    outcome: dict = {}

    def wait_for_result():
        try:
            outcome["value"] = result.get(timeout=60)
            outcome["at"] = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 (reported to the test below)
            outcome["error"] = exc

    waiter = threading.Thread(target=wait_for_result, daemon=True)
    waiter.start()
    time.sleep(0.5)  # the client is inside result.get() by now
    redis_server.restart(down_for=0.5)
    restarted_at = time.monotonic()
    waiter.join(timeout=90)
    assert not waiter.is_alive(), "result.get() did not return"
    assert "error" not in outcome, outcome.get("error")
    assert redis_server.starts == 2 and outcome["at"] > restarted_at
    value = outcome["value"]
    assert value["echo"] == "survived"  # stored by the worker after the restart, received by the client
    assert ran(redis_server) == ["long"]  # the list was emptied by the restart: the job finished after it
    # the worker reconnected to the broker: a new job goes through
    assert app.send_task("hushdrop_smoke.echo", args=["after"], kwargs={"tag": "after"}).get(timeout=60)["echo"] == "after"
    assert worker.proc.poll() is None
