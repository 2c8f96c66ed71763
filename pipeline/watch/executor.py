"""The executor: where jobs run. A local pool of worker processes.

Each worker is a separate process holding one ``Processor``: its chains (and the
ASR model) are built once and reused for every job it runs. A worker does the pure
part only — ``Processor.transcribe(spool file, profile)`` — and sends the finished
``Job`` back; the watcher process alone writes the ledger, the outbox and the spool
(see ``pipeline.watch.finish``). So a worker that crashes, hangs or is killed can never
leave a partial output, and killing the watcher kills its workers
(``PR_SET_PDEATHSIG``) without any output being half-written by them.

The ledger is the queue. The dispatcher starts a claimed job only when a worker is
idle, so at most ``workers`` jobs are in flight; intake stops claiming when
``queue_limit`` jobs wait (backpressure), leaving further files in the inbox.

Every failure is bounded. A worker that dies before it is ready is started again
after an exponentially growing pause; after ``worker_start_attempts`` such deaths in
a row the executor sets ``fatal`` and `watch` stops with that message. A job whose
worker vanished is run again a bounded number of times (``max_attempts``).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.errors import EnvironmentFault, StageError
from hushdrop.pipeline.watch.finish import (
    RECORDING, ENVIRONMENT, TRANSIENT, commit_job, fail_job, fault_of_os_error, quarantine_job, resolve_interrupted,
    retire_original, skip_duplicate,
)
from hushdrop.pipeline.fsutil import empty_folder, sha256_file
from hushdrop.pipeline.watch.ledger import ABANDONED, ACTIVE, CLAIMED, COMMITTED, DONE, PROCESSING, SEEN, JobRow, Ledger
from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.retention import RetentionError

_PR_SET_PDEATHSIG = 1
# a claimed original still being written this many settle periods later is set aside
MAX_CHANGES_AFTER_CLAIM = 20


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (AttributeError, OSError):
        pass  # not Linux: the worker notices the closed pipe instead
    if os.getppid() != parent:
        os._exit(0)  # the parent died before prctl took effect


def _limit_memory(megabytes: int | None) -> None:
    if megabytes:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _worker_main(settings: Settings, conn: Connection, name: str, parent: int) -> None:
    """A worker process: load the model once, then transcribe what the dispatcher sends."""
    _die_with_parent(parent)
    # The watcher decides when workers stop; a terminal's Ctrl-C or systemd's SIGTERM
    # to the whole group must not kill a job halfway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _limit_memory(settings.worker_memory_limit_mb)
        from hushdrop.pipeline import logs
        from hushdrop.pipeline.process import Processor

        logs.setup(settings.log_format)
        processor = Processor(settings)
        info = _load_default_chain(settings, processor)
    except BaseException as exc:  # noqa: BLE001 - the reason goes to the watcher, then the worker ends
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if settings.worker_memory_limit_mb:
            reason += f" (worker_memory_limit_mb is {settings.worker_memory_limit_mb}: too little memory to load?)"
        try:
            conn.send(("cannot-start", reason))
        finally:
            os._exit(3)
    _serve(settings, conn, processor, info)


def _load_default_chain(settings: Settings, processor) -> dict[str, Any]:
    """Open the default profile's chain (its model) now; a worker that cannot is not started."""
    info: dict[str, Any] = {"pid": os.getpid()}
    default = settings.profiles.get("default") or next(iter(settings.profiles.values()))
    chain = processor.chain(default)
    for stage in chain.stages:
        engine = getattr(stage, "engine", None)
        if engine is not None:
            described = engine.describe()
            info.update(model=described.get("model"), device=described.get("device"),
                        compute_type=described.get("compute_type"), engine=described.get("engine"))
    return info


def _serve(settings: Settings, conn: Connection, processor, info: dict[str, Any]) -> None:
    from hushdrop.pipeline.job import no_progress

    conn.send(("ready", info))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "stop":
            break
        _, job_id, path, profile_name, language = message
        profile = settings.profile(profile_name)
        names = [spec.name for spec in profile.chain]
        last = [0.0]

        def progress(stage: str, fraction: float, job_id=job_id) -> None:
            now = time.monotonic()
            if fraction not in (0.0, 1.0) and now - last[0] < 0.5:
                return
            last[0] = now
            index = names.index(stage) if stage in names else 0
            conn.send(("progress", job_id, stage, round((index + fraction) / max(1, len(names)), 4)))

        logger = job_log(job_id)
        started = time.perf_counter()
        try:
            job = processor.transcribe(Path(path), profile, progress, language=language)
        except StageError as exc:
            logger.info("failed in %s: %s", exc.stage, exc.message)
            fault = ENVIRONMENT if isinstance(exc, EnvironmentFault) else TRANSIENT if exc.retryable else RECORDING
            conn.send(("error", job_id, exc.stage, exc.message, fault))
            continue
        except OSError as exc:  # disk full, permissions … outside any stage
            logger.exception("failed outside the chain")
            conn.send(("error", job_id, "worker", f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), fault_of_os_error(exc)))
            continue
        except Exception as exc:  # a bug outside any stage
            logger.exception("failed outside the chain")
            conn.send(("error", job_id, "worker", f"{type(exc).__name__}: {exc}", TRANSIENT))
            continue
        job.progress = no_progress
        job.audio = None
        logger.info("transcribed in %.1f s", time.perf_counter() - started)
        conn.send(("result", job_id, job))
    processor.close()


