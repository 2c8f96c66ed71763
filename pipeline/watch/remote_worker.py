"""`hushdrop worker`: a Celery worker that runs the chain for a coordinator.

It loads the default profile's model once and keeps it (Celery's solo pool: one job at a
time, in the process that holds the model — the pool that works with CUDA). Each task's one
argument is a protocol ``RunJob`` as plain data. For each it checks that the coordinator
still wants it, takes the task's lease, reads the claimed original from the shared spool
(read only, verified against the claim's SHA-256), runs the chain with the profile the
message carries, and returns the protocol's ``Finished`` (the transcript document) or
``Failed`` as plain data. It writes nothing in the outbox, the ledger or the spool; only its
own private temp audio, in ``<workdir>/workers/<name>/tmp``: several workers (and the
coordinator) may share one config and one workdir.
A run past the task's time limits (the coordinator's ``time_limits``) is stopped here: its
``Failed`` answer is stored, and the worker kills what it started and starts afresh in place.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import re
import threading
import time
from typing import Any

from hushdrop.pipeline.config import Profile, Settings, TimeLimits, profile_from_document
from hushdrop.pipeline.engines import engine_for
from hushdrop.pipeline.errors import HushdropError
from hushdrop.pipeline.fsutil import private_dir, sha256_file
from hushdrop.pipeline.logs import job_log, log
from hushdrop.pipeline.watch.dispatch import RunClock, overrun
from hushdrop.pipeline.watch.protocol import Failed, Fault, Progress, RunJob, from_dict, to_dict
from hushdrop.pipeline.watch.remote import (
    LEASE_KEY, TASK_NAME, TOKEN_KEY, WORKER_KEY, Beat, broker_url, dumps, host_name, make_app, redact, redis_client,
)
from hushdrop.pipeline.watch.recovery import remove_temp_audio
from hushdrop.pipeline.watch.sizing import one_process_plan
from hushdrop.pipeline.watch.worker import load_model, restart_this_process, run_job, spool_file

LIMIT_CHECK_SECONDS = 1.0


class WorkerNameRefused(HushdropError):
    """This worker cannot use its name here: another running worker has it, or it cannot name a folder."""


def worker_settings(settings: Settings, name: str) -> tuple[Settings, int]:
    """The settings this worker runs with — its temp audio in ``<workdir>/workers/<name>/tmp``,
    the spool where the config puts it — and the lock on that folder, held while it runs."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise WorkerNameRefused(
            f"the worker name {name!r} cannot name a folder: use letters, digits, '.', '_' and '-' (--name)"
        )
    own = settings.workdir / "workers" / name
    private_dir(settings.workdir)
    private_dir(own.parent)
    private_dir(own)
    fd = os.open(own / "worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkerNameRefused(
            f"another `hushdrop worker` named {name!r} runs with the workdir {settings.workdir}; "
            f"give this one another name (--name)"
        ) from None
    return settings.model_copy(update={"workdir": own, "spool": settings.spool_dir}), fd


