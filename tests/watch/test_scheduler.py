"""Periodic decisions (pipeline.watch.scheduler), in process: due retries, stale intake, expiry."""

from __future__ import annotations

import os
import time

from hushdrop.pipeline.watch.ledger import State
from hushdrop.pipeline.watch.scheduler import expire_outbox, finish_stale_seen, requeue_due_retries
from tests.watch.conftest import make, processing


def test_only_due_retries_are_requeued_and_the_executor_woken(settings, ledger):
    due = processing(settings, ledger, "due.wav", seed=1)
    later = processing(settings, ledger, "later.wav", seed=2)
    ledger.transition(due.id, State.FAILED, next_attempt_at=time.time() - 1)
    ledger.transition(later.id, State.FAILED, next_attempt_at=time.time() + 3600)
    woken = []
    assert requeue_due_retries(ledger, lambda: woken.append(True)) == 1
    assert ledger.get(due.id).state == State.CLAIMED and ledger.get(later.id).state == State.FAILED
    assert woken == [True]
    assert requeue_due_retries(ledger, lambda: woken.append(True)) == 0 and woken == [True]


def test_a_stale_seen_row_is_finished_and_a_fresh_one_left_to_its_claim(settings, ledger):
    inbox_path = settings.inbox / "talk.wav"
    inbox_path.write_bytes(b"audio")
    spool = settings.spool_dir / "default" / "tok" / "talk.wav"
    spool.parent.mkdir(parents=True)
    st = inbox_path.stat()
    job = ledger.add(profile="default", name="talk.wav", inbox_path=inbox_path, spool_path=spool, size=5,
                     mtime_ns=st.st_mtime_ns, device=st.st_dev, inode=st.st_ino)
    assert finish_stale_seen(settings, ledger, older_than=60) == 0 and ledger.get(job).state == State.SEEN
    assert finish_stale_seen(settings, ledger, older_than=-1) == 1
    assert ledger.get(job).state == State.ABANDONED and inbox_path.read_bytes() == b"audio"


def test_expiry_deletes_only_old_transcripts_hushdrop_wrote_never_another_file_in_the_outbox(tmp_path):
    """Old outputs of committed jobs go; a newer one stays; a file someone else keeps in the
    outbox stays however old, even one named like a transcript (their notes, a copy, a sync
    tool's file), and so do hidden and other files."""
    from hushdrop.pipeline.watch.ledger import Ledger
    from tests.watch.conftest import committed

    settings = make(tmp_path, outbox_expiry_days=1)
    ledger = Ledger(settings.ledger_path)
    try:
        old_job, new_job = committed(settings, ledger, "old.wav", seed=1), committed(settings, ledger, "new.wav", seed=2)
        folder = settings.outbox / "default"
        theirs = ["notes.md", "copy of old.txt", "old.mp3", ".old.txt"]
        for name in theirs:
            (folder / name).write_text(name)
        old = time.time() - 2 * 86400
        for path in [*old_job.outputs, *(folder / name for name in theirs)]:
            os.utime(path, (old, old))
        assert expire_outbox(settings, ledger) == len(old_job.outputs)
        assert not any(p.exists() for p in old_job.outputs)
        assert all(p.exists() for p in new_job.outputs)
        assert all((folder / name).read_text() == name for name in theirs)
        # the expired names are no longer the old job's: a file put there later, however old,
        # is not expired as its output (a copy restored with its old time, say)
        assert ledger.get(old_job.id).outputs == [] and ledger.get(new_job.id).outputs == new_job.outputs
        restored = old_job.outputs[0]
        restored.write_text("restored from a backup")
        os.utime(restored, (old, old))
        assert expire_outbox(settings, ledger) == 0 and restored.read_text() == "restored from a backup"
    finally:
        ledger.close()


def test_expiry_forgets_outputs_someone_deleted_and_never_follows_a_swapped_folder(tmp_path):
    from hushdrop.pipeline.watch.ledger import Ledger
    from tests.watch.conftest import committed

    settings = make(tmp_path, outbox_expiry_days=1)
    ledger = Ledger(settings.ledger_path)
    try:
        job = committed(settings, ledger, "gone.wav", seed=1)
        for path in job.outputs:
            path.unlink()  # the user cleared the outbox by hand
        assert expire_outbox(settings, ledger) == 0 and ledger.get(job.id).outputs == []
        kept = committed(settings, ledger, "kept.wav", seed=2)
        folder = settings.outbox / "default"
        elsewhere = tmp_path / "elsewhere"
        folder.rename(elsewhere)
        folder.symlink_to(elsewhere)  # the profile's folder is now a link to another folder
        old = time.time() - 2 * 86400
        for path in elsewhere.iterdir():
            os.utime(path, (old, old))
        assert expire_outbox(settings, ledger) == 0
        assert sorted(p.name for p in elsewhere.iterdir()) == sorted(p.name for p in kept.outputs)
    finally:
        ledger.close()


def test_a_name_found_gone_is_taken_off_only_the_jobs_that_listed_it_then(settings, ledger):
    """Expiry finds an output gone and, before it records that, another job commits a file under
    the freed name: only the jobs that listed the name when it was found gone lose it."""
    from tests.watch.conftest import committed

    old = committed(settings, ledger, "talk.wav", seed=1)
    for path in old.outputs:
        path.unlink()
    listed = ledger.committed_outputs()
    found_gone = {p: listed[p] for p in old.outputs}
    new = committed(settings, ledger, "talk.wav", seed=2)  # the same names, free again
    assert new.outputs == old.outputs
    assert ledger.forget_outputs(found_gone) == 1
    assert ledger.get(old.id).outputs == [] and ledger.get(new.id).outputs == new.outputs
