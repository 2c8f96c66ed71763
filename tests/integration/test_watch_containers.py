"""``hushdrop watch`` with lists that name other files dropped in its inbox: each is
quarantined as a bad recording at its first attempt, nothing it names is read, and
the recording dropped after them is transcribed (issue 19's hang: the worker blocked
on a FIFO a concat list named, and the queue behind it with it)."""

from __future__ import annotations

import os

from tests import harness
from tests.harness import FORMATS, cheap_wav, wait_for
from tests.helpers import SPEECH_EN


def test_concat_lists_are_quarantined_and_the_next_recording_is_transcribed(watch_run, monkeypatch):
    run = watch_run()
    # the shipped unit runs in its state folder, where the list's `inbox/x.fifo` resolves
    monkeypatch.setattr(harness, "REPO", run.root)
    run.inbox.mkdir(parents=True, exist_ok=True)
    os.mkfifo(run.inbox / "x.fifo")
    (run.root / "secret.wav").write_bytes(SPEECH_EN.read_bytes())  # a file the service may read, never given it
    lists = {
        "hang.wav": "ffconcat version 1.0\nfile inbox/x.fifo\n",
        "peek.wav": "ffconcat version 1.0\nfile secret.wav\n",
        "elsewhere.wav": f"ffconcat version 1.0\nfile {run.root / 'secret.wav'}\n",
    }
    run.start()
    for name, text in lists.items():
        run.drop(name, text.encode())
    run.drop("after.wav", cheap_wav(19))
    quarantine = run.workdir / "quarantine" / "default"
    wait_for(lambda: "after.wav" in run.done_names(), 60, "the recording dropped after the lists")
    wait_for(lambda: all((quarantine / f"{name}.error.txt").exists() for name in lists), 30, "the quarantine notes")
    jobs = {job["name"]: job for job in run.jobs()}
    for name in lists:
        job = jobs[name]
        assert job["state"] == "quarantined" and job["attempts"] == 1, job  # a bad recording, not a fault to retry
        assert job["error"].startswith(f"{name} is not a recording ffmpeg can read: it is an ffconcat list"), job
        assert "it is an ffconcat list" in (quarantine / f"{name}.error.txt").read_text()
    assert run.output_sets() == {"after": set(FORMATS)}, "nothing a list names may be transcribed"
    assert (run.inbox / "x.fifo").exists()  # left alone, never opened
    assert run.stop() == 0

