"""The durable end of a job: commit outputs, dispose of the original, or quarantine it.

Each step writes the ledger *before* it changes files in a way that cannot be
undone, so recovery after a crash can roll it forward (or back) from the row:

- commit (:func:`commit_job`, four steps down): the planned output paths go into the row
  first (``plan_outputs``), then the files are written (temp name, fsync), their (device,
  inode) recorded with the names they are about to take, then linked (fsync dir), then
  ``committed``, then the original is disposed of. A restart that finds ``processing`` with
  a planned set looks at the disk: every file there and the job's own → committed; otherwise
  its own are removed (never a file another writer put under a planned name) and the job
  runs again.
- dispose of the original: only from ``committed``; shred / delete / move the spool copy
  (the profile's ``originals``; a move's target is recorded in the row first), then ``done``
  with what was done as data (``retention``: a :class:`~pipeline.retention.Disposal`).
  Repeating it after a crash is harmless (the outputs are already safe).
- quarantine: the row becomes ``quarantined`` with its target path, then the
  original moves there and gets its ``.error.txt``; recovery finishes the move.

A failure is one of three kinds, and only the recording's own fault is blamed on it:

- ``recording``: the file cannot be transcribed as it is → quarantined at once.
- ``transient``: something went wrong that may not happen again (a worker crash) →
  retried with backoff, quarantined after ``max_attempts``.
- ``environment``: the machine is at fault (disk full, permissions, a broken tool) →
  retried with backoff capped at 10 minutes, loudly, without using up attempts; only
  after ``environment_retry_hours`` is the original set aside in quarantine, with a
  note that says the recording itself is probably fine.

These functions run in the watcher process only; workers never touch the outbox,
the spool or the ledger.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from hushdrop.pipeline.config import OriginalsPolicy, Profile, Settings
from hushdrop.pipeline.fsutil import free_name, identity_of, move_file
from hushdrop.pipeline.names import display_name, safe_name
from hushdrop.pipeline.watch.intake import clean_spool_dir, profile_folder, write_error_note
from hushdrop.pipeline.job import Job
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State
from hushdrop.pipeline.watch.protocol import Fault
from hushdrop.pipeline import notify
from hushdrop.pipeline.logs import job_log
from hushdrop.pipeline.outputs import plan_outputs, write_outputs
from hushdrop.pipeline.retention import Action, Disposal, RetentionError, apply_policy, move_target

# interruptions (watcher restarts mid-job) before a job is set aside: a file that
# takes the whole service down every time must not do so forever
MAX_INTERRUPTIONS = 10


def resolve_interrupted(settings: Settings, ledger: Ledger, row: JobRow, count_attempt: bool = False) -> JobRow:
    """A ``processing`` job whose worker is gone: committed if its planned outputs are all
    on disk, else back to ``claimed`` with any partial set removed.

    A watcher restart is not the job's fault and uses up no attempt (``count_attempt`` is
    for a worker lost while the watcher ran); still, after ``MAX_INTERRUPTIONS`` the job
    is quarantined, so no file can keep a service in a restart loop.
    """
    logger = job_log(row.id)
    row = settle_interrupted_commit(ledger, row)
    if row.state == State.COMMITTED:
        return row
    if count_attempt and row.attempts >= settings.max_attempts:
        return quarantine_job(settings, ledger, row, row.stage or "worker", "the worker was lost during every attempt", Fault.TRANSIENT)
    if row.interruptions + 1 >= MAX_INTERRUPTIONS:
        return quarantine_job(
            settings, ledger, row, row.stage or "worker",
            f"hushdrop was stopped or crashed while working on it {row.interruptions + 1} times", Fault.TRANSIENT,
        )
    logger.info("it will run again")
    return ledger.release(row.id, count_attempt=count_attempt, interruptions=row.interruptions + (not count_attempt))


def own_outputs(row: JobRow) -> list[Path]:
    """The planned outputs of ``row`` that are on disk and are the very files its commit wrote:
    their (device, inode) is one recorded before they took their names (``output_ids``). A file
    another writer put under a planned name is not among them, nor is any file of a row that
    recorded no identities (its commit never got as far as linking)."""
    ours = set(row.output_ids)
    own = []
    for path in row.outputs:
        try:
            st = os.lstat(path)
        except OSError:  # not there, or its folder is not a folder: nothing of ours
            continue
        if stat.S_ISREG(st.st_mode) and identity_of(st) in ours:
            own.append(path)
    return own


def remove_own_outputs(row: JobRow) -> None:
    """Remove the outputs an interrupted or failed commit of ``row`` left (:func:`own_outputs`);
    a file another writer put under a planned name is left alone, and said so."""
    logger = job_log(row.id)
    own = own_outputs(row)
    for path in row.outputs:
        if path in own:
            try:
                path.unlink()
                logger.info("removed %s, part of an interrupted commit", path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.error("cannot remove the partial output %s: %s", path, exc.strerror)
        elif os.path.lexists(path):
            logger.warning("left %s alone: another writer's file took that name, not this job's output", path)


def settle_interrupted_commit(ledger: Ledger, row: JobRow) -> JobRow:
    """A ``processing`` job whose commit may have been cut short (its row lists planned outputs):
    every planned file on disk and this job's own (:func:`own_outputs`) → ``committed``; otherwise
    its own files are removed and the plan is cleared, so the job's next commit writes its set
    under the same names rather than beside the remains as "name (2)". A row with no plan is
    returned as it is."""
    if not row.outputs:
        return row
    if len(own_outputs(row)) == len(row.outputs):
        job_log(row.id).info("its outputs were complete; marking committed")
        return ledger.transition(row.id, State.COMMITTED, expect=State.PROCESSING, stage="committed", progress=1.0, worker=None)
    remove_own_outputs(row)
    ledger.plan_outputs(row.id, [])
    return ledger.get(row.id)


def output_folder(settings: Settings, profile_name: str) -> Path:
    return settings.outbox / profile_name


def commit_job(settings: Settings, ledger: Ledger, row: JobRow, job: Job) -> JobRow:
    """processing → committed → done, one step down after another: plan the output names (into
    the row before anything is written), write the outputs, record them, dispose of the original.

    Writing raises (disk full, permissions: the caller removes what the row lists and fails the
    job); disposing does not (:func:`dispose_or_log`: the outputs are safe, a restart tries again).
    """
    profile = settings.profile(row.profile)
    job.received_at = row.created_at  # when the settled file was taken, not when a worker got it
    if row.request_id is not None:
        ledger.results.keep(row.id, job.to_record())  # for the API request waiting for it
    formats = profile.outputs if row.write_outputs else []
    plan = plan_outputs(
        job, output_folder(settings, profile.name), formats, name=row.name, subtitle_names=profile.subtitle_names,
    )
    ledger.plan_outputs(row.id, plan.paths)
    written = write_outputs(
        job, plan, name=row.name, mode=settings.output_mode_bits, group=settings.output_group,
        before_link=lambda paths, identities: ledger.plan_outputs(row.id, paths, identities),
    )
    row = ledger.transition(row.id, State.COMMITTED, expect=State.PROCESSING, outputs=written, stage="committed", progress=1.0)
    job_log(row.id).info("outputs committed: %s", ", ".join(p.name for p in written) or "none (asked for the record only)")
    notify.job_done(settings, row, job)  # queued for the sender thread: it cannot delay or fail the job
    return dispose_or_log(settings, ledger, row)


def skip_duplicate(ledger: Ledger, row: JobRow, original: JobRow) -> JobRow:
    """claimed → committed, pointing at an earlier job's outputs for the same content."""
    job_log(row.id).info(
        "same content as job %d (%s); outputs already exist: %s",
        original.id, original.name, ", ".join(str(p) for p in original.outputs),
    )
    return ledger.transition(
        row.id, State.COMMITTED, expect=State.CLAIMED, outputs=original.outputs, duplicate_of=original.id,
        stage="duplicate", progress=1.0,
    )


