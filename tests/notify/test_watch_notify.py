"""Notifications from a real ``hushdrop watch`` on real files with the bundled model, through
Apprise's ``json://`` URL to a real HTTP receiver on loopback."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import cheap_wav, speech_clip, wait_for
from tests.unprivileged import is_root


def test_done_and_quarantined_arrive_with_their_facts_and_the_text_only_where_asked(watch_run, receiver):
    run = watch_run(
        notify={"urls": [receiver.url()], "page_url": "https://hushdrop.example:8443"},
        profiles={"talks": {"folder": "talks", "notify_text": True}},
    ).start()
    run.drop("meeting.wav", speech_clip(1, 6.0))
    run.drop("talk.wav", speech_clip(2, 6.0), folder="talks")
    run.drop("broken.wav", os.urandom(40_000))
    wait_for(lambda: len(receiver.delivered()) == 3, 120, "three notifications")
    jobs = {j["name"]: j for j in run.jobs()}
    assert jobs["broken.wav"]["state"] == "quarantined" and jobs["meeting.wav"]["state"] == "done", jobs

    (done,) = receiver.titled("Transcribed: meeting.wav")
    for line in ("File: meeting.wav", "Profile: default", "Duration: 0:06", "Language: en", "Time taken: 0:",
                 f"Result: https://hushdrop.example:8443/jobs/{jobs['meeting.wav']['id']}"):
        assert line in done.message, done.message
    transcript = (run.outbox / "default" / "meeting.txt").read_text().lower()
    assert "good morning" in transcript and "morning" not in done.message.lower(), done.message

    (with_text,) = receiver.titled("Transcribed: talk.wav")
    assert "Profile: talks" in with_text.message and "good morning" in with_text.message.lower(), with_text.message

    (set_aside,) = receiver.titled("Set aside: broken.wav")
    assert "Stage: decode" in set_aside.message and f"Reason: {jobs['broken.wav']['error']}" in set_aside.message
    assert f"/jobs/{jobs['broken.wav']['id']}" in set_aside.message and str(run.root) not in set_aside.message
    assert run.stop() == 0


def test_a_receiver_that_is_down_gets_bounded_tries_and_the_job_does_not_wait(watch_run, receiver):
    receiver.failures = -1  # answers 500, always
    run = watch_run(notify={"urls": [receiver.url()], "attempts": 3, "retry_backoff_seconds": 1.5}).start()
    run.drop("a.wav", cheap_wav(1))
    gave_up = f"could not be sent to 127.0.0.1:{receiver.port} after 3 tries"
    wait_for(lambda: gave_up in run.log_text(), 60, "the notification to be given up")
    (job,) = run.jobs()
    assert job["state"] == "done" and receiver.tries() == 3
    assert job["finished_at"] < receiver.requests[1].at  # done before the first retry, not after the last
    assert run.log_text().count("could not be sent") == 1  # one line per notification given up, not per try
    assert run.stop() == 0


@contextlib.contextmanager
def unwritable(folder: Path):
    """``folder`` refuses new files, as a read-only mount would: immutable for root (who may write
    any mode), mode 0555 for anyone else."""
    if not is_root():
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a folder unwritable for root here (chattr: {made.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_waiting_is_told_once_while_jobs_wait_out_an_unwritable_outbox(watch_run, receiver):
    run = watch_run(notify={"urls": [receiver.url()]})
    folder = run.outbox / "default"
    folder.mkdir(parents=True)
    with unwritable(folder):
        run.start()
        run.drop("one.wav", cheap_wav(1))
        run.drop("two.wav", cheap_wav(2))
        wait_for(lambda: len(run.jobs()) == 2 and all(j["env_failures"] >= 2 for j in run.jobs()), 90,
                 "both jobs to wait and try again")
        (waiting,) = wait_for(lambda: receiver.titled("hushdrop is waiting"), 10, "the waiting notification")
        assert "What is wrong: outputs: cannot write the outputs in <outbox>" in waiting.message, waiting.message
        assert "What to do: free space" in waiting.message and str(run.root) not in waiting.message
    wait_for(lambda: sorted(run.done_names()) == ["one.wav", "two.wav"], 90, "the jobs once the outbox is writable")
    wait_for(lambda: len(receiver.titled("Transcribed:")) == 2, 10, "the done notifications")
    assert len(receiver.titled("hushdrop is waiting")) == 1
    assert run.stop() == 0


def test_a_service_that_stops_on_an_error_says_why(watch_run, receiver):
    run = watch_run(notify={"urls": [receiver.url()]}, ffmpeg="/nonexistent/ffmpeg")
    run.start(wait_ready=False)
    assert run.proc.wait(60) == 2, run.log_text()
    (stopped,) = receiver.titled("hushdrop stopped on an error")  # delivered before the process exits
    assert "Why: not starting: ffmpeg cannot run the chain" in stopped.message and "/nonexistent/ffmpeg" in stopped.message
