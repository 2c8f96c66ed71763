"""The Celery backend of the executor: the chain runs on `hushdrop worker` processes.

The coordinator (this process) keeps everything else exactly as with the local pool:
the watcher, intake, the ledger, outputs, shredding, retries and recovery, and the one
dispatch loop (``pipeline.watch.executor``). This backend only moves
:mod:`pipeline.watch.protocol` messages through the broker: the task's one argument is the
``RunJob`` as plain data (``protocol.to_dict``), its result a ``Finished`` or ``Failed``
the same way. Every decision is :mod:`pipeline.watch.dispatch`'s, as for the local pool.

A job run is one Celery task (``pipeline.watch.remote``). The ledger row of a running job
names its task (``worker = "celery:<task id>"``), so a coordinator that restarts — even
after kill -9 — adopts the tasks still out there: it commits their results when they come,
or runs the job again when nobody holds its lease any more. What it reports per running job:

- a result (``Finished``/``Failed``) in the result backend → that answer;
- the worker's lease is renewed → a ``Progress`` with the stage and duration the lease holds;
- the lease ran out → ``Lost``: the worker was killed or lost its machine or network;
- the run went past its time limit → the worker stops it itself and answers ``Failed``
  naming the stage; should no answer come ``lease_seconds`` after the limit
  (``limit_grace_s``), the loop fails the attempt with the same words and the task's token
  goes, so a later delivery does nothing;
- never picked up (the broker lost the message, or no worker of that queue is left) →
  sent again a few times, then ``NotTaken``.

Jobs are sent only to idle workers of the profile's queue, as the local pool does, so a
message never waits long in Redis and a lost one is noticed quickly.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.watch.executor import Event, Lost, NotTaken, SendFailed
from hushdrop.pipeline.watch.ledger import JobRow
from hushdrop.pipeline.watch.protocol import OPENING_STAGE, Failed, Fault, Progress, RunJob, from_dict, to_dict
from hushdrop.pipeline.watch.remote import (
    LEASE_KEY, TASK_NAME, TOKEN_KEY, TOKEN_LIFETIME_S, WORKER_PATTERN, broker_url, make_app, redact, redis_client,
)

__all__ = ["CeleryBackend", "OWNER_PREFIX", "owns"]

OWNER_PREFIX = "celery:"
RESENDS = 3  # a message no worker took is sent again this often before the job goes back to the queue


@dataclass
class RemoteRun:
    """One job out on a remote worker, as the backend tracks it."""

    job_id: int
    attempt: int
    task_id: str
    queue: str
    sent_at: float  # monotonic; when it was (last) sent or adopted
    message: RunJob | None = None  # what was sent; None for a run adopted after a restart
    leased_at: float | None = None  # monotonic; when a lease was last seen
    host: str | None = None
    resent: int = 0


def owns(row_worker: str | None) -> str | None:
    """The task id of a ledger row's ``worker`` written by this backend, else None."""
    if row_worker and row_worker.startswith(OWNER_PREFIX):
        return row_worker[len(OWNER_PREFIX):]
    return None


