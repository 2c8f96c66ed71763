"""``hushdrop watch``: the ledger, recovery, the watcher, the executor and the scheduler, wired.

Start-up order matters: take the workdir lock (one watcher per workdir), recover
from whatever the last run left, start the workers, then start watching. Shutdown
(SIGTERM / SIGINT) runs it backwards: stop noticing files, let running jobs finish
for ``shutdown_grace_seconds``, release the rest (they run again next start).
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from pathlib import Path

from hushdrop.pipeline import notify
from hushdrop.pipeline.config import Profile, Settings
from hushdrop.pipeline.watch.executor import Executor
from hushdrop.pipeline.watch.intake import ClaimLost, ClaimRefused, InboxBlocked, InboxUnsafe, claim, inbox_link_problem
from hushdrop.pipeline.errors import EnvironmentFault
from hushdrop.pipeline.fsutil import private_dir
from hushdrop.pipeline.watch.ledger import Ledger, LedgerCorrupt, State
from hushdrop.pipeline.logs import log
from hushdrop.pipeline.watch.recovery import recover
from hushdrop.pipeline.watch.scheduler import (
    QUARANTINE_CHECK_SECONDS, Scheduler, bound_quarantine, expire_outbox, finish_stale_seen, requeue_due_retries,
)
from hushdrop.pipeline.watch.sizing import resolve_workers
from hushdrop.pipeline.watch.watcher import BLOCKED, BUSY, CHANGED, REFUSED, TAKEN, Watcher


class AlreadyRunning(RuntimeError):
    pass


def make_executor(settings: Settings, ledger: Ledger) -> Executor:
    """The dispatch loop over the backend ``executor`` names: the local process pool, or Celery
    workers (docs/scale-out.md)."""
    if settings.executor == "celery":
        from hushdrop.pipeline.watch.celery_executor import CeleryBackend

        return Executor(settings, ledger, CeleryBackend(settings))
    from hushdrop.pipeline.watch.local_pool import LocalPool

    return Executor(settings, ledger, LocalPool(settings))


def lock_workdir(settings: Settings) -> int:
    settings.workdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.workdir / "watch.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise AlreadyRunning(
            f"another `hushdrop watch` (pid {other or '?'}) uses {settings.workdir}; stop it first, "
            f"or give this one another workdir in its config"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Service:
    def __init__(self, settings: Settings, once: bool = False):
        self.settings = settings
        self.once = once
        self.stopping = threading.Event()
        self.hurry = threading.Event()  # a second Ctrl-C: release running jobs now
        self.started_at = time.time()
        self.ledger: Ledger | None = None
        self.executor: Executor | None = None
        self.watcher: Watcher | None = None
        self.scheduler: Scheduler | None = None
        self.web = None  # the web page's server thread (web.enabled)
        self._problems: dict[str, dict] = {}
        self.exit_code = 0
        self.stop_reason: str | None = None  # why the service stops on an error (the `stopped` notification)

    # -- intake callback (settle thread) ---------------------------------------------

    def _on_settled(self, path: Path, profile: Profile, st: os.stat_result) -> str:
        assert self.ledger is not None and self.executor is not None and self.watcher is not None
        if self.stopping.is_set():
            return BUSY
        if self.ledger.count_active() >= self.settings.queue_limit and not self._placed_priority(path, st):
            return BUSY  # backpressure: leave it in the inbox for now (an upload someone waits for is taken)
        try:
            claim(self.settings, self.ledger, path, profile, st)
        except ClaimLost as exc:
            log().info("not claimed yet: %s", exc)
            return CHANGED
        except (ClaimRefused, InboxUnsafe) as exc:
            log().warning("leaving %s alone: %s", path, exc)
            self._note_problem(path, str(exc))
            return REFUSED
        except InboxBlocked as exc:
            self.watcher.block(profile, str(exc))
            return BLOCKED
        self.executor.wake()
        return TAKEN

    def _placed_priority(self, path: Path, st: os.stat_result) -> int:
        """The priority of the upload that is this very file (the page's, an API request's), 0 for any other."""
        note = self.ledger.uploads.note_for(path, st) if self.ledger is not None else None
        return note.priority if note else 0

    def _note_problem(self, path: Path, reason: str) -> None:
        """Keep the latest intake refusals for `hushdrop status` (bounded)."""
        self._problems[str(path)] = {"path": str(path), "reason": reason, "at": time.time()}
        while len(self._problems) > 50:
            self._problems.pop(next(iter(self._problems)))

    # -- heartbeat -----------------------------------------------------------------------

    def heartbeat(self) -> None:
        assert self.ledger is not None and self.executor is not None and self.watcher is not None
        self.ledger.facts.set(
            heartbeat_at=time.time(),
            pid=os.getpid(),
            started_at=self.started_at,
            watch_mode=self.watcher.mode,
            inbox=str(self.settings.inbox),
            outbox=str(self.settings.outbox),
            pending_in_inbox=self.watcher.pending(),
            intake_paused=self.watcher.paused,
            workers=self.executor.workers_info(),
            intake_problems=[*self.watcher.problems(), *[p for p in self._problems.values() if os.path.lexists(p["path"])]],
            stopped_at=None,
        )

    # -- run -------------------------------------------------------------------------------

    def run(self) -> int:
        lock_fd = lock_workdir(self.settings)
        notify.start(self.settings)
        try:
            code = self._run()
        except Exception as exc:
            self.stop_reason = self.stop_reason or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if self.stop_reason is not None:
                notify.service_stopped(self.settings, self.stop_reason)
            notify.stop()  # delivers what is queued, within a bound
            os.close(lock_fd)
        return code

    def _run(self) -> int:
        settings = self.settings
        problem = inbox_link_problem(settings)
        if problem:
            log().error("%s", problem)
            self.stop_reason = f"not starting: {problem}"
            return 2
        from hushdrop.pipeline.ffmpeg_check import check_ffmpeg, describe_ffmpeg

        try:
            tool = describe_ffmpeg(settings.ffmpeg, settings.source.parent)
        except EnvironmentFault as exc:
            log().error("not starting: %s", exc.message)
            self.stop_reason = f"not starting: {exc.message}"
            return 2
        problems = check_ffmpeg(tool.path)
        if problems:
            for line in problems:
                log().error("ffmpeg cannot run the chain: %s", line)
            log().error("not starting: fix the ffmpeg problem above (`hushdrop doctor` shows it again)")
            self.stop_reason = f"not starting: ffmpeg cannot run the chain: {problems[0]}"
            return 2
        log().info("ffmpeg %s (%s): %s", tool.version or "?", tool.origin, tool.path)
        for private in (settings.workdir, settings.spool_dir, settings.quarantine):
            private_dir(private)  # originals and transcripts-to-be: the owner's eyes only
        if settings.executor == "local":
            from hushdrop.pipeline.engines.hub import profile_model_problems

            missing = profile_model_problems(settings)  # the workers here load them: say so now, not at a job
            if missing:
                for line in missing:
                    log().error("not starting: %s", line)
                self.stop_reason = f"not starting: {missing[0]}"
                return 2
            plan = resolve_workers(settings)  # `workers: auto` → a number, once, with the reason logged
            log().info("%s; %s", plan.describe(), plan.describe_pieces(settings))
            settings = self.settings = plan.apply(settings)
        self.ledger = ledger = Ledger(settings.ledger_path)
        self.executor = make_executor(settings, ledger)
        recover(settings, ledger, keep_remote=settings.executor == "celery")
        self.executor.start()
        self.watcher = Watcher(settings, self._on_settled, once=self.once, placed_priority=self._placed_priority)
        self.watcher.start()
        self.heartbeat()
        if settings.web.enabled:
            self.web = start_web(settings)
        self.scheduler = scheduler = Scheduler(settings)
        scheduler.every(settings.rescan_seconds, self.watcher.rescan, "rescan")
        scheduler.every(1.0, lambda: requeue_due_retries(ledger, self.executor.wake), "retries")
        scheduler.every(30.0, self.executor.recover_stale, "stale-claims")
        scheduler.every(30.0, lambda: finish_stale_seen(settings, ledger), "stale-intake")
        scheduler.every(settings.heartbeat_seconds, self.heartbeat, "heartbeat")
        scheduler.every(3600.0, ledger.results.expire, "api-results")  # records no API request came back for
        if settings.outbox_expiry_days is not None:
            expire_outbox(settings, ledger)
            scheduler.every(3600.0, lambda: expire_outbox(settings, ledger), "outbox-expiry")
        scheduler.every(QUARANTINE_CHECK_SECONDS, lambda: bound_quarantine(settings, ledger), "quarantine-limits")
        scheduler.start()
        workers = f"{settings.workers} worker(s)" if settings.executor == "local" else "remote workers through the broker"
        log().info("hushdrop is watching (pid %d, %s); Ctrl-C or SIGTERM stops it cleanly", os.getpid(), workers)
        try:
            while not self.stopping.wait(0.5):
                if ledger.broken is not None:
                    log().error("%s", ledger.broken)
                    self.exit_code, self.stop_reason = 2, str(ledger.broken)
                    break
                if self.executor.fatal:
                    log().error("%s", self.executor.fatal)
                    self.exit_code, self.stop_reason = 1, str(self.executor.fatal)
                    break
                if self.once and self._idle():
                    log().info("--once: everything that was in the inbox is finished")
                    break
        finally:
            self.shutdown()
        if self.once and not self.exit_code and ledger_quarantined_since(settings, self.started_at):
            return 1
        return self.exit_code

    def _idle(self) -> bool:
        assert self.ledger is not None and self.watcher is not None
        self.watcher.rescan()
        return self.watcher.pending() == 0 and self.ledger.count_active() == 0

    def shutdown(self) -> None:
        log().info("stopping: no new files are taken; running jobs get %g s to finish", self.settings.shutdown_grace_seconds)
        if self.web is not None:
            self.web.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.executor is not None:
            self.executor.stop(self.settings.shutdown_grace_seconds, self.hurry)
        if self.ledger is not None:
            if self.ledger.broken is None:
                self.ledger.facts.set(stopped_at=time.time(), workers=[])
            self.ledger.close()
        log().info("stopped")

    def request_stop(self, *_: object) -> None:
        if self.stopping.is_set():
            self.hurry.set()
        self.stopping.set()


def start_web(settings: Settings):
    """The web page in a thread of this service; without it (logged) the folder still works."""
    from hushdrop.pipeline.errors import ConfigError
    from hushdrop.pipeline.web.server import WebError, WebThread

    try:
        return WebThread(settings).start()
    except (WebError, ConfigError) as exc:
        log().error("the web page is not served: %s", exc)
        return None


def watch(settings: Settings, once: bool = False) -> int:
    from hushdrop.pipeline import logs

    logs.setup(settings.log_format)
    service = Service(settings, once=once)
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
    try:
        return service.run()
    except AlreadyRunning as exc:
        log().error("%s", exc)
        return 1
    except LedgerCorrupt as exc:
        log().error("%s", exc)
        return 2


def ledger_quarantined_since(settings: Settings, since: float) -> int:
    """How many jobs this run quarantined (``watch --once`` exits non-zero when any)."""
    ledger = Ledger(settings.ledger_path)
    try:
        return sum(1 for row in ledger.in_state(State.QUARANTINED) if (row.finished_at or 0) >= since)
    finally:
        ledger.close()


__all__ = ["Service", "watch"]
