"""The durable end of a job (pipeline.watch.finish), in process: commit, dispose, quarantine, retry."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hushdrop.pipeline.watch.finish import (
    MAX_INTERRUPTIONS, commit_job, dispose_of_original, fail_job, quarantine_job, resolve_interrupted,
)
from hushdrop.pipeline.retention import Action, Disposal, retention_words
from hushdrop.pipeline.watch.ledger import State, TransitionError
from hushdrop.pipeline.watch.protocol import Fault
from hushdrop.pipeline.web.views import original_path
from tests.harness import cheap_wav
from tests.watch.conftest import committed, cut_short, make, processing, transcript_job


def test_commit_plans_writes_and_records_the_outputs_then_disposes_of_the_original(settings, ledger):
    row = processing(settings, ledger, "talk.wav")
    folder = settings.outbox / "default"
    folder.mkdir(parents=True)
    (folder / "talk.srt").write_text("someone else's")
    os.symlink(folder / "nowhere", folder / "talk (2).txt")  # a dangling link is a taken name too
    spool = row.spool_path
    row = commit_job(settings, ledger, row, transcript_job())
    assert row.state == State.DONE and row.stage == "done" and row.progress == 1.0
    assert [p.name for p in row.outputs] == [f"talk (3).{f}" for f in settings.profiles["default"].outputs]
    assert all(p.stat().st_size > 0 for p in row.outputs)
    assert (folder / "talk.srt").read_text() == "someone else's"
    assert Disposal.from_column(row.retention) == Disposal(Action.SHREDDED, spool) and not spool.exists()


def test_status_says_what_became_of_the_original_in_words(settings, ledger):
    from hushdrop.pipeline.watch import status

    row = processing(settings, ledger)
    spool = row.spool_path
    commit_job(settings, ledger, row, transcript_job())
    [done] = status.collect(settings)["recent_done"]
    assert done["original"] == f"shredded {spool}"


def test_dispose_of_original_shreds_it_and_is_safe_to_repeat(settings, ledger):
    row = committed(settings, ledger)
    spool = row.spool_path
    done = dispose_of_original(settings, ledger, row)
    assert done.state == State.DONE and Disposal.from_column(done.retention) == Disposal(Action.SHREDDED, spool)
    assert retention_words(done.retention) == f"shredded {spool}"
    assert not spool.exists() and not spool.parent.exists()
    with pytest.raises(TransitionError):  # done once: a second disposal changes nothing
        dispose_of_original(settings, ledger, row)
    assert ledger.get(row.id).retention == done.retention


def test_dispose_after_a_crash_that_already_removed_the_original(settings, ledger):
    row = committed(settings, ledger)
    row.spool_path.unlink()
    done = dispose_of_original(settings, ledger, row)
    assert done.state == State.DONE and Disposal.from_column(done.retention) == Disposal(Action.ALREADY_GONE)
    assert retention_words(done.retention) == "already retired before a restart"


@pytest.fixture
def keeping(tmp_path):
    """Settings whose profile keeps originals (moved to workdir/kept in watch mode), and their ledger."""
    from hushdrop.pipeline.config import parse_config
    from hushdrop.pipeline.watch.ledger import Ledger

    settings = parse_config({"profiles": {"default": {"settle_seconds": 0, "originals": "keep"}}}, tmp_path / "config.yaml")
    ledger = Ledger(settings.ledger_path)
    yield settings, ledger
    ledger.close()


def test_keep_in_watch_mode_moves_the_original_out_of_the_inbox(keeping):
    settings, ledger = keeping
    row = commit_job(settings, ledger, processing(settings, ledger), transcript_job())
    kept = settings.workdir / "kept" / "default" / "talk.wav"
    assert row.state == State.DONE and kept.read_bytes() == cheap_wav(1)
    assert Disposal.from_column(row.retention) == Disposal(Action.MOVED, kept)
    assert not ledger.get(row.id).spool_path.exists()


def test_a_move_interrupted_by_a_restart_records_the_moved_file_not_its_folder(keeping):
    settings, ledger = keeping
    row = committed(settings, ledger)
    kept = settings.workdir / "kept" / "default" / "talk.wav"
    kept.parent.mkdir(parents=True)
    os.link(row.spool_path, kept)  # the move had linked it into place when the service stopped
    done = dispose_of_original(settings, ledger, row)
    assert original_path(settings, done) == kept  # the page plays it
    assert Disposal.from_column(done.retention) == Disposal(Action.MOVED, kept)
    assert not row.spool_path.exists() and kept.read_bytes() == cheap_wav(1)
    assert list(kept.parent.iterdir()) == [kept]  # moved once


def test_a_move_resumed_after_a_restart_goes_to_the_target_recorded_before_it(keeping):
    settings, ledger = keeping
    row = committed(settings, ledger)
    kept = settings.workdir / "kept" / "default"
    kept.mkdir(parents=True)
    (kept / "talk.wav").write_bytes(b"an earlier recording of the same name")
    target = kept / "talk (2).wav"
    ledger.update(row.id, retention=Disposal(Action.MOVED, target).to_column())  # recorded, then the copy began
    target.write_bytes(row.spool_path.read_bytes())  # a copy across filesystems, done before the stop
    done = dispose_of_original(settings, ledger, ledger.get(row.id))
    assert Disposal.from_column(done.retention) == Disposal(Action.MOVED, target) and original_path(settings, done) == target
    assert sorted(p.name for p in kept.iterdir()) == ["talk (2).wav", "talk.wav"]  # no third copy
    assert not row.spool_path.exists()


def test_sentences_in_rows_written_before_disposals_were_data_still_read():
    assert Disposal.from_column("moved to /srv/kept/a (2).wav") == Disposal(Action.MOVED, Path("/srv/kept/a (2).wav"))
    assert Disposal.from_column("shredded /var/spool/x/a.wav") == Disposal(Action.SHREDDED, Path("/var/spool/x/a.wav"))
    assert Disposal.from_column("left alone: /s/a.wav is not a regular file") == Disposal(Action.LEFT_ALONE, Path("/s/a.wav"))
    assert Disposal.from_column("already retired before a restart") == Disposal(Action.ALREADY_GONE)
    # what the page and quarantine's limit did to a quarantined original, as they wrote it then
    assert Disposal.from_column("deleted from the web page") == Disposal(Action.SHREDDED, None, "deleted from the web page")
    assert Disposal.from_column("removed from quarantine on 2026-11-02 (quarantine_max_days)").action == Action.SHREDDED
    assert retention_words("deleted from the web page") == "shredded (deleted from the web page)"


def test_quarantine_keeps_the_bytes_beside_a_note_under_a_free_name(settings, ledger):
    row = processing(settings, ledger, "bad.wav")
    folder = settings.quarantine / "default"
    folder.mkdir(parents=True)
    (folder / "bad.wav.error.txt").write_text("an older note")  # the name is taken by its note alone
    row = quarantine_job(settings, ledger, row, "open", "not audio", Fault.RECORDING)
    assert row.state == State.QUARANTINED and row.quarantine_path == folder / "bad (2).wav"
    assert row.quarantine_path.read_bytes() == cheap_wav(1)
    note = Path(f"{row.quarantine_path}.error.txt").read_text()
    assert f"job:      {row.id}" in note and "stage:    open" in note and "Trying again will not help" in note
    assert (folder / "bad.wav.error.txt").read_text() == "an older note"


def test_a_transient_failure_backs_off_exponentially_then_quarantines(tmp_path):
    from hushdrop.pipeline.watch.ledger import Ledger

    settings = make(tmp_path, max_attempts=3, retry_backoff_seconds=30)
    ledger = Ledger(settings.ledger_path)
    try:
        row = processing(settings, ledger)
        delays = []
        for _ in range(3):
            before = time.time()
            row = fail_job(settings, ledger, row, "worker", "crashed", Fault.TRANSIENT)
            if row.state == State.QUARANTINED:
                break
            assert row.state == State.FAILED
            delays.append(round(row.next_attempt_at - before))
            ledger.transition(row.id, State.CLAIMED, expect=State.FAILED)
            row = ledger.start(row.id, "worker-1:1")
        assert delays == [30, 60] and row.state == State.QUARANTINED and row.attempts == 3
    finally:
        ledger.close()


def test_an_environment_fault_backs_off_to_a_cap_without_using_attempts(settings, ledger):
    row = processing(settings, ledger)
    row = ledger.update(row.id, env_failures=9)
    before = time.time()
    row = fail_job(settings, ledger, row, "decode", "No space left on device", Fault.ENVIRONMENT)
    assert row.state == State.FAILED and row.attempts == 0 and row.env_failures == 10
    assert round(row.next_attempt_at - before) == 600  # capped at 10 minutes


@pytest.mark.parametrize("present", [0, 2, 5])
def test_an_interrupted_job_is_rolled_forward_or_back_by_its_planned_outputs(settings, ledger, present):
    row = processing(settings, ledger)
    planned = cut_short(settings, ledger, row, linked=present)
    after = resolve_interrupted(settings, ledger, ledger.get(row.id))
    if present == len(planned):
        assert after.state == State.COMMITTED and after.outputs == planned
    else:
        assert after.state == State.CLAIMED and after.outputs == [] and after.interruptions == 1
        assert after.attempts == 0  # a restart is not the recording's fault
        assert not any(p.exists() for p in planned)


def test_an_interrupted_commit_removes_only_its_own_files_never_another_writers_under_a_planned_name(settings, ledger):
    """Another writer's file under a planned name (it appeared between planning and linking, or
    replaced one of ours) is not this job's: it is neither counted as a written output nor removed."""
    row = processing(settings, ledger)
    planned = cut_short(settings, ledger, row, linked=2)
    theirs = planned[3]
    theirs.write_text("someone else's notes")
    after = resolve_interrupted(settings, ledger, ledger.get(row.id))
    assert after.state == State.CLAIMED and after.outputs == []
    assert not planned[0].exists() and not planned[1].exists()
    assert theirs.read_text() == "someone else's notes"

    whole = processing(settings, ledger, "whole.wav", seed=2)
    written = cut_short(settings, ledger, whole, linked=5)
    replacement = written[0].with_name("their-draft")
    replacement.write_text("replaced by another writer")
    os.replace(replacement, written[0])  # as an editor saves: every name taken, one not by this job
    after = resolve_interrupted(settings, ledger, ledger.get(whole.id))
    assert after.state == State.CLAIMED  # not marked committed on someone else's file
    assert written[0].read_text() == "replaced by another writer" and not any(p.exists() for p in written[1:])


def test_a_job_interrupted_too_often_or_losing_every_worker_is_set_aside(settings, ledger):
    row = processing(settings, ledger, "a.wav", seed=1)
    row = ledger.update(row.id, interruptions=MAX_INTERRUPTIONS - 1)
    assert resolve_interrupted(settings, ledger, row).state == State.QUARANTINED
    lost = processing(settings, ledger, "b.wav", seed=2)
    lost = ledger.update(lost.id, attempts=settings.max_attempts)
    after = resolve_interrupted(settings, ledger, lost, count_attempt=True)
    assert after.state == State.QUARANTINED and "lost during every attempt" in after.error