def retention_policy(settings: Settings, profile: Profile) -> OriginalsPolicy:
    if profile.originals.action == "keep":
        # watch mode cannot leave a kept original in the inbox (it would be taken again)
        return OriginalsPolicy(action="move", move_to=settings.workdir / "kept" / profile.name)
    return profile.originals


def dispose_of_original(settings: Settings, ledger: Ledger, row: JobRow) -> JobRow:
    """committed → done: apply the profile's originals policy to the spool copy; the row keeps
    what was done (a :class:`~pipeline.retention.Disposal`). A move's target goes into the row
    before the file moves, so a restart finishes that very move. Safe to repeat."""
    profile = settings.profiles.get(row.profile)
    policy = retention_policy(settings, profile) if profile else OriginalsPolicy(action="move", move_to=settings.workdir / "kept" / row.profile)
    path = row.spool_path
    planned = Disposal.from_column(row.retention)
    planned_move = planned.target if planned is not None and planned.action == Action.MOVED else None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is None:  # retired before a restart: by the recorded move, or by another policy
        done = Disposal(Action.MOVED, planned_move) if planned_move else Disposal(Action.ALREADY_GONE)
    elif not stat.S_ISREG(st.st_mode):
        done = Disposal(Action.LEFT_ALONE, path)
    elif policy.action == "move":
        target = planned_move or linked_by_an_earlier_move(policy, st) or move_target(path, policy)
        if target != planned_move:
            ledger.update(row.id, expect=State.COMMITTED, retention=Disposal(Action.MOVED, target).to_column())
        done = apply_policy(path, policy, expect=row.identity, target=target)
    else:
        done = apply_policy(path, policy, expect=row.identity)
    row = ledger.transition(row.id, State.DONE, expect=State.COMMITTED, retention=done.to_column(), stage="done")
    clean_spool_dir(path.parent)
    job_log(row.id).info("done: original %s", done.sentence())
    return row


