"""The worker side: load the model once, then run the chain on each job the coordinator sends.

A worker does the pure part only — :meth:`Processor.run_chain` on the claimed original —
and answers with a :class:`~pipeline.watch.protocol.Finished` (the transcript document)
or a :class:`~pipeline.watch.protocol.Failed`. It never writes the ledger, the outbox or
the spool; the coordinator does (``pipeline.watch.dispatch``, ``pipeline.watch.finish``).

:func:`run_job` is what any backend calls for one job: the local pool's worker process
below, or a Celery task. :func:`worker_main` is the local pool's process: it dies with its
parent, ignores the terminal's signals (the coordinator decides when it stops) and speaks
the protocol over a pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from hushdrop.pipeline.config import Profile, Settings
from hushdrop.pipeline.errors import EnvironmentFault, StageError
from hushdrop.pipeline.logs import job_log
from hushdrop.pipeline.watch.protocol import (
    OPENING_STAGE, CannotStart, Failed, Fault, Finished, Progress, Ready, RunJob, Stop, fault_of_os_error,
)

_PR_SET_PDEATHSIG = 1
PROGRESS_EVERY_SECONDS = 0.5  # at most this often per job, besides each stage's start and end


def fault_of_stage_error(exc: StageError) -> Fault:
    if isinstance(exc, EnvironmentFault):
        return Fault.ENVIRONMENT
    return Fault.TRANSIENT if exc.retryable else Fault.RECORDING


def spool_file(settings: Settings, relative: str) -> Path:
    """The claimed original ``relative`` names, in this worker's view of the spool; never outside
    it (a ValueError says why)."""
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or not parts:
        raise ValueError(f"the task names {relative!r}, which is not a path inside the spool")
    return settings.spool_dir / relative


def run_job(
    processor, settings: Settings, message: RunJob, send_progress: Callable[[Progress], None], profile: Profile | None = None
) -> Finished | Failed:
    """Run the chain of ``message.profile`` on the claimed original; never raises for a job's failure.

    ``profile``: the profile as the coordinator sent it (a remote worker); None: this config's.

    ``send_progress`` gets a :class:`Progress` (throttled) as the chain goes. The returned
    ``Finished.job`` carries no audio and no progress callback: it is the transcript document,
    ready to be sent as it is or as JSON.
    """
    from hushdrop.pipeline.job import no_progress

    job_id = message.job_id
    try:
        path = spool_file(settings, message.spool_relative)
    except ValueError as exc:
        return Failed(job_id, "worker", str(exc), Fault.RECORDING, message.attempt)
    profile = profile or settings.profile(message.profile)
    names = [spec.name for spec in profile.chain]
    last = [0.0]

    def progress(stage: str, fraction: float) -> None:
        now = time.monotonic()
        if fraction not in (0.0, 1.0) and now - last[0] < PROGRESS_EVERY_SECONDS:
            return
        last[0] = now
        index = names.index(stage) if stage in names else 0
        send_progress(Progress(job_id, stage, round(fraction, 4), index, len(names)))

    logger = job_log(job_id)
    started = time.perf_counter()
    send_progress(Progress(job_id, OPENING_STAGE, 0.0, 0, len(names), recording_duration(path)))
    try:
        job = processor.run_chain(path, profile, progress, language=message.language, task=message.task,
                                  prompt=message.prompt)
    except StageError as exc:
        logger.info("failed in %s: %s", exc.stage, exc.message)
        return Failed(job_id, exc.stage, exc.message, fault_of_stage_error(exc), message.attempt)
    except OSError as exc:  # disk full, permissions … outside any stage
        logger.exception("failed outside the chain")
        text = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        return Failed(job_id, "worker", text, fault_of_os_error(exc), message.attempt)
    except Exception as exc:  # a bug outside any stage
        logger.exception("failed outside the chain")
        return Failed(job_id, "worker", f"{type(exc).__name__}: {exc}", Fault.TRANSIENT, message.attempt)
    job.progress = no_progress
    job.audio = None
    logger.info("transcribed in %.1f s", time.perf_counter() - started)
    return Finished(job_id, job, message.attempt)


def recording_duration(path: Path) -> float | None:
    """The recording's duration by its header, which scales the job's time limits; None when the
    header cannot be read (the chain then says why, in its own words)."""
    from hushdrop.pipeline.audio import probe

    try:
        return probe(path).duration_s
    except Exception:  # noqa: BLE001 - the chain's own probe reports it
        return None


def load_model(settings: Settings, processor) -> dict[str, Any]:
    """Open the default profile's chain (its model) now; what is loaded, for ``hushdrop status``.

    A worker that cannot do this is not started (it answers :class:`CannotStart`).
    """
    info: dict[str, Any] = {"pid": os.getpid()}
    default = settings.profiles.get("default") or next(iter(settings.profiles.values()))
    info.update(processor.chain(default).engine_info() or {})  # engine, model, device, compute_type
    return info


# ---------------------------------------------------------------------------
# the local pool's worker process


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


def worker_main(settings: Settings, conn: Connection, name: str, parent: int) -> None:
    """A local worker process: load the model once, then run what the coordinator sends."""
    _die_with_parent(parent)
    # The coordinator decides when workers stop; a terminal's Ctrl-C or systemd's SIGTERM
    # to the whole group must not kill a job halfway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _limit_memory(settings.worker_memory_limit_mb)
        from hushdrop.pipeline import logs
        from hushdrop.pipeline.process import Processor

        logs.setup(settings.log_format)
        processor = Processor(settings)
        info = load_model(settings, processor)
    except BaseException as exc:  # noqa: BLE001 - the reason goes to the coordinator, then the worker ends
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if settings.worker_memory_limit_mb:
            reason += f" (worker_memory_limit_mb is {settings.worker_memory_limit_mb}: too little memory to load?)"
        try:
            conn.send(CannotStart(reason))
        finally:
            os._exit(3)
    _serve(settings, conn, processor, info)


def _serve(settings: Settings, conn: Connection, processor, info: dict[str, Any]) -> None:
    conn.send(Ready(info))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if isinstance(message, Stop):
            break
        assert isinstance(message, RunJob), message
        conn.send(run_job(processor, settings, message, conn.send))
    processor.close()


# ---------------------------------------------------------------------------
# stopping a worker whose run is past its time limit (pipeline.watch.dispatch.overrun)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (an ffmpeg it started, and theirs), read from /proc; none where
    there is no /proc."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue  # it ended meanwhile
        # the command name in parentheses may hold spaces and parentheses: the fields follow the last ')'
        fields = text[text.rfind(b")") + 2:].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def stop_process_tree(pid: int) -> None:
    """Kill ``pid`` and every process below it with SIGKILL. It is frozen first (SIGSTOP), so it
    cannot start another child while they are found. No SIGTERM first: a local worker ignores it
    on purpose (the coordinator decides when it stops), and nothing a stuck run would do on it
    is kept."""
    _kill(pid, signal.SIGSTOP)
    for child in descendants(pid):
        _kill(child, signal.SIGKILL)
    _kill(pid, signal.SIGKILL)


def restart_this_process() -> None:
    """Kill every process this one started, then replace it with a fresh run of its own command
    line (same pid, arguments and environment); it never returns. For a `hushdrop worker` whose
    run is stuck where no thread can interrupt it (a blocking system call, a C library)."""
    for child in descendants(os.getpid()):
        _kill(child, signal.SIGKILL)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        os.execv(sys.executable, sys.orig_argv)
    finally:
        os._exit(75)  # EX_TEMPFAIL: the exec failed; a supervisor (systemd's Restart=) starts it again
