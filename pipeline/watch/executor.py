"""The executor: where jobs run. ``Executor`` is what the service needs of any backend;
``LocalExecutor`` is the embedded one, a pool of worker processes on this machine.

Each local worker is a separate process holding one ``Processor``
(``pipeline.watch.worker``): its chains (and the ASR model) are built once and reused for
every job it runs. A worker does the pure part only and answers with a message
(``pipeline.watch.protocol``); the coordinator alone writes the ledger, the outbox and the
spool (``pipeline.watch.dispatch``, ``pipeline.watch.finish``). So a worker that crashes,
hangs or is killed can never leave a partial output, and killing the watcher kills its
workers (``PR_SET_PDEATHSIG``) without any output being half-written by them.

The ledger is the queue. The dispatcher starts a claimed job only when a worker is
idle, so at most ``workers`` jobs are in flight; intake stops claiming when
``queue_limit`` jobs wait (backpressure), leaving further files in the inbox.

Every failure is bounded. A worker that dies before it is ready is started again
after an exponentially growing pause; after ``worker_start_attempts`` such deaths in
a row the executor sets ``fatal`` and `watch` stops with that message. A job whose
worker vanished is run again a bounded number of times (``max_attempts``). A run that
goes past its time limit (``time_limits``, judged by ``pipeline.watch.dispatch.overrun`` from
the worker's progress reports) has its worker killed, with whatever it started, and another
started in its place; the attempt counts, so a recording that always hangs ends in quarantine
with the stage named.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from hushdrop.pipeline.config import Settings, resolve_workers
from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.watch.dispatch import (
    MAX_CHANGES_AFTER_CLAIM, RunClock, SpoolWatch, accept_failure, accept_lost_worker, accept_result, dispose_or_log,
    overrun, prepare_for_run, run_message,
)
from hushdrop.pipeline.watch.finish import resolve_interrupted
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.watch.protocol import CannotStart, Failed, Fault, Finished, Progress, Ready, Stop
from hushdrop.pipeline.watch.recovery import remove_temp_audio
from hushdrop.pipeline.watch.worker import stop_process_tree, worker_main

__all__ = ["Executor", "LocalExecutor", "MAX_CHANGES_AFTER_CLAIM"]


class Executor(Protocol):
    """Where jobs run: what the service needs of a backend (the local pool, or a scale-out one).

    The service starts it after recovery, wakes it when a job is claimed or a retry is due,
    asks it for status and for stale claims, and stops it at shutdown. It watches ``fatal``.
    A backend moves :mod:`pipeline.watch.protocol` messages and leaves every decision to
    :mod:`pipeline.watch.dispatch`.
    """

    fatal: str | None  # set when it cannot go on (workers cannot start): `watch` stops with it

    def start(self) -> None:
        """Start the workers and the dispatching."""

    def stop(self, grace: float, hurry: threading.Event | None = None) -> None:
        """Let running jobs finish for up to ``grace`` seconds (or until ``hurry`` is set), then
        release the rest back to ``claimed`` without counting an attempt."""

    def wake(self) -> None:
        """Something may be runnable now: look at the ledger soon."""

    def in_flight(self) -> int:
        """Jobs running now."""

    def workers_info(self) -> list[dict[str, Any]]:
        """Each worker's name, pid, readiness, job and what it loaded, for ``hushdrop status``."""

    def recover_stale(self) -> int:
        """Run again the ``processing`` jobs no live worker holds; returns how many."""


def wait_for_running_jobs(executor: Executor, grace: float, hurry: threading.Event | None) -> None:
    """Block until ``executor`` runs no job, ``grace`` seconds passed, or ``hurry`` is set."""
    deadline = time.monotonic() + grace
    while executor.in_flight() and time.monotonic() < deadline and not (hurry and hurry.is_set()):
        time.sleep(0.1)


@dataclass
class Worker:
    name: str
    process: multiprocessing.process.BaseProcess
    conn: Connection
    job_id: int | None = None
    attempt: int | None = None  # of the job it runs
    clock: RunClock | None = None  # the run's times, for its time limits
    info: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    start_error: str | None = None
    stopped_because: str | None = None  # set when the executor killed it (a run past its limit)

    @property
    def owner(self) -> str:
        return f"{self.name}:{self.process.pid}"