def linked_by_an_earlier_move(policy: OriginalsPolicy, st: os.stat_result) -> Path | None:
    """The name in the move's folder that the spool copy ``st`` already has: a move interrupted
    after linking it there, by a hushdrop that did not record the target first."""
    if st.st_nlink < 2 or policy.move_to is None:
        return None
    try:
        with os.scandir(policy.move_to) as entries:
            for entry in entries:
                if entry.inode() == st.st_ino and entry.stat(follow_symlinks=False).st_dev == st.st_dev:
                    return Path(entry.path)
    except OSError:
        return None
    return None


def dispose_or_log(settings: Settings, ledger: Ledger, row: JobRow) -> JobRow:
    """Dispose of a committed job's original; if that fails the outputs are safe and the next
    start tries again, so it is logged, not raised."""
    try:
        return dispose_of_original(settings, ledger, row)
    except (OSError, RetentionError) as exc:
        job_log(row.id).error("could not dispose of the original: %s", exc)
        return row


def inbox_folder_words(settings: Settings, profile: str) -> str:
    """A profile's inbox folder as a note names it: relative to the inbox, never an absolute path
    (notes are shown on the web page, to whoever may log in)."""
    relative = os.path.relpath(profile_folder(settings, profile), settings.inbox)
    return "the inbox" if relative == "." else f"the inbox folder {relative}/"


def without_own_paths(text: str, settings: Settings) -> str:
    """``text`` with hushdrop's own folders (spool, quarantine, workdir, inbox, outbox) named by
    their role instead of their absolute path: an error message often names the spool copy."""
    folders = {
        settings.spool_dir: "<spool>", settings.quarantine: "<quarantine>", settings.workdir: "<workdir>",
        settings.inbox: "<inbox>", settings.outbox: "<outbox>",
    }
    for folder, role in list(folders.items()):
        folders.setdefault(Path(os.path.realpath(folder)), role)
    for folder, role in sorted(folders.items(), key=lambda item: -len(str(item[0]))):
        if folder.is_absolute() and str(folder) != "/":
            text = text.replace(str(folder), role)
    return text


def error_note(row: JobRow, stage: str, message: str, attempts: int, fault: Fault, settings: Settings) -> str:
    folder = inbox_folder_words(settings, row.profile)
    if fault == Fault.ENVIRONMENT:
        advice = (
            f"The recording itself is probably fine: the machine kept failing for {settings.environment_retry_hours:g} h\n"
            f"(disk full, a folder without permission, a broken tool). Fix that (see `hushdrop doctor`),\n"
            f"then move the file back into {folder}."
        )
    elif fault == Fault.TRANSIENT:
        advice = (
            f"It failed {attempts} time(s). This may be a passing problem (disk full, out of memory):\n"
            f"check `hushdrop status` and the log lines with job={row.id}, then move the file back into\n"
            f"{folder} to try again."
        )
    else:
        advice = (
            "Trying again will not help with the file as it is. If it should be a recording, check that\n"
            "it plays, or convert it (e.g. `ffmpeg -i INPUT -vn OUTPUT.wav`), then drop it into\n"
            f"{folder} again."
        )
    return (
        f"hushdrop could not transcribe {display_name(row.name)}\n\n"
        f"job:      {row.id}\n"
        f"profile:  {row.profile}\n"
        f"stage:    {stage}\n"
        f"reason:   {without_own_paths(message, settings)}\n"
        f"attempts: {attempts}\n\n"
        f"The recording beside this note is byte-for-byte what was dropped. {kept_for(settings)}\n\n{advice}\n"
    )


