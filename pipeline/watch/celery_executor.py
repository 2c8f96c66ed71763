"""The Celery backend of the executor: the chain runs on `hushdrop worker` processes.

The coordinator (this process) keeps everything else exactly as with the local pool:
the watcher, intake, the ledger, outputs, shredding, retries and recovery. This class
only moves :mod:`pipeline.watch.protocol` messages through the broker and leaves every
decision to :mod:`pipeline.watch.dispatch`, so a job's fate is decided by the same code
whichever backend ran it.

A job run is one Celery task (``pipeline.watch.remote``). The ledger row of a running job
names its task (``worker = "celery:<task id>"``), so a coordinator that restarts — even
after kill -9 — adopts the tasks still out there: it commits their results when they come,
or runs the job again when nobody holds its lease any more. Per running job:

- a result (``Finished``/``Failed``) in the result backend → accepted if it is for the
  job's current attempt (the first answer per (job, attempt) wins), then forgotten;
- the worker's lease is renewed → progress for `hushdrop status`;
- the lease ran out → the worker was killed or lost: a transient failure, retried by the
  usual rules (``max_attempts``, backoff), exactly like a local worker that died;
- the run went past its time limit (``time_limits``, judged by ``dispatch.overrun`` from the
  stage and duration in the lease) → the worker stops it itself and answers ``Failed``
  naming the stage; should no answer come ``lease_seconds`` after the limit, the attempt is
  failed here with the same words and a later answer for it is dropped;
- never picked up (the broker lost the message, or no worker of that queue is left) →
  sent again a few times, then given back to the queue as an interruption.

Jobs are sent only to idle workers of the profile's queue, as the local pool does, so a
message never waits long in Redis and a lost one is noticed quickly.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hushdrop.pipeline.config import Settings, profile_document
from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.watch.dispatch import (
    RunClock, SpoolWatch, accept_failure, accept_result, overrun, prepare_for_run, run_message,
)
from hushdrop.pipeline.watch.executor import wait_for_running_jobs
from hushdrop.pipeline.watch.finish import fail_job, resolve_interrupted
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.watch.protocol import Failed, Fault, Finished, from_dict, to_dict
from hushdrop.pipeline.watch.remote import (
    LEASE_KEY, TASK_NAME, TOKEN_KEY, TOKEN_LIFETIME_S, WORKER_PATTERN, broker_url, make_app, redact, redis_client,
)

OWNER_PREFIX = "celery:"
RESENDS = 3  # a message no worker took is sent again this often before the job goes back to the queue
LOOP_SECONDS = 0.5


@dataclass
class RemoteRun:
    """One job out on a remote worker, as the coordinator tracks it."""

    job_id: int
    attempt: int
    task_id: str
    queue: str
    sent_at: float  # monotonic; when it was (last) sent or adopted
    payload: dict[str, Any] | None = None  # what was sent; None for a run adopted after a restart
    leased_at: float | None = None  # monotonic; when a lease was last seen
    host: str | None = None
    resent: int = 0
    clock: RunClock | None = None  # the run's times from its first lease on, for its time limits


def owns(row_worker: str | None) -> str | None:
    """The task id of a ledger row's ``worker`` written by this backend, else None."""
    if row_worker and row_worker.startswith(OWNER_PREFIX):
        return row_worker[len(OWNER_PREFIX):]
    return None


