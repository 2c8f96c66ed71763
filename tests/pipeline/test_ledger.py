"""The ledger against real SQLite files: the state machine, transactions, WAL readers."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from hushdrop.pipeline.watch.ledger import TRANSITIONS, Ledger, Priority, State, TransitionError, UploadNote


@pytest.fixture
def ledger(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    yield ledger
    ledger.close()


def add(ledger: Ledger, name: str = "talk.wav") -> int:
    return ledger.add(
        profile="default", name=name, inbox_path=Path("/in") / name, spool_path=Path("/spool/x") / name,
        size=10, mtime_ns=1,
    )


def test_happy_path_keeps_one_row_through_every_state(ledger: Ledger):
    job = add(ledger)
    assert ledger.get(job).state == State.SEEN
    ledger.transition(job, State.CLAIMED, expect=State.SEEN, content_hash="abc")
    row = ledger.start(job, "worker-1:1")
    assert (row.state, row.attempts, row.worker) == (State.PROCESSING, 1, "worker-1:1")
    ledger.plan_outputs(job, [Path("/out/talk.txt")])
    assert ledger.get(job).outputs == [Path("/out/talk.txt")]
    ledger.transition(job, State.COMMITTED, expect=State.PROCESSING)
    row = ledger.transition(job, State.DONE, expect=State.COMMITTED)
    assert row.finished_at is not None and row.claimed_at is not None and row.started_at is not None
    assert [r.id for r in ledger.all()] == [job]  # nothing is ever deleted


def test_forbidden_transitions_are_refused_and_change_nothing(ledger: Ledger):
    job = add(ledger)
    with pytest.raises(TransitionError):
        ledger.transition(job, State.DONE)  # seen → done would skip the commit
    assert ledger.get(job).state == State.SEEN
    ledger.transition(job, State.CLAIMED)
    with pytest.raises(TransitionError):
        ledger.transition(job, State.DONE)
    with pytest.raises(TransitionError):
        ledger.transition(job, State.PROCESSING, expect=State.FAILED)  # stale view of the row
    for terminal in (State.DONE, State.QUARANTINED, State.ABANDONED):
        assert TRANSITIONS[terminal] == frozenset()


def test_release_does_not_count_a_crash_as_an_attempt(ledger: Ledger):
    job = add(ledger)
    ledger.transition(job, State.CLAIMED)
    ledger.start(job, "w")
    ledger.plan_outputs(job, [Path("/out/a.txt")])
    row = ledger.release(job)
    assert (row.state, row.attempts, row.outputs, row.worker) == (State.CLAIMED, 0, [], None)
    ledger.start(job, "w")
    assert ledger.release(job, count_attempt=True).attempts == 1


def test_retries_become_due_by_time(ledger: Ledger):
    job = add(ledger)
    ledger.transition(job, State.CLAIMED)
    ledger.start(job, "w")
    ledger.transition(job, State.FAILED, next_attempt_at=time.time() + 60, error="boom")
    assert ledger.retries_due(time.time()) == []
    assert [r.id for r in ledger.retries_due(time.time() + 61)] == [job]


def test_a_failed_transaction_rolls_back(ledger: Ledger):
    job = add(ledger)
    with pytest.raises(ValueError):
        ledger.transition(job, State.CLAIMED, no_such_field=1)
    assert ledger.get(job).state == State.SEEN


def test_wal_mode_and_a_concurrent_reader(ledger: Ledger, tmp_path: Path):
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    job = add(ledger)
    reader = Ledger(tmp_path / "ledger.sqlite3", readonly=True)
    try:
        assert reader.get(job).state == State.SEEN
        ledger.transition(job, State.CLAIMED)
        assert reader.get(job).state == State.CLAIMED
        with pytest.raises(sqlite3.OperationalError):
            reader._db.execute("UPDATE jobs SET state = 'done'")
    finally:
        reader.close()


def test_state_survives_reopening(tmp_path: Path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    job = add(ledger)
    ledger.transition(job, State.CLAIMED, content_hash="h")
    ledger.close()
    again = Ledger(tmp_path / "l.sqlite3")
    assert again.get(job).state == State.CLAIMED and again.get(job).content_hash == "h"
    again.close()


def test_same_content_matches_hash_and_profile(ledger: Ledger):
    a, b, c = add(ledger, "a.wav"), add(ledger, "b.wav"), add(ledger, "c.wav")
    ledger.transition(a, State.CLAIMED, content_hash="h1")
    ledger.transition(b, State.CLAIMED, content_hash="h1")
    ledger.transition(c, State.CLAIMED, content_hash="h2")
    assert [r.id for r in ledger.same_content(ledger.get(b))] == [a]
    assert ledger.count_active() == 3
    assert ledger.counts() == {State.CLAIMED: 3}


def test_an_uploads_note_belongs_to_that_very_file_until_forgotten(ledger: Ledger, tmp_path: Path):
    upload = tmp_path / "memo.wav"
    upload.write_bytes(b"RIFF")
    asked = UploadNote(language="de", priority=Priority.API, task="translate", prompt="Kubernetes", request_id="r1")
    ledger.uploads.add(upload, "default", asked, upload.stat())
    assert ledger.uploads.note_for(upload, upload.stat()) == asked
    assert ledger.uploads.waiting_file("r1") == (upload, upload.stat().st_dev, upload.stat().st_ino)
    assert ledger.uploads.waiting_file("r2") is None
    assert [(u["inbox_path"], u["profile"]) for u in ledger.uploads.pending()] == [(upload, "default")]
    other = tmp_path / "other.wav"
    other.write_bytes(b"RIFF")
    assert ledger.uploads.note_for(upload, other.stat()) is None  # same name, another file
    ledger.uploads.forget(upload)
    assert ledger.uploads.note_for(upload, upload.stat()) is None and ledger.uploads.pending() == []
    assert ledger.uploads.waiting_file("r1") is None


def test_the_most_urgent_claimed_job_runs_first_then_arrival_order(ledger: Ledger, tmp_path: Path):
    def claimed(name: str, priority: int) -> int:
        job = ledger.add(profile="default", name=name, inbox_path=tmp_path / name, spool_path=tmp_path / "s" / name,
                         size=1, mtime_ns=1, priority=priority)
        ledger.transition(job, State.CLAIMED, content_hash=name)
        return job

    folder = [claimed(f"night-{n}.wav", Priority.FOLDER) for n in range(3)]
    upload = claimed("page.wav", Priority.UPLOAD)
    api = claimed("api.wav", Priority.API)
    assert [r.id for r in ledger.runnable(limit=10)] == [api, upload, *folder]
    assert [r.id for r in ledger.runnable(limit=2)] == [api, upload]


def test_service_facts_keep_json_values_by_key(ledger: Ledger):
    ledger.facts.set(heartbeat_at=1.5, workers=[{"name": "worker-1"}])
    ledger.facts.set(heartbeat_at=2.5)
    assert ledger.facts.all() == {"heartbeat_at": 2.5, "workers": [{"name": "worker-1"}]}
