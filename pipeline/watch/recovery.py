"""Restart after a crash: bring every job and every folder back to a consistent state.

Runs before the watcher and the workers start (and is safe to run at any time no
watcher is running). For each job that was not finished:

- ``seen``: finish the claim if the original reached the spool, else abandon the
  row (the file is still in the inbox and will be seen again).
- ``processing``: if every planned output exists, the commit had finished →
  ``committed``; if only some do, they are removed (a partial set is never left)
  and the job runs again; if none, it runs again. A watcher crash is not the
  job's fault, so the attempt is not counted. A job whose row names a Celery task is
  left for that executor to adopt (it may still run remotely), unless its commit had
  begun: then it is settled the same way, and a cut-short set is removed so that the
  result's commit writes it again under the same names.
- ``committed``: the outputs are safe; retire the original (shred by default).
- ``quarantined``: finish moving the original and writing its note.

Then stray files go: hushdrop's temp files in the outbox and quarantine folders,
private temp audio directories, interrupted copies and empty job folders in the
spool, and probe markers in the inbox.
"""

from __future__ import annotations

import os
from pathlib import Path

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.fsutil import empty_folder
from hushdrop.pipeline.retention import RetentionError
from hushdrop.pipeline.watch.watcher import remove_probe_markers
from hushdrop.pipeline.watch.finish import (
    dispose_of_original, finish_quarantine, output_folder, resolve_interrupted, settle_interrupted_commit,
)
from hushdrop.pipeline.watch.intake import clean_spool_dir, finish_seen
from hushdrop.pipeline.watch.ledger import ACTIVE, Ledger, State
from hushdrop.pipeline.logs import log


def recover(settings: Settings, ledger: Ledger, keep_remote: bool = False) -> dict[str, int]:
    """Bring every unfinished job to a consistent state (see the module docstring).

    ``keep_remote``: leave ``processing`` jobs whose row names a Celery task alone; they may
    still run on a remote worker, and the Celery executor adopts them (docs/scale-out.md).
    """
    counts = {"claims": 0, "rerun": 0, "committed": 0, "retired": 0, "quarantined": 0, "strays": 0}
    for row in ledger.in_state(State.SEEN):
        finish_seen(settings, ledger, row)
        counts["claims"] += 1
    for row in ledger.in_state(State.PROCESSING):
        if keep_remote and row.worker and row.worker.startswith("celery:"):
            # still out on a remote worker: the Celery executor adopts it, unless the result had
            # already come and its commit was under way when this process stopped
            if settle_interrupted_commit(ledger, row).state == State.COMMITTED:
                counts["committed"] += 1
            continue
        row = resolve_interrupted(settings, ledger, row)
        counts["committed" if row.state == State.COMMITTED else "rerun"] += 1
    for row in ledger.in_state(State.COMMITTED):
        try:
            dispose_of_original(settings, ledger, row)
            counts["retired"] += 1
        except (OSError, RetentionError) as exc:  # the outputs are safe; it is tried again next start
            log().error("job %d: could not retire the original %s: %s", row.id, row.spool_path, exc)
    for row in ledger.in_state(State.QUARANTINED):
        if os.path.lexists(row.spool_path) or (
            row.quarantine_path and not Path(f"{row.quarantine_path}.error.txt").exists()
        ):
            try:
                finish_quarantine(row)
                counts["quarantined"] += 1
            except OSError as exc:  # the original stays in the spool; tried again next start
                log().error("job %d: could not finish its quarantine: %s", row.id, exc)
    counts["strays"] = remove_strays(settings, ledger)
    if any(counts.values()):
        log().info("recovery: %s", ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    return counts


def remove_temp_audio(settings: Settings) -> int:
    """Empty ``tmp_root``, the workers' private temp audio folders; call it only when no worker
    is running (at start-up, or after the last one stopped). Returns how many entries went."""
    return empty_folder(settings.tmp_root)


def remove_strays(settings: Settings, ledger: Ledger) -> int:
    removed = 0
    folders = [output_folder(settings, name) for name in settings.profiles]
    if settings.outbox.is_dir():
        folders += [p for p in settings.outbox.iterdir() if p.is_dir() and not p.is_symlink()]
    if settings.quarantine.is_dir():
        folders += [p for p in settings.quarantine.iterdir() if p.is_dir() and not p.is_symlink()]
    for folder in dict.fromkeys(folders):
        if not folder.is_dir() or folder.is_symlink():
            continue  # never clean up inside a folder reached through a link
        for temp in folder.glob(".hushdrop-*.tmp"):
            temp.unlink(missing_ok=True)
            removed += 1
        for partial in folder.glob(".hushdrop-*.partial"):
            partial.unlink(missing_ok=True)
            removed += 1
    removed += remove_temp_audio(settings)
    # spool folders of jobs that are no longer active: leftovers of a shred or an interrupted copy
    active = {row.spool_path.parent for row in ledger.in_state(*ACTIVE)}
    if settings.spool_dir.is_dir():
        for profile_dir in settings.spool_dir.iterdir():
            if not profile_dir.is_dir() or profile_dir.is_symlink():
                continue
            for job_dir in profile_dir.iterdir():
                if job_dir in active or not job_dir.is_dir() or job_dir.is_symlink():
                    continue
                leftovers = [p for p in job_dir.iterdir() if not p.name.startswith(".")]
                if leftovers:
                    log().warning("spool folder %s holds %s and no job claims it; leaving it", job_dir, leftovers)
                    continue
                clean_spool_dir(job_dir)
                removed += 1
    removed += remove_probe_markers(settings.inbox)
    return removed