class CeleryBackend:
    """The scale-out backend (``executor: celery``); see the module docstring."""

    own_config = True  # a remote worker has its own config: the task carries the profile and time limits

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = broker_url(settings)
        self.lease_s = settings.lease_seconds
        self.limit_grace_s = self.lease_s  # a worker stops its own run at the limit and answers within a lease
        self.app = make_app(self.url, self.lease_s)
        self.redis = redis_client(self.url)
        self.fatal: str | None = None
        self._runs: dict[int, RemoteRun] = {}
        self._workers: list[dict[str, Any]] = []  # the presence of every remote worker, last poll
        self._broker_id: str | None = None  # Redis's run_id: it changes when the server restarts
        self._broker_down_since: float | None = None  # monotonic; None while the broker answers
        self._broker_reminded = 0.0

    @property
    def pickup_timeout(self) -> float:
        return max(30.0, 3 * self.lease_s)

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        try:
            self._broker_id = self.redis.info("server").get("run_id")
        except Exception as exc:  # noqa: BLE001 - the loop keeps trying, within a bound
            self._broker_unreachable(exc)
        log().info("executor: celery via %s (lease %.0f s)", redact(self.url), self.lease_s)

    def adopt(self, row: JobRow) -> RemoteRun | None:
        """A row naming one of this backend's tasks is still out on a remote worker: wait for its
        result or its lease."""
        task_id = owns(row.worker)
        if task_id is None:
            return None
        profile = self.settings.profiles.get(row.profile)
        run = RemoteRun(row.id, row.attempts, task_id, profile.queue if profile else "hushdrop", sent_at=time.monotonic())
        self._runs[row.id] = run
        job_log(row.id).info("still out on a remote worker (task %s); waiting for its result or its lease", task_id)
        return run

    def drain(self) -> None:
        pass  # remote workers are not ours to stop

    def close(self, running: dict[int, Any]) -> list[int]:
        """Leave running jobs on their workers: the next start adopts them (their rows name their tasks)."""
        if running:
            log().info("%d job(s) still run on remote workers; the next start collects their results", len(running))
        try:
            self.redis.close()
        except Exception:  # noqa: BLE001
            pass
        return []

    def workers_info(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {**w, "heartbeat_age_s": round(now - w.get("t", now), 1), "ready": True, "remote": True}
            for w in self._workers
        ]

    def describe(self, run: RemoteRun) -> str:
        return f"{run.host or 'a remote worker'} (task {run.task_id})"

    # -- the broker's health -------------------------------------------------------------

    def trouble(self, exc: Exception) -> bool:
        """A broker error: jobs wait while it is away (see :meth:`_broker_unreachable`)."""
        import kombu.exceptions
        import redis

        if not isinstance(exc, (redis.RedisError, kombu.exceptions.OperationalError, ConnectionError, TimeoutError)):
            return False
        self._broker_unreachable(exc)
        return True

    def _broker_unreachable(self, exc: Exception) -> None:
        """Jobs wait while the broker is away, loudly (again every 10 min), and not forever: after
        ``environment_retry_hours`` the backend sets ``fatal`` and `watch` stops with the reason."""
        now = time.monotonic()
        if self._broker_down_since is None:
            self._broker_down_since = self._broker_reminded = now
            log().error("cannot reach the broker at %s (%s); jobs wait, trying again", redact(self.url), exc)
            return
        down = now - self._broker_down_since
        if down > self.settings.environment_retry_hours * 3600:
            self.fatal = (
                f"the broker at {redact(self.url)} has not answered for {down / 3600:.1f} h ({exc}); start Redis "
                f"(or fix broker_url / HUSHDROP_BROKER_URL) and start `hushdrop watch` again"
            )
        elif now - self._broker_reminded > 600:
            self._broker_reminded = now
            log().error("the broker at %s still does not answer after %.0f min (%s)", redact(self.url), down / 60, exc)

    def _check_broker(self) -> None:
        """After an outage, give leases a fresh period; after a restart, resend what may be lost."""
        run_id = self.redis.info("server").get("run_id")
        now = time.monotonic()
        if self._broker_down_since is not None:
            for run in self._runs.values():
                if run.leased_at is not None:
                    run.leased_at = now  # workers renew as soon as they reconnect
            log().warning("the broker at %s answers again", redact(self.url))
            self._broker_down_since = None
        if run_id == self._broker_id:
            return
        if self._broker_id is not None:
            log().warning("the broker restarted: its queue and results may be gone; tasks not yet taken are sent again")
            for run in self._runs.values():
                self.redis.set(TOKEN_KEY.format(run.task_id), "1", ex=TOKEN_LIFETIME_S)
                if run.leased_at is None:
                    self._publish(run)
                else:
                    run.leased_at = now
        self._broker_id = run_id

    # -- collecting ----------------------------------------------------------------------

    def wait(self, wake: Connection, timeout: float) -> None:
        wait([wake], timeout=timeout)

    def collect(self) -> list[Event]:
        self._check_broker()
        self._poll_workers()
        events: list[Event] = self._answers()
        answered = {event.job_id for event in events}
        events += self._leases(skip=answered)
        return events

    def _poll_workers(self) -> None:
        keys = list(self.redis.scan_iter(match=WORKER_PATTERN, count=100))
        values = self.redis.mget(keys) if keys else []
        workers = []
        for raw in values:
            if raw:
                try:
                    workers.append(json_loads(raw))
                except ValueError:
                    continue
        self._workers = sorted(workers, key=lambda w: w.get("name", ""))

    def _answers(self) -> list[Event]:
        events: list[Event] = []
        for run in list(self._runs.values()):
            meta = self.app.backend.get_task_meta(run.task_id)
            status = meta.get("status")
            if status == "SUCCESS":
                events.append(from_dict(meta["result"]))
            elif status == "FAILURE":  # the task itself raised: a bug or a broken worker install
                events.append(Failed(
                    run.job_id, "worker", f"the remote task failed: {meta.get('result')!r}", Fault.TRANSIENT, run.attempt,
                ))
        return events

    def _leases(self, skip: set[int]) -> list[Event]:
        runs = [run for run in self._runs.values() if run.job_id not in skip]
        if not runs:
            return []
        leases = self.redis.mget([LEASE_KEY.format(run.task_id) for run in runs])
        now = time.monotonic()
        events: list[Event] = []
        for run, raw in zip(runs, leases):
            if raw:
                lease = json_loads(raw)
                run.leased_at = now
                run.host = lease.get("host")
                duration = lease.get("duration_s")
                events.append(Progress(
                    run.job_id, lease.get("stage") or OPENING_STAGE, float(lease.get("fraction") or 0.0),
                    int(lease.get("stage_index") or 0), int(lease.get("stage_count") or 1),
                    float(duration) if isinstance(duration, (int, float)) else None,
                ))
            elif run.leased_at is not None:
                if now - run.leased_at > self.lease_s and not self._answered(run):
                    events.append(Lost(run.job_id, (
                        f"the worker on {run.host or 'a remote machine'} stopped renewing its lease for "
                        f"{self.lease_s:.0f} s: it was killed, crashed, or lost its machine or network"
                    )))
            elif now - run.sent_at > self.pickup_timeout:
                if run.message is not None and run.resent < RESENDS:
                    job_log(run.job_id).warning(
                        "no worker of queue %r took it in %.0f s; sending it again", run.queue, now - run.sent_at
                    )
                    run.resent += 1
                    self._publish(run)
                else:
                    job_log(run.job_id).error(
                        "no worker of queue %r took it; it goes back to the queue (is a `hushdrop worker` for that "
                        "queue running and using the same broker?)", run.queue,
                    )
                    events.append(NotTaken(run.job_id))
        return events

    def _answered(self, run: RemoteRun) -> bool:
        return self.app.backend.get_task_meta(run.task_id).get("status") in ("SUCCESS", "FAILURE")

    def stop_run(self, run: RemoteRun, reason: str) -> str | None:
        """A remote run past its time limit with no answer from its worker: the loop fails the
        attempt and :meth:`forget` withdraws the token, so no delivery of it runs again. Celery's
        revoke cannot stop it: a solo-pool worker reads no control message while a task runs."""
        if self._answered(run):
            return None  # it answered just now: the next round collects it
        return f"{reason}; the worker on {run.host or 'a remote machine'} did not stop it by itself"

    def forget(self, run: RemoteRun) -> None:
        self._runs.pop(run.job_id, None)
        self.redis.delete(TOKEN_KEY.format(run.task_id))
        self.app.backend.forget(run.task_id)

    # -- sending -------------------------------------------------------------------------

    def capacity(self) -> dict[str | None, int]:
        """Per queue: idle workers serving it, less the jobs sent to it that no worker took yet."""
        slots: dict[str | None, int] = {}
        for worker in self._workers:
            if worker.get("job") is None:
                for queue in worker.get("queues", []):
                    slots[queue] = slots.get(queue, 0) + 1
        for run in self._runs.values():
            if run.leased_at is None:
                slots[run.queue] = slots.get(run.queue, 0) - 1
        return slots

    def assign(self, job_id: int, queue: str) -> tuple[RemoteRun, str]:
        task_id = f"hushdrop-{job_id}-{uuid.uuid4().hex[:12]}"
        return RemoteRun(job_id, 0, task_id, queue, time.monotonic()), OWNER_PREFIX + task_id

    def send(self, run: RemoteRun, message: RunJob) -> bool:
        run.attempt, run.message = message.attempt, message
        try:
            self.redis.set(TOKEN_KEY.format(run.task_id), "1", ex=TOKEN_LIFETIME_S)
            self._publish(run)
        except Exception as exc:
            if not self.trouble(exc):
                raise
            raise SendFailed(str(exc)) from exc
        self._runs[run.job_id] = run
        job_log(run.job_id).info("sent to queue %r as task %s (attempt %d)", run.queue, run.task_id, run.attempt)
        return False  # its clock starts with the worker's first lease

    def _publish(self, run: RemoteRun) -> None:
        if run.message is None:
            return  # adopted after a restart: what was sent is not known here; the lease decides
        self.app.send_task(TASK_NAME, args=[to_dict(run.message)], task_id=run.task_id, queue=run.queue)
        run.sent_at = time.monotonic()


def json_loads(raw: bytes | str) -> dict[str, Any]:
    import json

    return json.loads(raw)
