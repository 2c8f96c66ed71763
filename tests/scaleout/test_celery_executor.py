"""Scale-out with real Celery workers and a real Redis-compatible server (docs/scale-out.md).

A coordinator (`hushdrop watch` with ``executor: celery``) and `hushdrop worker` processes,
each with its own workdir, sharing only the spool. Every test checks the promises of watch
mode: each recording transcribed exactly once, one set of outputs, the original shredded,
nothing left behind — through worker kills, a broker restart and a coordinator kill.
"""

from __future__ import annotations

import json

import pytest

from tests.harness import FORMATS, WatchRun, base_config, cheap_wav, hushdrop, speech_clip, wait_for
from tests.scaleout.cluster import Cluster


def recordings(speech: int, quiet: int, seconds: float = 6.0) -> dict[str, bytes]:
    files = {f"talk-{i:02d}.wav": speech_clip(i, seconds) for i in range(speech)}
    files.update({f"memo-{i:02d}.wav": cheap_wav(100 + i) for i in range(quiet)})
    return files


def assert_exactly_once(run: WatchRun, dropped: dict[str, bytes]) -> None:
    jobs = run.jobs()
    done = [j["name"] for j in jobs if j["state"] == "done"]
    assert sorted(done) == sorted(dropped), [(j["name"], j["state"], j["error"]) for j in jobs]
    sets = run.output_sets()
    assert sets == {name.rsplit(".", 1)[0]: set(FORMATS) for name in dropped}, sets
    assert not [p for p in run.spool_files() if not p.name.startswith(".")], run.spool_files()
    assert not any((run.inbox / name).exists() for name in dropped)
    assert not run.temp_files(), run.temp_files()


def wait_all_done(run: WatchRun, dropped: dict[str, bytes], timeout: float) -> None:
    def finished() -> bool:
        states = [j["state"] for j in run.jobs()]
        return len(states) >= len(dropped) and all(s in ("done", "quarantined") for s in states)

    try:
        wait_for(finished, timeout, "every recording to be done")
    except AssertionError:
        raise AssertionError(
            f"{[(j['name'], j['state'], j['error']) for j in run.jobs()]}\n--- coordinator ---\n{run.all_logs()[-4000:]}"
        ) from None


def text_outputs(run: WatchRun) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.outputs() if p.suffix in (".txt", ".srt", ".vtt")}


@pytest.fixture
def cluster(tmp_path, redis_server):
    made = Cluster(tmp_path, redis_server.url)
    yield made
    made.close()


def test_two_workers_transcribe_twenty_recordings_once_each_like_the_local_pool(cluster, tmp_path):
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    run = cluster.start_coordinator()
    dropped = recordings(speech=4, quiet=16)
    for name, data in dropped.items():
        run.drop(name, data)
    wait_all_done(run, dropped, 300)
    assert_exactly_once(run, dropped)
    for name in ("w1", "w2"):
        assert "transcribed in" in cluster.worker_log(name), cluster.worker_log(name)  # both took work
        assert not (cluster.worker_root(name) / "outbox").exists()  # a worker writes nothing in the outbox

    def both_idle():  # the coordinator's heartbeat carries the workers' last presence (≤ 1 s old)
        status = json.loads(hushdrop(run.config_path, "status", "--json").stdout)
        workers = {w["name"]: w for w in status["workers"]}
        return workers if set(workers) == {"w1", "w2"} and all(w["job"] is None for w in workers.values()) else None

    remote = wait_for(both_idle, 30, "status to show both workers idle", interval=0.5)
    for worker in remote.values():
        assert worker["queues"] == ["hushdrop"] and worker["host"] and worker["job"] is None
        assert 0 <= worker["heartbeat_age_s"] < 10
    text = hushdrop(run.config_path, "status").stdout
    assert "w1 on " in text and "w2 on " in text and "queues hushdrop: idle" in text, text

    local = WatchRun(tmp_path / "local", base_config())
    local.start()
    try:
        for name, data in dropped.items():
            local.drop(name, data)
        wait_all_done(local, dropped, 300)
    finally:
        local.stop()
    assert text_outputs(run) == text_outputs(local)


def test_workers_with_the_coordinators_own_config_share_its_machine_each_in_its_own_folder(cluster):
    run = cluster.start_coordinator()
    for name in ("w1", "w2"):  # the coordinator's config and workdir, as `celery worker` would be started
        cluster.start_worker(name, config=run.config_path)
    dropped = recordings(speech=2, quiet=4)
    for name, data in dropped.items():
        run.drop(name, data)
    wait_all_done(run, dropped, 300)
    assert_exactly_once(run, dropped)
    for name in ("w1", "w2"):
        assert "transcribed in" in cluster.worker_log(name), cluster.worker_log(name)  # both took work
        own = run.workdir / "workers" / name
        assert (own / "worker.lock").exists() and not any((own / "tmp").glob("*"))  # its temp audio, cleaned up
    # a third under a name in use: one line that says what to do, and no traceback
    twin = hushdrop(run.config_path, "worker", "--name", "w1", timeout=120)
    assert twin.returncode == 2, twin.stdout + twin.stderr
    said = (twin.stdout + twin.stderr).strip()
    assert len(said.splitlines()) == 1 and "Traceback" not in said, said
    assert "another `hushdrop worker` named 'w1'" in said and "--name" in said, said