class RemoteWorker:
    def __init__(self, settings: Settings, queues: list[str], name: str | None = None):
        from hushdrop.pipeline.process import Processor

        self.url = broker_url(settings)
        self.lease_s = settings.lease_seconds
        self.queues = queues
        self.host = host_name()
        self.name = name or f"{self.host}-{os.getpid()}"
        # The temp audio in its own folder is this worker's alone (the lock says so), so what
        # a killed predecessor of the same name left there can go now.
        settings, self._lock_fd = worker_settings(settings, self.name)
        # one job at a time: this machine's cores go to pieces of it, whatever the coordinator's are
        self.plan = one_process_plan(settings)
        settings = self.settings = self.plan.apply(settings)
        left = remove_temp_audio(settings)
        if left:
            log().info("removed %d temp audio folder(s) a previous worker left in %s", left, settings.tmp_root)
        self.app = make_app(self.url, self.lease_s)
        self.redis = redis_client(self.url)
        self.processor = Processor(settings)
        self.info = load_model(settings, self.processor)
        self._own_models = {
            (options.engine, role, name)
            for options in (profile.transcribe_options() for profile in settings.profiles.values())
            for role, name in (("model", options.model), ("aligner", options.aligner))
        }
        self.current: dict[str, Any] | None = None
        self.jobs_done = 0
        self._profiles: dict[str, str] = {}  # profile name → digest of the options its chain was built with
        self._lock = threading.Lock()
        self.app.task(name=TASK_NAME, bind=True)(self._make_task())

    # -- presence ---------------------------------------------------------------------------

    def announce(self) -> None:
        with self._lock:
            current = self.current
        presence = {
            "name": self.name, "host": self.host, "pid": os.getpid(), "queues": self.queues,
            "job": current["job"] if current else None, "stage": current.get("stage") if current else None,
            "jobs_done": self.jobs_done, "t": time.time(),
            **{k: self.info.get(k) for k in ("engine", "model", "device", "compute_type")},
        }
        self.redis.set(WORKER_KEY.format(self.name), dumps(presence), ex=math.ceil(self.lease_s))

    def serve(self) -> int:
        """Run until SIGTERM/Ctrl-C (Celery's warm shutdown: the running job finishes first)."""
        presence = Beat("presence", self.lease_s / 4, self.announce).start()
        worker = self.app.Worker(
            hostname=f"hushdrop@{self.name}", pool="solo", concurrency=1, queues=self.queues,
            without_mingle=True, without_gossip=True, loglevel="WARNING", quiet=True,
        )
        log().info(
            "hushdrop worker %s ready: %s on %s, queues %s, broker %s",
            self.name, self.info.get("model"), self.info.get("device"), ",".join(self.queues), redact(self.url),
        )
        try:
            worker.start()
        finally:
            presence.stop()
            try:
                self.redis.delete(WORKER_KEY.format(self.name))
            except Exception:  # noqa: BLE001 - the broker is gone; the key expires by itself
                pass
            self.processor.close()
        return worker.exitcode or 0

    # -- one task ---------------------------------------------------------------------------

    def _make_task(self):
        def run_remote_job(task, message: dict[str, Any]) -> dict[str, Any]:
            from celery.exceptions import Ignore

            task_id = task.request.id
            answer = self.run(task_id, message)
            if answer is None:
                raise Ignore()  # stores no result: it must not overwrite the answer of the delivery that ran
            return answer

        run_remote_job.__name__ = "run_remote_job"
        return run_remote_job

    def run(self, task_id: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to one task's ``RunJob`` (as plain data), as plain data; None when this
        delivery must not run."""
        message = from_dict(data)
        if not isinstance(message, RunJob):
            raise TypeError(f"task {task_id} carries a {type(message).__name__}, not a RunJob")
        logger = job_log(message.job_id)
        if not self.redis.exists(TOKEN_KEY.format(task_id)):
            logger.info("task %s is no longer wanted by the coordinator; skipped", task_id)
            return None
        lease = LEASE_KEY.format(task_id)
        state = {
            "host": self.host, "worker": self.name, "pid": os.getpid(), "stage": None, "fraction": 0.0,
            "stage_index": 0, "stage_count": 1, "duration_s": None,
        }
        clock = [RunClock.begin(time.monotonic())]
        limited = self._settings_with_limits(message)
        if not self.redis.set(lease, dumps(state), nx=True, ex=math.ceil(self.lease_s)):
            logger.info("task %s already runs elsewhere (a second delivery); skipped", task_id)
            return None
        with self._lock:
            self.current = {"job": message.job_id, "task": task_id, "stage": None}
        self.announce()

        def renew() -> None:
            self.redis.set(lease, dumps(state), ex=math.ceil(self.lease_s))

        def progress(update: Progress) -> None:
            state.update(
                stage=update.stage, fraction=update.fraction, stage_index=update.stage_index, stage_count=update.stage_count,
            )
            if update.duration_s is not None:
                state["duration_s"] = update.duration_s
            clock[0] = clock[0].advance(update.stage, update.duration_s, time.monotonic())
            with self._lock:
                if self.current:
                    self.current["stage"] = update.stage

        def check_limits() -> None:
            reason = overrun(limited, clock[0], time.monotonic())
            if reason is not None:
                self._stop_overrun(task_id, Failed(
                    message.job_id, clock[0].stage, f"{reason}; worker {self.name} on {self.host} was stopped",
                    Fault.TRANSIENT, message.attempt,
                ))

        renewer = Beat(f"lease {task_id}", self.lease_s / 4, renew).start()
        watchdog = Beat(f"time limits {task_id}", LIMIT_CHECK_SECONDS, check_limits).start()
        try:
            answer = self._run_checked(message, progress)
        finally:
            watchdog.stop()
            renewer.stop()  # the lease is left to expire: the coordinator reads the result first
            with self._lock:
                self.current = None
            self.jobs_done += 1
            self.announce()
        return to_dict(answer)

    def _settings_with_limits(self, message: RunJob) -> Settings:
        """This worker's settings with the time limits the message carries (the coordinator's), or its own."""
        if message.time_limits is None:
            return self.settings
        try:
            return self.settings.model_copy(update={"time_limits": TimeLimits.model_validate(message.time_limits)})
        except (TypeError, ValueError):
            return self.settings

    def _stop_overrun(self, task_id: str, failure: Failed) -> None:
        """The run is past its time limit and may be stuck where no thread can interrupt it (a
        blocking system call, a C library): store its ``Failed`` answer for the coordinator, then
        kill what it started and run this worker afresh in the same process (it never returns)."""
        job_log(failure.job_id).error("%s; this worker starts afresh", failure.message)
        try:
            self.app.backend.store_result(task_id, to_dict(failure), "SUCCESS")
            self.redis.delete(LEASE_KEY.format(task_id), WORKER_KEY.format(self.name))
        except Exception as exc:  # noqa: BLE001 - the broker is away: the coordinator's own limit fails the attempt
            log().error("could not tell the coordinator (%s); its own limit will fail the attempt", exc)
        restart_this_process()

    def _run_checked(self, message: RunJob, progress):
        try:
            path = spool_file(self.settings, message.spool_relative)
        except ValueError as exc:
            return Failed(message.job_id, "worker", str(exc), Fault.RECORDING, message.attempt)
        try:
            actual = sha256_file(path)
        except OSError as exc:
            return Failed(
                message.job_id, "worker",
                f"worker {self.name} cannot read the claimed original at {path} ({exc.strerror}): is the shared spool "
                f"mounted there? Set spool: in the worker's config to where this machine sees it",
                Fault.ENVIRONMENT, message.attempt,
            )
        if message.content_hash and actual != message.content_hash:
            return Failed(
                message.job_id, "worker",
                f"worker {self.name} reads different bytes at {path} than the coordinator claimed: the shared spool "
                f"is not the same folder on both machines, or it is still syncing",
                Fault.ENVIRONMENT, message.attempt,
            )
        document = message.profile_document
        profile = self.settings.profile(message.profile) if document is None else self.plan.apply_profile(profile_from_document(document))
        refused = self.refused_model(profile)
        if refused:
            return Failed(message.job_id, "transcribe", refused, Fault.ENVIRONMENT, message.attempt)
        if document is not None:
            self._use_profile(profile, document)
        return run_job(self.processor, self.settings, message, progress, profile=profile)

    def refused_model(self, profile: Profile) -> str | None:
        """Why this worker will not load the model the task's profile asks for, or None.

        A task comes through the broker, which anyone who reaches Redis can write to, so its
        model is loaded only when it is one of the engine's catalogue models or a model this
        worker's own config names: a task cannot make the worker load a folder of its choosing.
        """
        options = profile.transcribe_options()
        entry = engine_for(options.engine)
        for role, name in (("model", options.model), ("aligner", options.aligner)):
            if name is None or entry.is_catalogue_model(name) or (options.engine, role, name) in self._own_models:
                continue
            return (
                f"worker {self.name} does not load the {options.engine} {role} {name!r} the task names: only "
                f"catalogue models (`hushdrop models`) and models its own config names are loaded. Name the same "
                f"{role} in profiles.{profile.name} of this worker's config.yaml"
            )
        return None

    def _use_profile(self, profile, document: dict[str, Any]) -> None:
        """Rebuild the profile's chain when the coordinator's options for it changed."""
        digest = hashlib.sha256(dumps(document).encode()).hexdigest()
        if self._profiles.get(profile.name) not in (None, digest):
            self.processor.drop_chain(profile.name)
        self._profiles[profile.name] = digest


def serve(settings: Settings, queues: list[str], name: str | None = None) -> int:
    return RemoteWorker(settings, queues, name).serve()
