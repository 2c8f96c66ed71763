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


def test_expiry_deletes_only_old_transcripts_of_hushdrops_formats(tmp_path):
    settings = make(tmp_path, outbox_expiry_days=1)
    folder = settings.outbox / "default"
    folder.mkdir(parents=True)
    old = time.time() - 2 * 86400
    names = ["old.txt", "old.srt", "old.mp3", ".old.txt", "new.txt"]
    for name in names:
        (folder / name).write_text(name)
    for name in names[:4]:
        os.utime(folder / name, (old, old))
    assert expire_outbox(settings) == 2
    assert sorted(p.name for p in folder.iterdir()) == [".old.txt", "new.txt", "old.mp3"]
