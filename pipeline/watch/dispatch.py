"""The coordinator's decisions around a job run, whatever backend runs it.

Before a claimed job is sent to a worker, :func:`prepare_for_run` settles what can be
settled without the chain: a profile that left the config, a spool file that vanished or
is still being written, the content hash, a duplicate of earlier content. While it runs,
:func:`overrun` judges its time limits. After it, :func:`accept_result` /
:func:`accept_failure` / :func:`accept_lost_worker` / :func:`accept_overrun` /
:func:`accept_not_taken` turn what happened into ledger states and files
(``pipeline.watch.finish``); :func:`rerun_stale` and :func:`release_at_shutdown` settle the
runs nobody holds and the runs a shutdown ended.

These functions run in the coordinator only: it alone writes the ledger, the outbox and
the spool. The one dispatch loop (``pipeline.watch.executor``) calls them, whatever backend
moved the :mod:`pipeline.watch.protocol` messages; a backend decides nothing itself.
The first answer for a (job, attempt) wins: an answer for a job that is no longer
``processing``, or for an earlier attempt, is dropped.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace

from hushdrop.pipeline.audio import duration_text
from hushdrop.pipeline.config import Profile, Settings, profile_document
from hushdrop.pipeline.fsutil import sha256_file
from hushdrop.pipeline.logs import job_log
from hushdrop.pipeline.watch.finish import (
    commit_job, dispose_or_log, fail_job, quarantine_job, remove_own_outputs, resolve_interrupted, skip_duplicate,
)
from hushdrop.pipeline.watch.ledger import ACTIVE, JobRow, Ledger, State
from hushdrop.pipeline.watch.protocol import OPENING_STAGE, Failed, Fault, Finished, RunJob, fault_of_os_error

# a claimed original still being written this many settle periods later is set aside
MAX_CHANGES_AFTER_CLAIM = 20
# times a claimed original is found missing from the spool (10 s apart) before the job is abandoned
MAX_MISSING_CHECKS = 3
MISSING_RECHECK_SECONDS = 10.0


@dataclass
class SpoolWatch:
    """What the coordinator remembers between dispatch rounds about claimed spool files (in memory:
    a restart starts these counts afresh, which only delays a decision)."""

    hold: dict[int, float] = field(default_factory=dict)  # job id → not before (monotonic)
    missing: dict[int, int] = field(default_factory=dict)  # job id → times its spool file was missing
    changed: dict[int, int] = field(default_factory=dict)  # job id → times it changed after the claim

    def held(self, job_id: int, now: float | None = None) -> bool:
        """True while the job waits out a hold; a hold that ended is forgotten."""
        if self.hold.get(job_id, 0) > (time.monotonic() if now is None else now):
            return True
        self.hold.pop(job_id, None)
        return False


# ---------------------------------------------------------------------------
# before a run


def prepare_for_run(settings: Settings, ledger: Ledger, row: JobRow, spool: SpoolWatch) -> bool:
    """True when claimed job ``row`` should run now. False when it was settled here (quarantined,
    abandoned, skipped as a duplicate) or must wait (held, waiting for the same content)."""
    profile = settings.profiles.get(row.profile)
    if profile is None:
        quarantine_job(settings, ledger, row, "config", f"profile {row.profile!r} is no longer in the config", Fault.RECORDING)
        return False
    if not spool_file_is_present(ledger, row, spool):
        return False
    if not spool_file_is_unchanged(settings, ledger, row, profile, spool):
        return False
    hashed = record_content_hash(settings, ledger, row)
    if hashed is None:
        return False
    # an API request always gets its own run: its client waits for a record, not an earlier job's outputs
    if profile.duplicates == "skip" and hashed.request_id is None and settle_duplicate(settings, ledger, hashed):
        return False
    return True


def spool_file_is_present(ledger: Ledger, row: JobRow, spool: SpoolWatch) -> bool:
    """False when the claimed original is missing from the spool: held for a recheck, and after
    ``MAX_MISSING_CHECKS`` misses the job is abandoned (something else deleted it)."""
    try:
        os.lstat(row.spool_path)
    except FileNotFoundError:
        missing = spool.missing[row.id] = spool.missing.get(row.id, 0) + 1
        if missing >= MAX_MISSING_CHECKS:
            ledger.transition(
                row.id, State.ABANDONED, expect=State.CLAIMED,
                error=f"the claimed original {row.spool_path} was removed from the spool by something other than hushdrop",
            )
            job_log(row.id).error(
                "the claimed original %s is gone from the spool (deleted outside hushdrop); the job is abandoned",
                row.spool_path,
            )
            spool.missing.pop(row.id, None)
            return False
        job_log(row.id).error(
            "the claimed original %s is missing from the spool; checking again in %.0f s", row.spool_path, MISSING_RECHECK_SECONDS
        )
        spool.hold[row.id] = time.monotonic() + MISSING_RECHECK_SECONDS
        return False
    spool.missing.pop(row.id, None)
    return True


def spool_file_is_unchanged(settings: Settings, ledger: Ledger, row: JobRow, profile: Profile, spool: SpoolWatch) -> bool:
    """False when the spool file's size or mtime differ from the claim's (a writer that paused longer
    than the settle period): the row takes the new size, the job waits a settle period, and after
    ``MAX_CHANGES_AFTER_CLAIM`` changes it is quarantined."""
    st = os.lstat(row.spool_path)
    if (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns):
        return True
    changes = spool.changed[row.id] = spool.changed.get(row.id, 0) + 1
    if changes > MAX_CHANGES_AFTER_CLAIM:
        spool.changed.pop(row.id, None)
        quarantine_job(
            settings, ledger, row, "intake",
            f"it kept changing after it was taken ({changes} times): the program writing it still has it "
            f"open. Let that program finish, then drop the file again", Fault.RECORDING,
        )
        return False
    ledger.update(row.id, expect=State.CLAIMED, size=st.st_size, mtime_ns=st.st_mtime_ns, content_hash=None)
    spool.hold[row.id] = time.monotonic() + profile.settle_seconds
    job_log(row.id).warning("changed after it was claimed; waiting for it to settle")
    return False


def record_content_hash(settings: Settings, ledger: Ledger, row: JobRow) -> JobRow | None:
    """The row with its content hash (hashing the spool file if the row has none); None when the
    file cannot be read, which fails the job by the kind of error."""
    if row.content_hash is not None:
        return row
    try:
        return ledger.update(row.id, expect=State.CLAIMED, content_hash=sha256_file(row.spool_path))
    except OSError as exc:
        # claimed → failed, by the kind of error; a read that fails counts as an attempt, as a
        # run would (an environment fault counts none, as for a run)
        counted = ledger.update(row.id, expect=State.CLAIMED, attempts=row.attempts + 1)
        fail_job(settings, ledger, counted, "hash", f"cannot read the claimed original: {exc.strerror}", fault_of_os_error(exc))
        return None


def settle_duplicate(settings: Settings, ledger: Ledger, row: JobRow) -> bool:
    """True when ``row``'s content was seen before in its profile: it waits while an earlier job
    with that content is queued or running, or — that job done with every format the profile
    writes still on disk (none expired or deleted) — it is committed pointing at them and its
    original disposed of. Only a job asked the same
    (task, language, prompt: an upload's or an API request's choices) counts: a file dropped in
    the folder is never given the English translation an API request asked of the same recording."""
    profile = settings.profile(row.profile)

    def asked(job: JobRow) -> tuple:
        return (job.task or profile.task, job.language or profile.language, job.prompt)

    same = [other for other in ledger.same_content(row) if asked(other) == asked(row)]
    if any(other.id < row.id and other.state in ACTIVE - {State.SEEN} for other in same):
        return True  # the same content is already queued or running: decide when it is done
    wanted = set(profile.outputs)
    for other in reversed(same):
        formats = {p.suffix.lstrip(".") for p in other.outputs}
        if other.state == State.DONE and other.outputs and wanted <= formats and all(p.exists() for p in other.outputs):
            dispose_or_log(settings, ledger, skip_duplicate(ledger, row, other))
            return True
    return False


def run_message(settings: Settings, row: JobRow, *, own_config: bool = False) -> RunJob:
    """What a worker is sent for processing job ``row``. ``own_config``: the worker reads a config
    of its own (a remote one), so the message carries the profile and the time limits too."""
    relative = str(row.spool_path.relative_to(settings.spool_dir))
    message = RunJob(row.id, row.attempts, relative, row.profile, row.language, row.content_hash,
                     task=row.task, prompt=row.prompt)
    if not own_config:
        return message
    return replace(
        message, profile_document=profile_document(settings.profile(row.profile)),
        time_limits=settings.time_limits.model_dump(mode="json"),
    )


# ---------------------------------------------------------------------------
# while a run goes on: its time limits


@dataclass(frozen=True)
class RunClock:
    """One run's times (monotonic seconds): when it began, the stage it is in and since when, and
    the recording's duration once the worker reported it. Each backend keeps one per running job
    and moves it on with the run's progress reports; :func:`overrun` judges it."""

    started_at: float
    stage: str
    stage_started_at: float
    duration_s: float | None = None

    @classmethod
    def begin(cls, now: float) -> "RunClock":
        return cls(now, OPENING_STAGE, now)

    def advance(self, stage: str | None, duration_s: float | None, now: float) -> "RunClock":
        """The clock after a progress report: a new stage starts its own time; a duration, once known, stays."""
        duration = self.duration_s if duration_s is None else duration_s
        if not stage or stage == self.stage:
            return replace(self, duration_s=duration)
        return RunClock(self.started_at, stage, now, duration)


