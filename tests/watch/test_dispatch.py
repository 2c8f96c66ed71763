"""The coordinator's decisions before and after a run (pipeline.watch.dispatch), in process."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hushdrop.pipeline.retention import Action, Disposal
from hushdrop.pipeline.watch.dispatch import (
    MAX_CHANGES_AFTER_CLAIM, MAX_MISSING_CHECKS, SpoolWatch, accept_failure, accept_lost_worker, accept_result,
    lost_process_words, prepare_for_run, run_message,
)
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.watch.protocol import Failed, Fault, Finished
from tests.harness import cheap_wav, sha
from tests.watch.conftest import claimed, make, processing, transcript_job


# -- before a run -----------------------------------------------------------------------------


def test_a_plain_claimed_job_is_ready_and_its_message_names_attempt_and_hash(settings, ledger):
    row = claimed(settings, ledger)
    assert prepare_for_run(settings, ledger, row, SpoolWatch()) is True
    assert ledger.get(row.id).state == State.CLAIMED  # preparing changes nothing for a plain job
    started = ledger.start(row.id, "worker-1:1")
    message = run_message(settings, started)
    assert (message.job_id, message.attempt, message.profile) == (row.id, 1, "default")
    assert settings.spool_dir / message.spool_relative == row.spool_path and message.content_hash == sha(cheap_wav(1))
    assert message.profile_document is None and message.time_limits is None  # a local worker shares this config


def test_a_message_for_a_worker_with_its_own_config_carries_the_profile_and_the_time_limits(settings, ledger):
    from hushdrop.pipeline.config import profile_from_document

    started = ledger.start(claimed(settings, ledger).id, "celery:t")
    message = run_message(settings, started, own_config=True)
    assert not Path(message.spool_relative).is_absolute()  # each worker finds it in its own view of the spool
    assert profile_from_document(message.profile_document) == settings.profile("default")
    assert message.time_limits == settings.time_limits.model_dump(mode="json")


def test_a_job_whose_profile_left_the_config_is_quarantined(tmp_path):
    settings = make(tmp_path)
    ledger = Ledger(settings.ledger_path)
    try:
        row = claimed(settings, ledger, profile="again")
        del settings.profiles["again"]
        assert prepare_for_run(settings, ledger, row, SpoolWatch()) is False
        row = ledger.get(row.id)
        assert row.state == State.QUARANTINED and row.error_stage == "config"
        assert row.quarantine_path.read_bytes() == cheap_wav(1)
    finally:
        ledger.close()


def test_a_missing_spool_file_is_held_then_the_job_abandoned(settings, ledger):
    row = claimed(settings, ledger)
    row.spool_path.unlink()
    spool = SpoolWatch()
    for check in range(1, MAX_MISSING_CHECKS):
        assert prepare_for_run(settings, ledger, ledger.get(row.id), spool) is False
        assert spool.held(row.id) and spool.missing[row.id] == check
        assert ledger.get(row.id).state == State.CLAIMED
        spool.hold.clear()
    assert prepare_for_run(settings, ledger, ledger.get(row.id), spool) is False
    assert ledger.get(row.id).state == State.ABANDONED and row.id not in spool.missing


def test_a_spool_file_that_changed_after_its_claim_waits_with_the_new_size(settings, ledger):
    row = claimed(settings, ledger)
    with open(row.spool_path, "ab") as writer:
        writer.write(b"\0" * 10)
    spool = SpoolWatch()
    assert prepare_for_run(settings, ledger, row, spool) is False
    after = ledger.get(row.id)
    assert after.state == State.CLAIMED and after.size == row.size + 10 and after.content_hash is None
    assert spool.changed[row.id] == 1 and row.id in spool.hold
    # settled now: the next round hashes the new content and runs it
    spool.hold.clear()
    assert prepare_for_run(settings, ledger, after, spool) is True
    assert ledger.get(row.id).content_hash == sha(row.spool_path.read_bytes())


def test_a_spool_file_that_never_stops_changing_is_quarantined(settings, ledger):
    row = claimed(settings, ledger)
    spool = SpoolWatch(changed={row.id: MAX_CHANGES_AFTER_CLAIM})
    with open(row.spool_path, "ab") as writer:
        writer.write(b"\0")
    assert prepare_for_run(settings, ledger, row, spool) is False
    assert ledger.get(row.id).state == State.QUARANTINED and "kept changing" in ledger.get(row.id).error


def test_a_duplicate_of_a_done_job_is_committed_to_its_outputs_and_its_original_disposed_of(settings, ledger):
    first = processing(settings, ledger, "first.wav", seed=5)
    done = accept_result(settings, ledger, Finished(first.id, transcript_job(), first.attempts))
    assert done.state == State.DONE
    second = claimed(settings, ledger, "second.wav", seed=5)
    assert prepare_for_run(settings, ledger, second, SpoolWatch()) is False
    row = ledger.get(second.id)
    assert row.state == State.DONE and row.duplicate_of == first.id and row.outputs == done.outputs
    assert not second.spool_path.exists()


def test_a_recording_whose_earlier_transcripts_are_partly_gone_is_transcribed_again(settings, ledger):
    """Outputs expired or deleted by hand are taken off their job (``forget_outputs``); what is left
    is no longer the profile's whole set, so the same content dropped again is run, not pointed
    at an incomplete set."""
    first = processing(settings, ledger, "first.wav", seed=7)
    done = accept_result(settings, ledger, Finished(first.id, transcript_job(), first.attempts))
    json_output = next(p for p in done.outputs if p.suffix == ".json")
    json_output.unlink()
    ledger.forget_outputs({json_output: {first.id}})
    second = claimed(settings, ledger, "second.wav", seed=7)
    assert prepare_for_run(settings, ledger, second, SpoolWatch()) is not False
    assert ledger.get(second.id).state == State.CLAIMED and second.spool_path.exists()


def test_a_duplicate_waits_while_the_same_content_is_still_queued(settings, ledger):
    first = claimed(settings, ledger, "first.wav", seed=6)
    second = claimed(settings, ledger, "second.wav", seed=6)
    assert prepare_for_run(settings, ledger, second, SpoolWatch()) is False
    assert ledger.get(second.id).state == State.CLAIMED and ledger.get(first.id).state == State.CLAIMED


def test_reprocess_runs_the_same_content_again(settings, ledger):
    first = processing(settings, ledger, "first.wav", seed=7, profile="again")
    accept_result(settings, ledger, Finished(first.id, transcript_job(), first.attempts))
    second = claimed(settings, ledger, "second.wav", seed=7, profile="again")
    assert prepare_for_run(settings, ledger, second, SpoolWatch()) is True


def test_an_unreadable_spool_file_fails_the_job_as_an_environment_fault(settings, ledger, monkeypatch):
    row = claimed(settings, ledger)
    row = ledger.update(row.id, content_hash=None)
    os.chmod(row.spool_path, 0)
    if os.geteuid() == 0:  # root reads a mode-000 file: make the read fail as it does for anyone else
        import errno

        from hushdrop.pipeline.watch import dispatch

        def refused(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

        monkeypatch.setattr(dispatch, "sha256_file", refused)
    assert prepare_for_run(settings, ledger, row, SpoolWatch()) is False
    after = ledger.get(row.id)
    assert after.state == State.FAILED and after.error_stage == "hash" and after.env_failures == 1
    # straight from claimed: it never ran on a worker, and an environment fault counts no attempt
    assert after.started_at is None and after.worker is None and after.attempts == 0


def test_an_unreadable_spool_file_with_a_transient_error_counts_an_attempt_without_running(settings, ledger, monkeypatch):
    import errno

    from hushdrop.pipeline.watch import dispatch

    def refused(path):
        raise OSError(errno.ESTALE, "Stale file handle", str(path))

    monkeypatch.setattr(dispatch, "sha256_file", refused)
    row = ledger.update(claimed(settings, ledger).id, content_hash=None)
    for attempt in range(1, settings.max_attempts + 1):
        assert prepare_for_run(settings, ledger, row, SpoolWatch()) is False
        row = ledger.get(row.id)
        assert row.started_at is None and row.attempts == attempt, row
        if row.state == State.FAILED:
            row = ledger.transition(row.id, State.CLAIMED, expect=State.FAILED)  # what requeue_due_retries does
    assert row.state == State.QUARANTINED and row.error_stage == "hash" and "Stale file handle" in row.error


# -- after a run ----------------------------------------------------------------------------------


def test_a_result_is_committed_under_the_dropped_name_and_the_original_shredded(settings, ledger):
    row = processing(settings, ledger, "Team call.wav")
    job = transcript_job(str(row.spool_path))
    final = accept_result(settings, ledger, Finished(row.id, job, row.attempts))
    assert final.state == State.DONE and Disposal.from_column(final.retention) == Disposal(Action.SHREDDED, row.spool_path)
    assert [p.name for p in final.outputs] == [f"Team call.{f}" for f in settings.profiles["default"].outputs]
    record = json.loads(next(p for p in final.outputs if p.suffix == ".json").read_text())
    assert record["source"]["name"] == "Team call.wav"
    assert job.source == row.spool_path  # the worker's job is not rewritten to steer naming
    assert not row.spool_path.exists()


def test_only_the_first_result_for_a_job_and_attempt_counts(settings, ledger):
    row = processing(settings, ledger)
    assert accept_result(settings, ledger, Finished(row.id, transcript_job(), row.attempts - 1)) is None  # an older attempt
    assert ledger.get(row.id).state == State.PROCESSING
    first = accept_result(settings, ledger, Finished(row.id, transcript_job(), row.attempts))
    assert first.state == State.DONE
    assert accept_result(settings, ledger, Finished(row.id, transcript_job(), row.attempts)) is None
    assert accept_failure(settings, ledger, Failed(row.id, "transcribe", "late", Fault.RECORDING, row.attempts)) is None
    assert ledger.get(row.id).outputs == first.outputs


def test_a_commit_that_cannot_write_is_undone_and_retried(settings, ledger):
    row = processing(settings, ledger)
    settings.outbox.mkdir(parents=True)
    (settings.outbox / "default").write_text("a file where the profile's folder should be")
    after = accept_result(settings, ledger, Finished(row.id, transcript_job(), row.attempts))
    assert after.state == State.FAILED and after.error_stage == "outputs" and after.outputs == []
    assert after.next_attempt_at > time.time() and row.spool_path.exists()


def test_a_commit_that_fails_while_linking_removes_its_own_outputs_and_no_one_elses(settings, ledger, monkeypatch):
    """The disk fills while the outputs take their names, and meanwhile another writer put a file
    under one of the names still to come: the job's own linked files go, the other file stays."""
    import errno

    from hushdrop.pipeline import outputs

    row = processing(settings, ledger)
    real_link, calls = outputs.link_no_clobber, []

    def link_then_fill_the_disk(source, target):
        calls.append(target)
        if len(calls) == 2:
            target.with_suffix(".md").write_text("another writer's notes")
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_link(source, target)

    monkeypatch.setattr(outputs, "link_no_clobber", link_then_fill_the_disk)
    after = accept_result(settings, ledger, Finished(row.id, transcript_job(), row.attempts))
    assert after.state == State.FAILED and after.error_stage == "outputs" and "No space left" in after.error
    folder = settings.outbox / "default"
    assert sorted(p.name for p in folder.iterdir()) == ["talk.md"]
    assert (folder / "talk.md").read_text() == "another writer's notes"
    assert after.next_attempt_at > time.time() and row.spool_path.exists()