def kept_for(settings: Settings) -> str:
    """How long quarantine keeps a recording (``quarantine_max_days``, ``quarantine_max_gb``)."""
    limits = []
    if settings.quarantine_max_days is not None:
        limits.append(f"for {settings.quarantine_max_days:g} days")
    if settings.quarantine_max_gb is not None:
        limits.append(f"while quarantine holds less than {settings.quarantine_max_gb:g} GB (the oldest go first)")
    if not limits:
        return "hushdrop keeps it until someone removes it."
    return "hushdrop keeps it " + " and ".join(limits) + ", then shreds it."


def quarantine_job(
    settings: Settings, ledger: Ledger, row: JobRow, stage: str, message: str, fault: Fault
) -> JobRow:
    """→ quarantined: record where the original goes, then move it there beside its ``.error.txt``."""
    folder = settings.quarantine / row.profile
    folder.mkdir(parents=True, exist_ok=True)
    target = free_name(folder, safe_name(row.name))
    note = error_note(row, stage, message, row.attempts, fault, settings)
    row = ledger.transition(
        row.id, State.QUARANTINED, expect=(State.CLAIMED, State.PROCESSING, State.FAILED), quarantine_path=target,
        error_stage=stage, error=message, worker=None, outputs=[],
    )
    finish_quarantine(row, note)
    job_log(row.id).warning("quarantined at %s: %s: %s", target, stage, message)
    notify.job_quarantined(settings, row, stage, message)
    return row


def finish_quarantine(row: JobRow, note: str | None = None) -> None:
    """Move the original into quarantine and write its note; safe to repeat after a crash."""
    assert row.quarantine_path is not None
    move_file(row.spool_path, row.quarantine_path)
    note_path = row.quarantine_path.with_name(f"{row.quarantine_path.name}.error.txt")
    if note is not None or not note_path.exists():
        write_error_note(
            row.quarantine_path,
            note or f"hushdrop could not transcribe {display_name(row.name)}\n\nstage:  {row.error_stage}\nreason: {row.error}\n",
        )
    clean_spool_dir(row.spool_path.parent)


def schedule_retry(settings: Settings, ledger: Ledger, row: JobRow, stage: str, message: str, fault: Fault) -> JobRow:
    now = time.time()
    if fault == Fault.ENVIRONMENT:
        failures = row.env_failures + 1
        delay = min(600.0, max(1.0, settings.retry_backoff_seconds) * (2 ** (failures - 1)))
        extra = {"env_failures": failures, "env_since": row.env_since or now, "attempts": max(0, row.attempts - 1)}
    else:
        delay = settings.retry_backoff_seconds * (2 ** max(0, row.attempts - 1))
        extra = {}
    row = ledger.transition(
        row.id, State.FAILED, expect=(State.PROCESSING, State.CLAIMED), error_stage=stage, error=message, worker=None,
        next_attempt_at=now + delay, outputs=[], **extra,
    )
    logger = job_log(row.id)
    if fault == Fault.ENVIRONMENT and row.env_failures == 1:
        notify.job_waiting(settings, row, stage, message)  # once, when the job starts waiting
    if fault == Fault.ENVIRONMENT:
        logger.error(
            "environment problem in %s: %s — the recording is not blamed; trying again in %.0f s "
            "(failure %d; it is set aside after %g h)", stage, message, delay, row.env_failures, settings.environment_retry_hours,
        )
    else:
        logger.warning(
            "attempt %d of %d failed in %s: %s; next try in %.0f s", row.attempts, settings.max_attempts, stage, message, delay
        )
    return row


def fail_job(settings: Settings, ledger: Ledger, row: JobRow, stage: str, message: str, fault: Fault) -> JobRow:
    """Retry or quarantine, by the kind of fault (see the module docstring)."""
    if fault == Fault.ENVIRONMENT:
        since = row.env_since or time.time()
        if time.time() - since < settings.environment_retry_hours * 3600:
            return schedule_retry(settings, ledger, row, stage, message, fault)
    elif fault == Fault.TRANSIENT and row.attempts < settings.max_attempts:
        return schedule_retry(settings, ledger, row, stage, message, fault)
    return quarantine_job(settings, ledger, row, stage, message, fault)