@dataclass
class Worker:
    name: str
    process: multiprocessing.process.BaseProcess
    conn: Connection
    job_id: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    start_error: str | None = None

    @property
    def owner(self) -> str:
        return f"{self.name}:{self.process.pid}"


class Executor:
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
        self._hold: dict[int, float] = {}  # job id → not before (a spool file that changed after its claim)
        self._missing: dict[int, int] = {}  # job id → times its spool file was found missing
        self._changed: dict[int, int] = {}  # job id → times its spool file changed after the claim
        self._thread: threading.Thread | None = None
        self._start_failures = 0  # workers in a row that died before they were ready
        self._respawn_at: dict[int, float] = {}  # slot → monotonic time a replacement may start
        self.fatal: str | None = None  # set when workers cannot start: `watch` stops with it

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.settings.workers):
            self._workers.append(self._spawn())
        self._thread = threading.Thread(target=self._loop, name="executor", daemon=True)
        self._thread.start()

    def _spawn(self) -> Worker:
        self._serial += 1
        name = f"worker-{self._serial}"
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main, args=(self.settings, child_conn, name, os.getpid()), name=name, daemon=True
        )
        process.start()
        child_conn.close()
        return Worker(name, process, parent_conn)

    def wake(self) -> None:
        try:
            self._wake_w.send(b"")
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
        deadline = time.monotonic() + grace
        while self.in_flight() and time.monotonic() < deadline and not (hurry and hurry.is_set()):
            time.sleep(0.1)
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            for worker in self._workers:
                if worker.job_id is not None:
                    worker.process.kill()
                    worker.process.join(10)
                    if self.ledger.broken is None:
                        self.ledger.release(worker.job_id, count_attempt=False)
                        job_log(worker.job_id).info("released at shutdown; it will run again on the next start")
                    worker.job_id = None
                else:
                    try:
                        worker.conn.send(("stop",))
                    except OSError:
                        pass
            for worker in self._workers:
                worker.process.join(5)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join(5)
            self._workers.clear()
        # a killed worker could not remove its private temp audio; no worker is left to use any
        empty_folder(self.settings.tmp_root)

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

    def _handle(self, worker: Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "cannot-start":
            worker.start_error = message[1]
            return
        if kind == "ready":
            self._start_failures = 0
            worker.ready = True
            worker.info = message[1]
            log().info("%s ready: %s on %s", worker.name, worker.info.get("model"), worker.info.get("device"))
            return
        job_id = message[1]
        if job_id != worker.job_id:
            return  # a message about a job this worker no longer owns (released)
        if kind == "progress":
            self.ledger.progress(job_id, message[2], message[3])
            return
        worker.job_id = None
        row = self.ledger.get(job_id)
        if row.state != PROCESSING:
            return
        if kind == "result":
            try:
                row = commit_job(self.settings, self.ledger, row, message[2])
            except Exception as exc:  # disk full, permissions: undo what was written, retry later
                job_log(job_id).exception("could not commit the outputs")
                row = self.ledger.get(job_id)
                if row.state != PROCESSING:
                    return
                for path in row.outputs:
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as cleanup:
                        job_log(job_id).error("cannot remove the partial output %s: %s", path, cleanup.strerror)
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                fault = fault_of_os_error(exc) if isinstance(exc, OSError) else TRANSIENT
                fail_job(self.settings, self.ledger, row, "outputs", f"cannot write the outputs in {self.settings.outbox}: {reason}", fault)
                return
            self._retire(row)
        elif kind == "error":
            _, _, stage, text, fault = message
            fail_job(self.settings, self.ledger, row, stage, text, fault)

    def _retire(self, row: JobRow) -> None:
        try:
            retire_original(self.settings, self.ledger, row)
        except (OSError, RetentionError) as exc:  # outputs are safe; the next restart tries again
            job_log(row.id).error("could not retire the original: %s", exc)

    def _reap(self) -> None:
        now = time.monotonic()
        for i, worker in enumerate(self._workers):
            if worker.process.is_alive() or worker.conn.closed:
                if worker.conn.closed and not self._draining.is_set() and self.fatal is None and now >= self._respawn_at.get(i, 0):
                    self._workers[i] = self._spawn()
                continue
            code = worker.process.exitcode
            if worker.job_id is not None:
                row = self.ledger.get(worker.job_id)
                if row.state == PROCESSING:
                    what = f"the worker process died (exit code {code}); out of memory?" if code else "the worker process exited"
                    fail_job(self.settings, self.ledger, row, row.stage or "worker", what, TRANSIENT)
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
            if self._hold.get(row.id, 0) > now:
                continue
            self._hold.pop(row.id, None)
            if not self._ready_to_run(row):
                continue
            worker = idle.pop(0)
            row = self.ledger.start(row.id, worker.owner)
            worker.job_id = row.id
            try:
                worker.conn.send(("job", row.id, str(row.spool_path), row.profile, row.language))
            except OSError:
                worker.job_id = None
                self.ledger.release(row.id, count_attempt=False)
                continue
            job_log(row.id).info("started on %s (attempt %d)", worker.name, row.attempts)

    def _ready_to_run(self, row: JobRow) -> bool:
        """Checks before a claimed job starts: config, spool file, duplicates."""
        profile = self.settings.profiles.get(row.profile)
        if profile is None:
            quarantine_job(self.settings, self.ledger, row, "config",
                           f"profile {row.profile!r} is no longer in the config", RECORDING)
            return False
        try:
            st = os.lstat(row.spool_path)
        except FileNotFoundError:
            missing = self._missing[row.id] = self._missing.get(row.id, 0) + 1
            if missing >= 3:
                self.ledger.transition(
                    row.id, ABANDONED, expect=CLAIMED,
                    error=f"the claimed original {row.spool_path} was removed from the spool by something other than hushdrop",
                )
                job_log(row.id).error(
                    "the claimed original %s is gone from the spool (deleted outside hushdrop); the job is abandoned",
                    row.spool_path,
                )
                self._missing.pop(row.id, None)
                return False
            job_log(row.id).error("the claimed original %s is missing from the spool; checking again in 10 s", row.spool_path)
            self._hold[row.id] = time.monotonic() + 10
            return False
        self._missing.pop(row.id, None)
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            # still being written after its claim (a writer that paused longer than the settle period)
            changes = self._changed[row.id] = self._changed.get(row.id, 0) + 1
            if changes > MAX_CHANGES_AFTER_CLAIM:
                self._changed.pop(row.id, None)
                quarantine_job(
                    self.settings, self.ledger, row, "intake",
                    f"it kept changing after it was taken ({changes} times): the program writing it still has it "
                    f"open. Let that program finish, then drop the file again", RECORDING,
                )
                return False
            self.ledger.set(row.id, size=st.st_size, mtime_ns=st.st_mtime_ns, content_hash=None)
            self._hold[row.id] = time.monotonic() + profile.settle_seconds
            job_log(row.id).warning("changed after it was claimed; waiting for it to settle")
            return False
        if row.content_hash is None:
            try:
                row = self.ledger.set(row.id, content_hash=sha256_file(row.spool_path))
            except OSError as exc:
                row = self.ledger.start(row.id, "intake")
                fail_job(self.settings, self.ledger, row, "hash", f"cannot read the claimed original: {exc.strerror}", fault_of_os_error(exc))
                return False
        if profile.duplicates == "skip":
            same = self.ledger.same_content(row)
            if any(other.id < row.id and other.state in ACTIVE - {SEEN} for other in same):
                return False  # the same content is already queued or running: decide when it is done
            for other in reversed(same):
                if other.state == DONE and other.outputs and all(p.exists() for p in other.outputs):
                    row = skip_duplicate(self.ledger, row, other)
                    self._retire(row)
                    return False
        return True

    # -- scheduler hooks -----------------------------------------------------------------

    def recover_stale(self) -> int:
        """Processing jobs no live worker of ours owns (a lost message, a crash): run them again."""
        released = 0
        with self._lock:
            owned = {w.job_id for w in self._workers if w.job_id is not None}
            for row in self.ledger.in_state(PROCESSING):
                if row.id not in owned:
                    job_log(row.id).warning("stale claim (no worker holds it)")
                    row = resolve_interrupted(self.settings, self.ledger, row, count_attempt=True)
                    if row.state == COMMITTED:
                        self._retire(row)
                    released += 1
        if released:
            self.wake()
        return released