def test_a_worker_killed_mid_transcription_loses_nothing_and_doubles_nothing(cluster, redis_server):
    cluster.start_worker("a")
    cluster.start_worker("b")
    run = cluster.start_coordinator()
    client = redis_server.client()
    dropped = {}
    for trial in range(10):
        name = f"trial-{trial:02d}.wav"
        dropped[name] = speech_clip(trial, 16.0)
        run.drop(name, dropped[name])

        def transcribing():
            for job in run.jobs():
                if job["name"] == name and job["state"] == "processing" and job["stage"] == "transcribe":
                    for key in client.scan_iter("hushdrop:worker:*"):
                        presence = json.loads(client.get(key) or "{}")
                        if presence.get("job") == job["id"]:
                            return presence["name"]
            return None

        victim = wait_for(transcribing, 120, f"{name} to be transcribing")
        cluster.kill_worker(victim)
        wait_all_done(run, {n: b"" for n in dropped}, 180)
        job = next(j for j in run.jobs() if j["name"] == name)
        assert job["attempts"] >= 2, job  # it ran again after the lease ran out
        cluster.start_worker(victim)
        assert not list((cluster.worker_root(victim) / ".hushdrop" / "tmp").glob("*")), "the restarted worker left temp audio"
    assert_exactly_once(run, dropped)
    assert run.all_logs().count("stopped renewing its lease") >= 10


def test_a_broker_restart_mid_run_loses_nothing_and_doubles_nothing(cluster, redis_server):
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    run = cluster.start_coordinator()
    dropped = recordings(speech=4, quiet=4, seconds=12.0)
    for name, data in dropped.items():
        run.drop(name, data)
    wait_for(lambda: any(j["state"] == "processing" for j in run.jobs()), 120, "a job to run")
    redis_server.restart(down_for=2.0)
    wait_all_done(run, dropped, 300)
    assert_exactly_once(run, dropped)
    # the server's run id changed: whether or not a round fell into the outage, the restart is seen
    assert "the broker restarted: " in run.all_logs(), run.all_logs()[-3000:]


def test_a_coordinator_killed_while_workers_are_busy_commits_their_results_after_restart(cluster):
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    run = cluster.start_coordinator()
    dropped = recordings(speech=4, quiet=0, seconds=12.0)
    for name, data in dropped.items():
        run.drop(name, data)
    wait_for(lambda: sum(j["state"] == "processing" for j in run.jobs()) == 2, 120, "both workers to be busy")
    run.kill9()
    busy = [j["id"] for j in run.jobs() if j["state"] == "processing"]
    # the workers finish their jobs with nobody listening; the results wait in the backend
    wait_for(lambda: all("transcribed in" in cluster.worker_log(n) for n in ("w1", "w2")), 120, "the workers to finish")
    cluster.start_coordinator()
    wait_all_done(run, dropped, 300)
    assert_exactly_once(run, dropped)
    logs = run.all_logs()
    assert "still out on a remote worker" in logs, logs[-3000:]
    adopted = [j for j in run.jobs() if j["id"] in busy]
    assert all(j["attempts"] == 1 for j in adopted), adopted  # committed from the results, not run again


def test_a_broker_that_never_answers_stops_watch_with_the_reason_instead_of_waiting_forever(tmp_path):
    from hushdrop.pipeline.config import parse_config
    from hushdrop.pipeline.watch.service import make_executor
    from hushdrop.pipeline.watch.ledger import Ledger
    from tests.redis_server import free_port

    settings = parse_config(
        {"executor": "celery", "broker_url": f"redis://:pw@127.0.0.1:{free_port()}/0", "environment_retry_hours": 0.001,
         "profiles": {"default": {}}},
        tmp_path / "config.yaml",
    )
    ledger = Ledger(settings.ledger_path)
    executor = make_executor(settings, ledger)
    executor.start()
    try:
        fatal = wait_for(lambda: executor.fatal, 30, "the executor to give up on the broker")
        assert "has not answered for" in fatal and "redis://:***@127.0.0.1" in fatal and ":pw@" not in fatal
    finally:
        executor.stop(0)
        ledger.close()


def test_a_task_no_worker_had_taken_when_the_broker_restarts_is_sent_again_and_runs_once(tmp_path, redis_server):
    # A long lease keeps a killed worker's last presence ("idle") in Redis for 30 s, so the
    # coordinator sends it a task nobody will take; the restart then loses that message.
    cluster = Cluster(tmp_path, redis_server.url, lease_seconds=30.0)
    try:
        cluster.start_worker("gone")
        run = cluster.start_coordinator()
        cluster.kill_worker("gone")
        dropped = recordings(speech=1, quiet=0)
        for name, data in dropped.items():
            run.drop(name, data)
        wait_for(lambda: any(j["state"] == "processing" for j in run.jobs()), 60, "the job to be sent")
        redis_server.restart()
        wait_for(lambda: "tasks not yet taken are sent again" in run.all_logs(), 30, "the coordinator to see the restart")
        cluster.start_worker("new")
        wait_all_done(run, dropped, 120)
        assert_exactly_once(run, dropped)
        (job,) = run.jobs()
        assert job["attempts"] == 1, job  # sent again as the same attempt, not given up and queued anew
        assert "no worker of queue" not in run.all_logs()
        assert "transcribed in" in cluster.worker_log("new")
    finally:
        cluster.close()
