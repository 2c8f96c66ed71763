"""The executor: the one dispatch loop, whatever backend runs the jobs.

:class:`Executor` owns the loop thread, its wake-up pipe, the jobs in flight and shutdown.
Each round it collects what the backend heard (protocol messages, a worker lost, a job no
worker took), enforces the time limits, and sends runnable jobs to free capacity. Every
decision about a job is a :mod:`pipeline.watch.dispatch` function — what to do before a run,
with an answer, with a lost worker, with a run past its limit, with a stale claim — so a
job's fate is decided by the same code whichever backend ran it.

A :class:`Backend` only moves work: it says how much it can take (``capacity``), sends a
:class:`~pipeline.watch.protocol.RunJob` (``assign`` then ``send``), and reports what
happened (``wait``, ``collect``). Two exist: the local process pool
(``pipeline.watch.local_pool``) and Celery workers on other machines
(``pipeline.watch.celery_executor``, docs/scale-out.md).

The ledger is the queue. A job is sent only when the backend has a free worker for its
queue, so at most that many jobs are in flight; intake stops claiming when ``queue_limit``
jobs wait (backpressure), leaving further files in the inbox. A run that goes past its time
limit (``time_limits``, judged by ``dispatch.overrun`` from the run's progress reports) is
stopped by the backend and its attempt fails naming the stage, so a recording that always
hangs ends in quarantine.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.watch.dispatch import (
    RunClock, SpoolWatch, accept_failure, accept_lost_worker, accept_not_taken, accept_overrun, accept_result,
    overrun, prepare_for_run, release_at_shutdown, rerun_stale, run_message,
)
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State
from hushdrop.pipeline.watch.protocol import Failed, Finished, Progress, RunJob

__all__ = ["ANY_QUEUE", "Backend", "Executor", "Lost", "NotTaken", "SendFailed"]

LOOP_SECONDS = 0.5  # the longest the loop waits for news before it looks at the ledger again
ANY_QUEUE = None  # a capacity key: workers that take a job of any queue (the local pool)


@dataclass(frozen=True)
class Lost:
    """The worker running ``job_id`` is gone without an answer; ``why`` says how, for the job's error."""

    job_id: int
    why: str


@dataclass(frozen=True)
class NotTaken:
    """No worker took ``job_id``; the backend gave up sending it again."""

    job_id: int


Event = Progress | Finished | Failed | Lost | NotTaken


class SendFailed(Exception):
    """The backend could not hand the job over (a dead pipe, an unreachable broker)."""


class Backend(Protocol):
    """Where jobs run; it moves work and decides nothing (see the module docstring).

    A *handle* is the backend's own note of one run (the local worker, the Celery task).
    """

    fatal: str | None  # set when it cannot go on (workers cannot start): `watch` stops with it
    own_config: bool  # its workers read a config of their own: RunJob carries the profile and time limits
    limit_grace_s: float  # how long after a time limit the run's worker may still answer by itself

    def open(self) -> None:
        """Start the workers, or connect."""

    def adopt(self, row: JobRow) -> Any | None:
        """A handle for a ``processing`` row this backend still runs out of sight (a Celery task
        after a restart), else None."""

    def capacity(self) -> dict[str | None, int]:
        """Free workers per queue (``ANY_QUEUE``: for any queue)."""

    def assign(self, job_id: int, queue: str) -> tuple[Any, str]:
        """Reserve a free worker of ``queue`` for ``job_id``: its handle, and the owner the ledger row names."""

    def send(self, handle: Any, message: RunJob) -> bool:
        """Hand the job over. True: a worker has it now (its clock starts); False: it waits to be
        taken, and its clock starts with its first progress report. Raises :class:`SendFailed`."""

    def wait(self, wake: Connection, timeout: float) -> None:
        """Return when there may be news: from a worker, or ``wake`` readable, or after ``timeout``."""

    def collect(self) -> list[Event]:
        """What happened since the last round."""

    def stop_run(self, handle: Any, reason: str) -> str | None:
        """Stop a run past its time limit; the sentence for its failure, or None when it answered meanwhile."""

    def forget(self, handle: Any) -> None:
        """The run is settled: free its worker, withdraw its task."""

    def describe(self, handle: Any) -> str:
        """The run's worker, for log lines."""

    def drain(self) -> None:
        """No new job will be sent: a worker that ends now need not be replaced."""

    def close(self, running: dict[int, Any]) -> list[int]:
        """Stop the workers; the jobs among ``running`` whose runs it ended (to be released)."""

    def trouble(self, exc: Exception) -> bool:
        """True when ``exc`` is an outage the backend reports itself (a broker that is away)."""

    def workers_info(self) -> list[dict[str, Any]]:
        """Each worker's name, readiness, job and what it loaded, for ``hushdrop status``."""


@dataclass
class Run:
    """One job in flight, as the loop tracks it."""

    job_id: int
    attempt: int
    handle: Any
    clock: RunClock | None  # None until a worker took it