def overrun(settings: Settings, clock: RunClock, now: float) -> str | None:
    """Why the run that ``clock`` times is past its stage's or its whole run's limit (``time_limits``),
    as a sentence naming the stage; None while it is within both.

    Each limit is ``max(floor, factor × duration)``. The duration counts for at most
    ``max_duration_hours`` (a longer recording is refused anyway), and an unknown or
    nonsensical one for nothing: a header that lies about its length buys a stuck run no
    more time than the longest recording hushdrop accepts would get.
    """
    limits = settings.time_limits
    duration = clock.duration_s
    if duration is None or not math.isfinite(duration) or duration < 0:
        duration, recording = 0.0, "the recording's length was not known yet"
    else:
        duration = min(duration, settings.max_duration_hours * 3600)
        recording = f"recording of {duration_text(duration)}"
    stage_limit = limits.stage_seconds(duration)
    if now - clock.stage_started_at > stage_limit:
        return f"stage {clock.stage!r} ran past its {duration_text(stage_limit)} limit ({recording})"
    job_limit = limits.job_seconds(duration)
    if now - clock.started_at > job_limit:
        return f"the job ran past its {duration_text(job_limit)} limit, in stage {clock.stage!r} ({recording})"
    return None


# ---------------------------------------------------------------------------
# after a run


