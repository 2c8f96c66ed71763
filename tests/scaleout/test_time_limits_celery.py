"""Time limits with ``executor: celery``, through a real Redis-compatible server.

A real `hushdrop worker` runs a stage made to hang (an ffmpeg that blocks in ``open()`` on a
FIFO for files named ``hang-*``, given through ``HUSHDROP_FFMPEG`` as in
tests/watch/test_time_limits.py): it stops the run itself, answers ``Failed`` naming the stage,
kills the stuck ffmpeg and starts afresh in the same process; the coordinator counts the
attempt, retries, then quarantines. The coordinator's own check — for a worker that renews its
lease but never stops the run (one without this limit) — is tested against the real broker
with such a worker's lease written by the test.
"""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.watch.remote import LEASE_KEY, TOKEN_KEY, WORKER_KEY
from tests.harness import cheap_wav, wait_for
from tests.scaleout.cluster import Cluster
from tests.watch.test_time_limits import hanging_ffmpeg, processes_reading

TEST_LIMITS = {"stage_floor_seconds": 4, "stage_factor": 1, "job_floor_seconds": 60, "job_factor": 2}


@pytest.fixture
def hanging(tmp_path, monkeypatch):
    script, fifo = hanging_ffmpeg(tmp_path)
    monkeypatch.setenv("HUSHDROP_FFMPEG", str(script))
    return fifo


def test_a_remote_worker_stops_a_hanging_stage_and_the_job_is_retried_then_quarantined(tmp_path, redis_server, hanging):
    cluster = Cluster(tmp_path, redis_server.url, max_attempts=2, time_limits=TEST_LIMITS)
    try:
        worker = cluster.start_worker("w1")
        run = cluster.start_coordinator()
        run.drop("hang-1.wav", cheap_wav(1))
        run.drop("normal.wav", cheap_wav(2, seconds=30))  # its stages may take 30 s each: a busy machine's margin

        def settled():
            jobs = {j["name"]: j for j in run.jobs()}
            return len(jobs) == 2 and all(j["state"] in ("done", "quarantined") for j in jobs.values()) and jobs

        try:
            jobs = wait_for(settled, 240, "both jobs to settle", interval=0.3)
        except AssertionError:
            raise AssertionError(f"{run.jobs()}\n--- coordinator ---\n{run.all_logs()[-3000:]}\n--- worker ---\n"
                                 f"{cluster.worker_log('w1')[-3000:]}") from None
        stuck, normal = jobs["hang-1.wav"], jobs["normal.wav"]
        assert normal["state"] == "done" and normal["attempts"] == 1, normal  # the queue went on
        assert stuck["state"] == "quarantined" and stuck["attempts"] == 2, stuck  # each stop counted
        assert stuck["error_stage"] == "dehum"
        assert re.fullmatch(
            r"stage 'dehum' ran past its 4 s limit \(recording of 0\.5 s\); worker w1 on \S+ was stopped", stuck["error"],
        ), stuck["error"]
        note = (run.workdir / "quarantine" / "default" / "hang-1.wav.error.txt").read_text()
        assert re.search(r"^stage: +dehum$", note, re.M) and "stage 'dehum' ran past its 4 s limit" in note, note
        # the same process started afresh each time (the model loaded again), and the stuck ffmpeg is gone
        wait_for(lambda: cluster.worker_log("w1").count("ready:") == 3, 90, "the worker's third start")
        assert worker.poll() is None
        assert cluster.worker_log("w1").count("this worker starts afresh") == 2, cluster.worker_log("w1")
        wait_for(lambda: not processes_reading(hanging), 10, "the stuck ffmpeg to be gone")
        assert "did not stop it by itself" not in run.all_logs()  # the worker's answer came first
    finally:
        cluster.close()


def test_the_coordinator_fails_a_remote_run_past_its_limit_when_the_worker_does_not(tmp_path, redis_server):
    """A worker that keeps its lease but never stops the run (one without time limits): the
    coordinator fails the attempt itself ``lease_seconds`` after the limit, and withdraws the task."""
    from hushdrop.pipeline.watch.service import make_executor
    from hushdrop.pipeline.watch.ledger import Ledger, State
    from tests.watch.conftest import claimed

    settings = parse_config({
        "executor": "celery", "broker_url": redis_server.url, "lease_seconds": 2, "max_attempts": 2,
        "retry_backoff_seconds": 600, "time_limits": TEST_LIMITS, "profiles": {"default": {"settle_seconds": 0}},
    }, tmp_path / "config.yaml")
    ledger = Ledger(settings.ledger_path)
    client = redis_server.client()
    executor = make_executor(settings, ledger)
    stop = threading.Event()
    try:
        row = claimed(settings, ledger, "talk.wav")
        presence = {"name": "old", "host": "elsewhere", "queues": ["hushdrop"], "job": None, "t": time.time()}
        client.set(WORKER_KEY.format("old"), json.dumps(presence), ex=60)
        executor.start()
        task_id = wait_for(lambda: (ledger.get(row.id).worker or "").removeprefix("celery:"), 30, "the job to be sent")

        def old_worker_renews_its_lease():  # as a worker without time limits does, stuck in its stage
            lease = {"host": "elsewhere", "worker": "old", "stage": "transcribe", "fraction": 0.5, "duration_s": 0.5}
            while not stop.is_set():
                client.set(LEASE_KEY.format(task_id), json.dumps(lease), ex=2)
                stop.wait(0.4)

        threading.Thread(target=old_worker_renews_its_lease, daemon=True).start()
        started = time.monotonic()
        failed = wait_for(lambda: (r := ledger.get(row.id)).state == State.FAILED and r, 60, "the attempt to fail")
        assert 4 + 2 <= time.monotonic() - started < 30  # the stage's 4 s, plus one lease period for the worker to answer
        assert failed.attempts == 1 and failed.error_stage == "transcribe"
        assert failed.error == (
            "stage 'transcribe' ran past its 4 s limit (recording of 0.5 s); the worker on elsewhere did not stop it by itself"
        )
        assert not client.exists(TOKEN_KEY.format(task_id))  # a delivery of it does nothing now
        assert executor.in_flight() == 0
    finally:
        stop.set()
        executor.stop(grace=0)
        ledger.close()