class CeleryExecutor:
    """The scale-out executor (``executor: celery``); see the module docstring."""

    def __init__(self, settings: Settings, ledger: Ledger):
        self.settings = settings
        self.ledger = ledger
        self.url = broker_url(settings)
        self.lease_s = settings.lease_seconds
        self.app = make_app(self.url, self.lease_s)
        self.redis = redis_client(self.url)
        self.fatal: str | None = None
        self._runs: dict[int, RemoteRun] = {}
        self._spool = SpoolWatch()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: list[dict[str, Any]] = []  # the presence of every remote worker, last poll
        self._broker_id: str | None = None  # Redis's run_id: it changes when the server restarts
        self._broker_down_since: float | None = None  # monotonic; None while the broker answers
        self._broker_reminded = 0.0

    @property
    def pickup_timeout(self) -> float:
        return max(30.0, 3 * self.lease_s)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._broker_id = self.redis.info("server").get("run_id")
        except Exception as exc:  # noqa: BLE001 - the loop keeps trying, within a bound
            self._broker_unreachable(exc)
        with self._lock:
            self._adopt_running()
        self._thread = threading.Thread(target=self._loop, name="celery-executor", daemon=True)
        self._thread.start()
        log().info("executor: celery via %s (lease %.0f s)", redact(self.url), self.lease_s)

    def wake(self) -> None:
        self._wake.set()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._runs)

    def workers_info(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            return [
                {**w, "heartbeat_age_s": round(now - w.get("t", now), 1), "ready": True, "remote": True}
                for w in self._workers
            ]

    def stop(self, grace: float, hurry: threading.Event | None = None) -> None:
        """Wait up to ``grace`` for running jobs; the rest keep running on their workers and the
        next start adopts them (their rows name their tasks)."""
        self._draining.set()
        wait_for_running_jobs(self, grace, hurry)
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(30)
        left = self.in_flight()
        if left:
            log().info("%d job(s) still run on remote workers; the next start collects their results", left)
        try:
            self.redis.close()
        except Exception:  # noqa: BLE001
            pass

    def recover_stale(self) -> int:
        """Processing rows nobody tracks: adopt this backend's tasks, run the others again."""
        released = 0
        with self._lock:
            for row in self.ledger.in_state(State.PROCESSING):
                if row.id in self._runs:
                    continue
                if owns(row.worker):
                    self._adopt(row)
                    continue
                job_log(row.id).warning("stale claim (no worker holds it)")
                resolve_interrupted(self.settings, self.ledger, row, count_attempt=True)
                released += 1
        if released:
            self.wake()
        return released

    def _adopt_running(self) -> None:
        for row in self.ledger.in_state(State.PROCESSING):
            if owns(row.worker):
                self._adopt(row)

    def _adopt(self, row) -> None:
        task_id = owns(row.worker)
        profile = self.settings.profiles.get(row.profile)
        queue = profile.queue if profile else "hushdrop"
        self._runs[row.id] = RemoteRun(row.id, row.attempts, task_id, queue, sent_at=time.monotonic())
        job_log(row.id).info("still out on a remote worker (task %s); waiting for its result or its lease", task_id)

    # -- the loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(LOOP_SECONDS)
            self._wake.clear()
            try:
                with self._lock:
                    self._check_broker()
                    self._poll_workers()
                    self._collect()
                    self._check_leases()
                    if not self._draining.is_set():
                        self._dispatch()
                if self._broker_down_since is not None:
                    log().warning("the broker at %s answers again", redact(self.url))
                    self._broker_down_since = None
            except Exception as exc:  # noqa: BLE001 - the broker is down: nothing moves, nothing is lost
                if self._is_broker_error(exc):
                    self._broker_unreachable(exc)
                    self._stop.wait(2.0)
                else:
                    log().exception("celery executor: unexpected error; continuing")
                    self._stop.wait(1.0)

    def _broker_unreachable(self, exc: Exception) -> None:
        """Jobs wait while the broker is away, loudly (again every 10 min), and not forever: after
        ``environment_retry_hours`` the executor sets ``fatal`` and `watch` stops with the reason."""
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


    @staticmethod
    def _is_broker_error(exc: Exception) -> bool:
        import kombu.exceptions
        import redis

        return isinstance(exc, (redis.RedisError, kombu.exceptions.OperationalError, ConnectionError, TimeoutError))

    def _check_broker(self) -> None:
        """After an outage, give leases a fresh period; after a restart, resend what may be lost."""
        run_id = self.redis.info("server").get("run_id")
        now = time.monotonic()
        if self._broker_down_since is not None:
            for run in self._runs.values():
                if run.leased_at is not None:
                    run.leased_at = now  # workers renew as soon as they reconnect
        if run_id == self._broker_id:
            return
        if self._broker_id is not None:
            log().warning("the broker restarted: its queue and results may be gone; tasks not yet taken are sent again")
            for run in self._runs.values():
                self.redis.set(TOKEN_KEY.format(run.task_id), "1", ex=TOKEN_LIFETIME_S)
                if run.leased_at is None:
                    self._send(run)
                else:
                    run.leased_at = now
        self._broker_id = run_id

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

    def _collect(self) -> None:
        for run in list(self._runs.values()):
            meta = self.app.backend.get_task_meta(run.task_id)
            status = meta.get("status")
            if status == "SUCCESS":
                answer = from_dict(meta["result"])
            elif status == "FAILURE":  # the task itself raised: a bug or a broken worker install
                answer = Failed(run.job_id, "worker", f"the remote task failed: {meta.get('result')!r}", Fault.TRANSIENT, run.attempt)
            else:
                continue
            self._settle(run, answer)

    def _settle(self, run: RemoteRun, answer: Finished | Failed) -> None:
        host = run.host or "a remote worker"
        if isinstance(answer, Finished):
            job_log(run.job_id).info("transcript from %s (task %s)", host, run.task_id)
            row = accept_result(self.settings, self.ledger, answer)
        else:
            row = accept_failure(self.settings, self.ledger, answer)
        if row is None:
            job_log(run.job_id).info("dropped a stale answer for attempt %s from %s", answer.attempt, host)
        self._forget(run)

    def _forget(self, run: RemoteRun) -> None:
        self._runs.pop(run.job_id, None)
        self.redis.delete(TOKEN_KEY.format(run.task_id))
        self.app.backend.forget(run.task_id)
        self.wake()

    def _check_leases(self) -> None:
        runs = list(self._runs.values())
        if not runs:
            return
        leases = self.redis.mget([LEASE_KEY.format(run.task_id) for run in runs])
        now = time.monotonic()
        for run, raw in zip(runs, leases):
            if raw:
                lease = json_loads(raw)
                run.leased_at = now
                run.host = lease.get("host")
                duration = lease.get("duration_s")
                run.clock = (run.clock or RunClock.begin(now)).advance(
                    lease.get("stage"), float(duration) if isinstance(duration, (int, float)) else None, now,
                )
                if lease.get("stage"):
                    self.ledger.progress(run.job_id, lease["stage"], float(lease.get("fraction") or 0.0))
                # the worker stops its own run at the limit and answers; this is for a worker that does not
                reason = overrun(self.settings, run.clock, now - self.lease_s)
                if reason is not None:
                    self._overran(run, reason)
                continue
            if run.leased_at is not None:
                if now - run.leased_at > self.lease_s:
                    self._lost(run)
                continue
            if now - run.sent_at > self.pickup_timeout:
                self._not_taken(run)

    def _lost(self, run: RemoteRun) -> None:
        if self.app.backend.get_task_meta(run.task_id).get("status") in ("SUCCESS", "FAILURE"):
            return  # it answered just now: the next round collects it
        row = self.ledger.get(run.job_id)
        if row.state == State.PROCESSING and row.attempts == run.attempt:
            fail_job(
                self.settings, self.ledger, row, row.stage or "worker",
                f"the worker on {run.host or 'a remote machine'} stopped renewing its lease for {self.lease_s:.0f} s: "
                f"it was killed, crashed, or lost its machine or network", Fault.TRANSIENT,
            )
        self._forget(run)

    def _overran(self, run: RemoteRun, reason: str) -> None:
        """A remote run past its time limit with no answer from its worker: the attempt fails here,
        naming the stage, and the task's token goes, so no delivery of it runs again. Celery's
        revoke cannot stop it: a solo-pool worker reads no control message while a task runs."""
        if self.app.backend.get_task_meta(run.task_id).get("status") in ("SUCCESS", "FAILURE"):
            return  # it answered just now: the next round collects it
        accept_failure(self.settings, self.ledger, Failed(
            run.job_id, run.clock.stage,
            f"{reason}; the worker on {run.host or 'a remote machine'} did not stop it by itself", Fault.TRANSIENT, run.attempt,
        ))
        self._forget(run)

    def _not_taken(self, run: RemoteRun) -> None:
        if run.payload is not None and run.resent < RESENDS:
            job_log(run.job_id).warning(
                "no worker of queue %r took it in %.0f s; sending it again", run.queue, time.monotonic() - run.sent_at
            )
            run.resent += 1
            self._send(run)
            return
        row = self.ledger.get(run.job_id)
        if row.state == State.PROCESSING and row.attempts == run.attempt:
            job_log(run.job_id).error(
                "no worker of queue %r took it; it goes back to the queue (is a `hushdrop worker` for that queue running "
                "and using the same broker?)", run.queue,
            )
            resolve_interrupted(self.settings, self.ledger, row)
        self._forget(run)

    # -- dispatch ------------------------------------------------------------------------

    def _idle_slots(self) -> dict[str, int]:
        """Per queue: idle workers serving it, less the jobs sent to it that no worker took yet."""
        slots: dict[str, int] = {}
        for worker in self._workers:
            if worker.get("job") is None:
                for queue in worker.get("queues", []):
                    slots[queue] = slots.get(queue, 0) + 1
        for run in self._runs.values():
            if run.leased_at is None:
                slots[run.queue] = slots.get(run.queue, 0) - 1
        return slots

    def _dispatch(self) -> None:
        slots = self._idle_slots()
        if not any(n > 0 for n in slots.values()):
            return
        for row in self.ledger.runnable(limit=self.settings.queue_limit + len(self._workers)):
            profile = self.settings.profiles.get(row.profile)
            if profile is not None and slots.get(profile.queue, 0) <= 0:
                continue
            if self._spool.held(row.id):
                continue
            if not prepare_for_run(self.settings, self.ledger, row, self._spool):
                continue
            task_id = f"hushdrop-{row.id}-{uuid.uuid4().hex[:12]}"
            row = self.ledger.start(row.id, OWNER_PREFIX + task_id)
            message = run_message(row)
            payload = {
                "run": to_dict(message),
                "profile": profile_document(profile),
                "spool_relative": str(Path(row.spool_path).relative_to(self.settings.spool_dir)),
                "time_limits": self.settings.time_limits.model_dump(),
            }
            run = RemoteRun(row.id, row.attempts, task_id, profile.queue, time.monotonic(), payload)
            try:
                self.redis.set(TOKEN_KEY.format(task_id), "1", ex=TOKEN_LIFETIME_S)
                self._send(run)
            except Exception:
                self.ledger.release(row.id, count_attempt=False)
                raise
            self._runs[row.id] = run
            slots[profile.queue] -= 1
            job_log(row.id).info("sent to queue %r as task %s (attempt %d)", profile.queue, task_id, row.attempts)

    def _send(self, run: RemoteRun) -> None:
        if run.payload is None:
            return  # adopted after a restart: what was sent is not known here; the lease decides
        self.app.send_task(TASK_NAME, args=[run.payload], task_id=run.task_id, queue=run.queue)
        run.sent_at = time.monotonic()


def json_loads(raw: bytes | str) -> dict[str, Any]:
    import json

    return json.loads(raw)