def test_failures_go_by_their_fault(settings, ledger):
    rec = processing(settings, ledger, "a.wav", seed=1)
    assert accept_failure(settings, ledger, Failed(rec.id, "open", "not audio", Fault.RECORDING, 1)).state == State.QUARANTINED
    tra = processing(settings, ledger, "b.wav", seed=2)
    after = accept_failure(settings, ledger, Failed(tra.id, "transcribe", "boom", Fault.TRANSIENT, 1))
    assert after.state == State.FAILED and after.attempts == 1 and after.error == "boom"
    env = processing(settings, ledger, "c.wav", seed=3)
    after = accept_failure(settings, ledger, Failed(env.id, "decode", "No space left on device", Fault.ENVIRONMENT, 1))
    assert after.state == State.FAILED and after.attempts == 0 and after.env_failures == 1


def test_a_lost_worker_is_a_counted_transient_failure(settings, ledger):
    row = processing(settings, ledger)
    after = accept_lost_worker(settings, ledger, row.id, row.attempts, lost_process_words(-9))
    assert after.state == State.FAILED and after.attempts == 1 and "exit code -9" in after.error
    assert accept_lost_worker(settings, ledger, row.id, row.attempts, "gone") is None  # not processing any more
    assert Path(after.spool_path).exists()
