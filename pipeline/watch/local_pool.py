"""The local backend of the executor: a pool of worker processes on this machine, fed over pipes.

Each worker is a separate process holding one ``Processor`` (``pipeline.watch.worker``): its
chains (and the ASR model) are built once and reused for every job it runs. It does the pure
part only and answers with a protocol message; the coordinator alone writes the ledger, the
outbox and the spool. So a worker that crashes, hangs or is killed can never leave a partial
output, and killing the watcher kills its workers (``PR_SET_PDEATHSIG``).

Every failure is bounded. A worker that dies before it is ready is started again after an
exponentially growing pause; after ``worker_start_attempts`` such deaths in a row the pool
sets ``fatal`` and `watch` stops with that message. A worker that dies while it runs a job is
reported :class:`~pipeline.watch.executor.Lost` and another takes its place; a run past its
time limit has its worker killed, with whatever it started.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.watch.dispatch import lost_process_words
from hushdrop.pipeline.watch.executor import ANY_QUEUE, Event, Lost, SendFailed
from hushdrop.pipeline.watch.ledger import JobRow
from hushdrop.pipeline.watch.protocol import CannotStart, Failed, Finished, Progress, Ready, RunJob, Stop
from hushdrop.pipeline.watch.recovery import remove_temp_audio
from hushdrop.pipeline.watch.sizing import resolve_workers
from hushdrop.pipeline.watch.worker import stop_process_tree, worker_main

__all__ = ["LocalPool"]


@dataclass
class Worker:
    name: str
    process: multiprocessing.process.BaseProcess
    conn: Connection
    job_id: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    start_error: str | None = None
    stopped_because: str | None = None  # set when the pool killed it (a run past its limit)

    @property
    def owner(self) -> str:
        return f"{self.name}:{self.process.pid}"

    @property
    def idle(self) -> bool:
        return self.ready and self.job_id is None and not self.conn.closed and self.process.is_alive()


class LocalPool:
    """``workers`` processes on this machine (see the module docstring)."""

    own_config = False  # the workers read this process's settings
    limit_grace_s = 0.0  # the pool stops a run at its limit itself

    def __init__(self, settings: Settings):
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")  # never fork a threaded process
        self._workers: list[Worker] = []
        self._serial = 0
        self._start_failures = 0  # workers in a row that died before they were ready
        self._respawn_at: dict[int, float] = {}  # slot → monotonic time a replacement may start
        self._closing = False
        self.fatal: str | None = None

    def open(self) -> None:
        # `workers: auto` is resolved once here (the service has usually done it already and
        # logged why); the workers get the settings with the number and threads it chose
        self.settings = resolve_workers(self.settings).apply(self.settings)
        for _ in range(self.settings.workers):
            self._workers.append(self._spawn())

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

    def adopt(self, row: JobRow) -> None:
        return None  # a local run never outlives the loop that sent it

    def capacity(self) -> dict[str | None, int]:
        return {ANY_QUEUE: sum(1 for w in self._workers if w.idle)}

    def assign(self, job_id: int, queue: str) -> tuple[Worker, str]:
        worker = next(w for w in self._workers if w.idle)
        worker.job_id = job_id
        return worker, worker.owner

    def send(self, worker: Worker, message: RunJob) -> bool:
        try:
            worker.conn.send(message)
        except OSError as exc:
            raise SendFailed(f"{worker.name}: {exc}") from exc
        job_log(message.job_id).info("started on %s (attempt %d)", worker.name, message.attempt)
        return True

    def describe(self, worker: Worker) -> str:
        return worker.name

    def forget(self, worker: Worker) -> None:
        worker.job_id = None

    def stop_run(self, worker: Worker, reason: str) -> str:
        """Kill the worker with the processes it started; the next round starts another."""
        worker.stopped_because = f"job {worker.job_id}: {reason}"
        stop_process_tree(worker.process.pid)
        worker.process.join(10)
        return f"{reason}; the worker was stopped"

    def trouble(self, exc: Exception) -> bool:
        return False

    def workers_info(self) -> list[dict[str, Any]]:
        return [
            {"name": w.name, "pid": w.process.pid, "ready": w.ready, "job": w.job_id, **w.info}
            for w in self._workers
        ]

    # -- collecting ------------------------------------------------------------------------

    def wait(self, wake: Connection, timeout: float) -> None:
        live = [w for w in list(self._workers) if not w.conn.closed]
        wait([wake, *(w.conn for w in live), *(w.process.sentinel for w in live)], timeout=timeout)

    def collect(self) -> list[Event]:
        events: list[Event] = []
        for worker in self._workers:
            self._read(worker, events)
        self._reap(events)
        return events

    def _read(self, worker: Worker, events: list[Event]) -> None:
        if worker.conn.closed:
            return
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if isinstance(message, CannotStart):
                    worker.start_error = message.reason
                elif isinstance(message, Ready):
                    self._start_failures = 0
                    worker.ready = True
                    worker.info = message.info
                    log().info("%s ready: %s on %s", worker.name, worker.info.get("model"), worker.info.get("device"))
                elif isinstance(message, (Progress, Finished, Failed)):
                    if message.job_id == worker.job_id:  # else about a job it no longer owns (released)
                        events.append(message)
                else:
                    log().error("%s sent an unknown message %r; ignored", worker.name, type(message).__name__)
        except (EOFError, OSError):
            pass  # the worker died; _reap deals with it

    def _reap(self, events: list[Event]) -> None:
        now = time.monotonic()
        for i, worker in enumerate(self._workers):
            if worker.process.is_alive() or worker.conn.closed:
                if worker.conn.closed and not self._closing and self.fatal is None and now >= self._respawn_at.get(i, 0):
                    self._workers[i] = self._spawn()
                continue
            code = worker.process.exitcode
            self._read(worker, events)  # a last word: its answer, or why it could not start
            if worker.job_id is not None and not worker.stopped_because:
                events.append(Lost(worker.job_id, lost_process_words(code)))
            worker.conn.close()
            if self._closing:
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

    # -- shutdown --------------------------------------------------------------------------

    def drain(self) -> None:
        self._closing = True  # a worker that ends now is not replaced

    def close(self, running: dict[int, Any]) -> list[int]:
        """Kill the workers still running a job (with the ffmpeg they run, which would outlive
        them) and stop the idle ones; then remove the temp audio a killed worker left."""
        self._closing = True
        ended = []
        for worker in self._workers:
            if worker.job_id is not None:
                stop_process_tree(worker.process.pid)
                worker.process.join(10)
                if worker.job_id in running:
                    ended.append(worker.job_id)
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
        return ended