class LocalExecutor:
    """The embedded backend: ``workers`` processes on this machine, fed over pipes."""

    def __init__(self, settings: Settings, ledger: Ledger):
        self.settings = settings
        self.ledger = ledger
        self._ctx = multiprocessing.get_context("spawn")  # never fork a threaded process
        self._workers: list[Worker] = []
        self._serial = 0
        self._lock = threading.RLock()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._stop = threading.Event()
        self._draining = threading.Event()
        self.spool = SpoolWatch()
        self._thread: threading.Thread | None = None
        self._start_failures = 0  # workers in a row that died before they were ready
        self._respawn_at: dict[int, float] = {}  # slot → monotonic time a replacement may start
        self.fatal: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        # `workers: auto` is resolved once here (the service has usually done it already and
        # logged why); the workers get the settings with the number and threads it chose
        self.settings = resolve_workers(self.settings).apply(self.settings)
        for _ in range(self.settings.workers):
            self._workers.append(self._spawn())
        self._thread = threading.Thread(target=self._loop, name="executor", daemon=True)
        self._thread.start()

    def _spawn(self) -> Worker:
        self._serial += 1
        name = f"worker-{self._serial}"
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=worker_main, args=(self.settings, child_conn, name, os.getpid()), name=name, daemon=True
        )
        process.start()
        child_conn.close()
        return Worker(name, process, parent_conn)

    def wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"")
        except OSError:
            pass

    def in_flight(self) -> int:
        with self._lock:
            return sum(1 for w in self._workers if w.job_id is not None)

    def workers_info(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"name": w.name, "pid": w.process.pid, "ready": w.ready, "job": w.job_id, **w.info}
                for w in self._workers
            ]

    def stop(self, grace: float, hurry: threading.Event | None = None) -> None:
        """Finish running jobs for up to ``grace`` seconds (or until ``hurry``), then release the rest."""
        self._draining.set()
        wait_for_running_jobs(self, grace, hurry)
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            for worker in self._workers:
                if worker.job_id is not None:
                    stop_process_tree(worker.process.pid)  # with the ffmpeg it runs, which would outlive it
                    worker.process.join(10)
                    if self.ledger.broken is None:
                        self.ledger.release(worker.job_id, count_attempt=False)
                        job_log(worker.job_id).info("released at shutdown; it will run again on the next start")
                    worker.job_id = None
                else:
                    try:
                        worker.conn.send(Stop())
                    except OSError:
                        pass
            for worker in self._workers:
                worker.process.join(5)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join(5)
            self._workers.clear()
        # a killed worker could not remove its private temp audio; no worker is left to use any
        remove_temp_audio(self.settings)

    # -- the dispatcher thread -------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                live = [w for w in self._workers if not w.conn.closed]
                conns = [w.conn for w in live] + [w.process.sentinel for w in live]
            ready = wait([self._wake_r, *conns], timeout=0.5)
            if self._wake_r in ready:
                while self._wake_r.poll():
                    self._wake_r.recv_bytes()
            try:
                with self._lock:
                    self._collect()
                    self._enforce_time_limits()
                    self._reap()
                    if not self._draining.is_set():
                        self._dispatch()
            except Exception:
                log().exception("executor: unexpected error; continuing")
                time.sleep(0.5)

    def _collect(self) -> None:
        for worker in self._workers:
            if worker.conn.closed:
                continue
            try:
                while worker.conn.poll():
                    self._handle(worker, worker.conn.recv())
            except (EOFError, OSError):
                pass  # the worker died; _reap deals with it

    def _handle(self, worker: Worker, message: object) -> None:
        if isinstance(message, CannotStart):
            worker.start_error = message.reason
            return
        if isinstance(message, Ready):
            self._start_failures = 0
            worker.ready = True
            worker.info = message.info
            log().info("%s ready: %s on %s", worker.name, worker.info.get("model"), worker.info.get("device"))
            return
        if not isinstance(message, (Progress, Finished, Failed)):
            log().error("%s sent an unknown message %r; ignored", worker.name, type(message).__name__)
            return
        if message.job_id != worker.job_id:
            return  # a message about a job this worker no longer owns (released)
        if isinstance(message, Progress):
            if worker.clock is not None:
                worker.clock = worker.clock.advance(message.stage, message.duration_s, time.monotonic())
            self.ledger.progress(message.job_id, message.stage, message.fraction)
            return
        worker.job_id = None
        if isinstance(message, Finished):
            accept_result(self.settings, self.ledger, message)
        else:
            accept_failure(self.settings, self.ledger, message)

    def _enforce_time_limits(self) -> None:
        """Kill the worker of a run past its stage's or its job's time limit (with the processes it
        started) and fail the attempt, naming the stage; ``_reap`` then starts another worker."""
        now = time.monotonic()
        for worker in self._workers:
            if worker.job_id is None or worker.clock is None or not worker.process.is_alive():
                continue
            reason = overrun(self.settings, worker.clock, now)
            if reason is None:
                continue
            job_id, stage = worker.job_id, worker.clock.stage
            worker.stopped_because = f"job {job_id}: {reason}"
            stop_process_tree(worker.process.pid)
            worker.process.join(10)
            worker.job_id = worker.clock = None
            accept_failure(self.settings, self.ledger, Failed(
                job_id, stage, f"{reason}; the worker was stopped", Fault.TRANSIENT, worker.attempt,
            ))

    def _reap(self) -> None:
        now = time.monotonic()
        for i, worker in enumerate(self._workers):
            if worker.process.is_alive() or worker.conn.closed:
                if worker.conn.closed and not self._draining.is_set() and self.fatal is None and now >= self._respawn_at.get(i, 0):
                    self._workers[i] = self._spawn()
                continue
            code = worker.process.exitcode
            if worker.job_id is not None:
                accept_lost_worker(self.settings, self.ledger, worker.job_id, code)
                worker.job_id = None
            try:
                while worker.conn.poll():  # a last word: why it could not start
                    self._handle(worker, worker.conn.recv())
            except (EOFError, OSError):
                pass
            worker.conn.close()
            if self._draining.is_set():
                log().warning("%s exited (code %s)", worker.name, code)
                continue
            if not worker.ready:
                self._start_failures += 1
                reason = worker.start_error or f"it exited with code {code} while loading"
                if self._start_failures >= self.settings.worker_start_attempts:
                    self.fatal = (
                        f"worker cannot start: {reason}. It failed {self._start_failures} times in a row; "
                        f"fix the cause (see the lines above) and start `hushdrop watch` again"
                    )
                    continue
                delay = min(60.0, 0.5 * 2 ** self._start_failures)
                log().error("%s could not start: %s; trying again in %.0f s", worker.name, reason, delay)
                self._respawn_at[i] = now + delay
                continue
            if worker.stopped_because:
                log().warning("%s stopped: %s; starting another", worker.name, worker.stopped_because)
            else:
                log().warning("%s exited (code %s); starting another", worker.name, code)
            self._respawn_at[i] = now

    def _dispatch(self) -> None:
        idle = [w for w in self._workers if w.ready and w.job_id is None and not w.conn.closed and w.process.is_alive()]
        if not idle:
            return
        now = time.monotonic()
        for row in self.ledger.runnable(limit=self.settings.queue_limit + len(self._workers)):
            if not idle:
                return
            if self.spool.held(row.id, now) or not prepare_for_run(self.settings, self.ledger, row, self.spool):
                continue
            worker = idle.pop(0)
            row = self.ledger.start(row.id, worker.owner)
            worker.job_id, worker.attempt, worker.clock = row.id, row.attempts, RunClock.begin(time.monotonic())
            try:
                worker.conn.send(run_message(row))
            except OSError:
                worker.job_id = None
                self.ledger.release(row.id, count_attempt=False)
                continue
            job_log(row.id).info("started on %s (attempt %d)", worker.name, row.attempts)

    # -- scheduler hooks -----------------------------------------------------------------

    def recover_stale(self) -> int:
        """Processing jobs no live worker of ours owns (a lost message, a crash): run them again."""
        released = 0
        with self._lock:
            owned = {w.job_id for w in self._workers if w.job_id is not None}
            for row in self.ledger.in_state(State.PROCESSING):
                if row.id not in owned:
                    job_log(row.id).warning("stale claim (no worker holds it)")
                    row = resolve_interrupted(self.settings, self.ledger, row, count_attempt=True)
                    if row.state == State.COMMITTED:
                        dispose_or_log(self.settings, self.ledger, row)
                    released += 1
        if released:
            self.wake()
        return released