def current_attempt(ledger: Ledger, job_id: int, attempt: int | None) -> JobRow | None:
    """The job's row if an answer for ``attempt`` still counts: it is ``processing`` and (when the
    answer names its attempt) on that attempt. The first answer per (job, attempt) wins."""
    row = ledger.get(job_id)
    if row.state != State.PROCESSING or (attempt is not None and attempt != row.attempts):
        return None
    return row


def accept_result(settings: Settings, ledger: Ledger, result: Finished) -> JobRow | None:
    """Commit a finished job's outputs, then dispose of its original; a commit that fails (disk
    full, permissions) is undone and the job failed by the kind of error. None: the answer was stale."""
    row = current_attempt(ledger, result.job_id, result.attempt)
    if row is None:
        return None
    try:
        row = commit_job(settings, ledger, row, result.job)
    except Exception as exc:  # disk full, permissions: undo what was written, retry later
        job_log(row.id).exception("could not commit the outputs")
        row = ledger.get(row.id)
        if row.state != State.PROCESSING:
            return row
        remove_own_outputs(row)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fault = fault_of_os_error(exc) if isinstance(exc, OSError) else Fault.TRANSIENT
        return fail_job(settings, ledger, row, "outputs", f"cannot write the outputs in {settings.outbox}: {reason}", fault)
    return row


def accept_failure(settings: Settings, ledger: Ledger, failure: Failed) -> JobRow | None:
    """Retry or quarantine a job whose chain failed. None: the answer was stale."""
    row = current_attempt(ledger, failure.job_id, failure.attempt)
    if row is None:
        return None
    return fail_job(settings, ledger, row, failure.stage, failure.message, failure.fault)


def accept_lost_worker(settings: Settings, ledger: Ledger, job_id: int, attempt: int | None, why: str) -> JobRow | None:
    """The worker running ``job_id`` is gone without an answer (``why`` says how: it died, or
    stopped renewing its lease): a transient failure of that attempt, counted, so a file that
    always kills its worker ends in quarantine. None: the job had moved on."""
    row = current_attempt(ledger, job_id, attempt)
    if row is None:
        return None
    return fail_job(settings, ledger, row, row.stage or "worker", why, Fault.TRANSIENT)


def lost_process_words(exit_code: int | None) -> str:
    """Why a local worker process is gone, from its exit code."""
    return f"the worker process died (exit code {exit_code}); out of memory?" if exit_code else "the worker process exited"


def accept_overrun(settings: Settings, ledger: Ledger, job_id: int, attempt: int, stage: str, why: str) -> JobRow | None:
    """A run went past its time limit (:func:`overrun`) and was stopped, or is given up on: a
    transient failure of that attempt naming the stage. None: the job had moved on."""
    return accept_failure(settings, ledger, Failed(job_id, stage, why, Fault.TRANSIENT, attempt))


def accept_not_taken(settings: Settings, ledger: Ledger, job_id: int, attempt: int) -> JobRow | None:
    """No worker took the job (a lost message, no worker for its queue): it goes back to the
    queue as an interruption, not the recording's fault. None: the job had moved on."""
    row = current_attempt(ledger, job_id, attempt)
    if row is None:
        return None
    return resolve_interrupted(settings, ledger, row)


def release_at_shutdown(ledger: Ledger, job_id: int) -> None:
    """The service stops and ended the run of ``job_id``: it runs again on the next start, and
    the attempt does not count."""
    if ledger.broken is not None:
        return
    row = ledger.get(job_id)
    if row.state == State.PROCESSING:
        ledger.release(job_id, count_attempt=False)
        job_log(job_id).info("released at shutdown; it will run again on the next start")


def rerun_stale(settings: Settings, ledger: Ledger, row: JobRow) -> JobRow:
    """A ``processing`` job that no worker holds (a lost message, a crash): committed and its
    original disposed of when its outputs are complete, else run again (the attempt counts)."""
    job_log(row.id).warning("stale claim (no worker holds it)")
    row = resolve_interrupted(settings, ledger, row, count_attempt=True)
    if row.state == State.COMMITTED:
        row = dispose_or_log(settings, ledger, row)
    return row


