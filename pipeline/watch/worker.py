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

import ctypes
import os
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from hushdrop.pipeline.config import Profile, Settings
from hushdrop.pipeline.errors import EnvironmentFault, StageError
from hushdrop.pipeline.logs import job_log
from hushdrop.pipeline.watch.protocol import (
    CannotStart, Failed, Fault, Finished, Progress, Ready, RunJob, Stop, fault_of_os_error,
)

_PR_SET_PDEATHSIG = 1
PROGRESS_EVERY_SECONDS = 0.5  # at most this often per job, besides each stage's start and end


def fault_of_stage_error(exc: StageError) -> Fault:
    if isinstance(exc, EnvironmentFault):
        return Fault.ENVIRONMENT
    return Fault.TRANSIENT if exc.retryable else Fault.RECORDING


def run_job(
    processor, settings: Settings, message: RunJob, send_progress: Callable[[Progress], None], profile: Profile | None = None
) -> Finished | Failed:
    """Run the chain of ``message.profile`` on ``message.spool_path``; never raises for a job's failure.

    ``profile``: the profile as the coordinator sent it (a remote worker); None: this config's.

    ``send_progress`` gets a :class:`Progress` (throttled) as the chain goes. The returned
    ``Finished.job`` carries no audio and no progress callback: it is the transcript document,
    ready to be sent as it is or as JSON.
    """
    from hushdrop.pipeline.job import no_progress

    job_id = message.job_id
    profile = profile or settings.profile(message.profile)
    names = [spec.name for spec in profile.chain]
    last = [0.0]

    def progress(stage: str, fraction: float) -> None:
        now = time.monotonic()
        if fraction not in (0.0, 1.0) and now - last[0] < PROGRESS_EVERY_SECONDS:
            return
        last[0] = now
        index = names.index(stage) if stage in names else 0
        send_progress(Progress(job_id, stage, round((index + fraction) / max(1, len(names)), 4)))

    logger = job_log(job_id)
    started = time.perf_counter()
    try:
        job = processor.run_chain(Path(message.spool_path), profile, progress, language=message.language)
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