class Executor:
    """The dispatch loop over one backend; the service's only view of where jobs run."""

    def __init__(self, settings: Settings, ledger: Ledger, backend: Backend):
        self.settings = settings
        self.ledger = ledger
        self.backend = backend
        self.spool = SpoolWatch()
        self._runs: dict[int, Run] = {}
        self._lock = threading.RLock()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fatal(self) -> str | None:
        return self.backend.fatal

    # -- the service's side ---------------------------------------------------------------

    def start(self) -> None:
        """Open the backend, adopt what it still runs, start the loop."""
        self.backend.open()
        with self._lock:
            for row in self.ledger.in_state(State.PROCESSING):
                handle = self.backend.adopt(row)
                if handle is not None:
                    self._runs[row.id] = Run(row.id, row.attempts, handle, None)
        self._thread = threading.Thread(target=self._loop, name="executor", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Something may be runnable now: look at the ledger soon."""
        try:
            self._wake_w.send_bytes(b"")
        except OSError:
            pass

    def in_flight(self) -> int:
        with self._lock:
            return len(self._runs)

    def workers_info(self) -> list[dict[str, Any]]:
        with self._lock:
            return self.backend.workers_info()

    def stop(self, grace: float, hurry: threading.Event | None = None) -> None:
        """Let running jobs finish for up to ``grace`` seconds (or until ``hurry`` is set); then
        the backend stops, and the jobs whose runs it ended go back to ``claimed`` without
        counting an attempt (a run it leaves going is collected by the next start)."""
        self._draining.set()
        self.backend.drain()
        deadline = time.monotonic() + grace
        while self.in_flight() and time.monotonic() < deadline and not (hurry and hurry.is_set()):
            time.sleep(0.1)
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            for job_id in self.backend.close({run.job_id: run.handle for run in self._runs.values()}):
                release_at_shutdown(self.ledger, job_id)
            self._runs.clear()

    def recover_stale(self) -> int:
        """Processing jobs the loop does not track: adopted when the backend still runs them,
        else committed or run again (``dispatch.rerun_stale``). Returns how many ran again."""
        rerun = 0
        with self._lock:
            for row in self.ledger.in_state(State.PROCESSING):
                if row.id in self._runs:
                    continue
                handle = self.backend.adopt(row)
                if handle is not None:
                    self._runs[row.id] = Run(row.id, row.attempts, handle, None)
                    continue
                rerun_stale(self.settings, self.ledger, row)
                rerun += 1
        if rerun:
            self.wake()
        return rerun

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.backend.wait(self._wake_r, LOOP_SECONDS)
                while self._wake_r.poll():
                    self._wake_r.recv_bytes()
                with self._lock:
                    for event in self.backend.collect():
                        self._handle(event)
                    self._enforce_time_limits()
                    if not self._draining.is_set() and self.backend.fatal is None:
                        self._dispatch()
            except Exception as exc:  # noqa: BLE001 - the loop goes on; nothing is lost by a skipped round
                if not self.backend.trouble(exc):
                    log().exception("executor: unexpected error; continuing")
                self._stop.wait(1.0)

    def _handle(self, event: Event) -> None:
        run = self._runs.get(event.job_id)
        if run is None:
            return  # about a job the loop no longer tracks (released, settled)
        if isinstance(event, Progress):
            now = time.monotonic()
            run.clock = (run.clock or RunClock.begin(now)).advance(event.stage, event.duration_s, now)
            self.ledger.progress(event.job_id, event.stage, event.fraction, event.stage_index, event.stage_count)
            return
        if isinstance(event, Finished):
            job_log(run.job_id).info("transcript from %s", self.backend.describe(run.handle))
            row = accept_result(self.settings, self.ledger, event)
        elif isinstance(event, Failed):
            row = accept_failure(self.settings, self.ledger, event)
        elif isinstance(event, Lost):
            row = accept_lost_worker(self.settings, self.ledger, run.job_id, run.attempt, event.why)
        else:
            row = accept_not_taken(self.settings, self.ledger, run.job_id, run.attempt)
        if row is None:
            job_log(run.job_id).info("dropped a stale answer for attempt %s", run.attempt)
        self._settled(run)

    def _settled(self, run: Run) -> None:
        self._runs.pop(run.job_id, None)
        self.backend.forget(run.handle)
        self.wake()

    def _enforce_time_limits(self) -> None:
        """Stop each run past its stage's or its job's time limit (``dispatch.overrun``), once the
        backend's grace for the worker's own answer is over, and fail its attempt naming the stage."""
        now = time.monotonic()
        for run in list(self._runs.values()):
            if run.clock is None:
                continue
            reason = overrun(self.settings, run.clock, now - self.backend.limit_grace_s)
            if reason is None:
                continue
            why = self.backend.stop_run(run.handle, reason)
            if why is None:
                continue  # it answered just now: the next round collects it
            accept_overrun(self.settings, self.ledger, run.job_id, run.attempt, run.clock.stage, why)
            self._settled(run)

    def _dispatch(self) -> None:
        slots = self.backend.capacity()
        if not any(n > 0 for n in slots.values()):
            return
        now = time.monotonic()
        limit = self.settings.queue_limit + len(self.backend.workers_info())
        for row in self.ledger.runnable(limit=limit):
            profile = self.settings.profiles.get(row.profile)
            queue = ANY_QUEUE if ANY_QUEUE in slots else (profile.queue if profile else None)
            if profile is not None and slots.get(queue, 0) <= 0:
                continue
            if self.spool.held(row.id, now) or not prepare_for_run(self.settings, self.ledger, row, self.spool):
                continue
            handle, owner = self.backend.assign(row.id, profile.queue)
            row = self.ledger.start(row.id, owner)
            try:
                taken = self.backend.send(handle, run_message(self.settings, row, own_config=self.backend.own_config))
            except SendFailed:
                self.ledger.release(row.id, count_attempt=False)
                self.backend.forget(handle)
                return
            self._runs[row.id] = Run(row.id, row.attempts, handle, RunClock.begin(time.monotonic()) if taken else None)
            slots[queue] -= 1
            if not any(n > 0 for n in slots.values()):
                return
