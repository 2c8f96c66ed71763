"""`hushdrop worker`'s decisions for one task, in-process, against a real Redis-compatible server.

Each check points at :meth:`RemoteWorker.run`, whose task body is the protocol's ``RunJob`` as
plain data: a task the coordinator no longer wants, a second delivery of a running task, a path
outside the spool, bytes that differ from the claim, and a real run whose answer is the
protocol's JSON.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from hushdrop.pipeline.config import load_config, profile_document, profile_from_document
from hushdrop.pipeline.watch.protocol import Failed, Fault, Finished, RunJob, from_dict, to_dict
from hushdrop.pipeline.watch.remote import LEASE_KEY, TOKEN_KEY, WORKER_KEY, broker_url, redact
from hushdrop.pipeline.watch.remote_worker import RemoteWorker
from tests.harness import SPEECH

import yaml


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    from tests.redis_server import RedisServer

    root = tmp_path_factory.mktemp("remote-worker")
    with RedisServer() as server:
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump({
            "workdir": str(root / "work"), "spool": str(root / "spool"), "broker_url": server.url,
            "lease_seconds": 4, "profiles": {"default": {}},
        }))
        settings = load_config(config)
        made = RemoteWorker(settings, ["hushdrop"], "tester")
        made.server = server
        yield made
        made.processor.close()


def task(worker, name: str, data: bytes | None = None, relative: str | None = None, claimed_hash: str | None = None):
    folder = worker.settings.spool_dir / "default" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "clip.wav"
    if data is not None:
        path.write_bytes(data)
    content_hash = claimed_hash or (hashlib.sha256(data).hexdigest() if data is not None else None)
    profile = worker.settings.profile("default")
    relative = f"default/{name}/clip.wav" if relative is None else relative
    # the task's one argument: the protocol's RunJob as plain data, as the coordinator sends it
    return to_dict(RunJob(7, 1, relative, "default", None, content_hash, profile_document(profile)))


def test_a_task_the_coordinator_gave_up_on_does_nothing(worker):
    payload = task(worker, "gone", SPEECH.read_bytes())
    assert worker.run("task-gone", payload) is None
    assert not worker.redis.exists(LEASE_KEY.format("task-gone"))


def test_a_second_delivery_of_a_running_task_does_nothing(worker):
    payload = task(worker, "twice", SPEECH.read_bytes())
    worker.redis.set(TOKEN_KEY.format("task-twice"), "1")
    worker.redis.set(LEASE_KEY.format("task-twice"), json.dumps({"host": "elsewhere"}), ex=60)
    assert worker.run("task-twice", payload) is None
    assert json.loads(worker.redis.get(LEASE_KEY.format("task-twice")))["host"] == "elsewhere"


def test_a_path_outside_the_spool_is_refused(worker):
    payload = task(worker, "escape", SPEECH.read_bytes(), relative="../../etc/passwd")
    worker.redis.set(TOKEN_KEY.format("task-escape"), "1")
    answer = from_dict(worker.run("task-escape", payload))
    assert isinstance(answer, Failed) and answer.fault == Fault.RECORDING
    assert "not a path inside the spool" in answer.message


def test_bytes_that_differ_from_the_claim_wait_as_an_environment_fault(worker):
    payload = task(worker, "differs", SPEECH.read_bytes(), claimed_hash="0" * 64)
    worker.redis.set(TOKEN_KEY.format("task-differs"), "1")
    answer = from_dict(worker.run("task-differs", payload))
    assert isinstance(answer, Failed) and answer.fault == Fault.ENVIRONMENT
    assert "the shared spool is not the same folder" in answer.message


def test_a_missing_spool_file_says_how_to_mount_the_share(worker):
    payload = task(worker, "unmounted", None, claimed_hash="0" * 64)
    worker.redis.set(TOKEN_KEY.format("task-unmounted"), "1")
    answer = from_dict(worker.run("task-unmounted", payload))
    assert isinstance(answer, Failed) and answer.fault == Fault.ENVIRONMENT
    assert "is the shared spool mounted there?" in answer.message


def test_a_real_run_answers_with_the_transcript_and_leaves_the_spool_alone(worker):
    data = SPEECH.read_bytes()
    payload = task(worker, "real", data)
    worker.redis.set(TOKEN_KEY.format("task-real"), "1")
    answer = from_dict(json.loads(json.dumps(worker.run("task-real", payload))))  # through JSON, as Celery sends it
    assert isinstance(answer, Finished) and answer.job_id == 7 and answer.attempt == 1
    text = answer.job.transcript.text.lower()
    assert "tomatoes" in text and "fence" in text, text
    assert (worker.settings.spool_dir / "default" / "real" / "clip.wav").read_bytes() == data
    ttl = worker.redis.ttl(LEASE_KEY.format("task-real"))
    assert 0 < ttl <= 4  # left to expire: the coordinator reads the result first
    presence = json.loads(worker.redis.get(WORKER_KEY.format("tester")))
    assert presence["job"] is None and presence["jobs_done"] >= 1 and presence["queues"] == ["hushdrop"]
    assert not any(worker.settings.tmp_root.iterdir())
    shutil.rmtree(worker.settings.spool_dir / "default" / "real")


def test_the_broker_url_comes_from_the_environment_first_and_is_never_logged_with_its_password(worker, monkeypatch):
    monkeypatch.setenv("HUSHDROP_BROKER_URL", "redis://:s3cret@nas.local:6379/2")
    assert broker_url(worker.settings) == "redis://:s3cret@nas.local:6379/2"
    assert redact("redis://:s3cret@nas.local:6379/2") == "redis://:***@nas.local:6379/2"
    monkeypatch.setenv("HUSHDROP_BROKER_URL", "amqp://nas.local")
    with pytest.raises(Exception, match="redis:// or rediss://"):
        broker_url(worker.settings)


def test_a_task_naming_a_model_folder_the_worker_was_not_given_is_refused_without_loading_it(worker, tmp_path):
    from hushdrop.pipeline.engines import _cache
    from hushdrop.pipeline.models import bundled_whisper_base

    # a complete, loadable model folder an attacker with access to Redis points the task at
    planted = tmp_path / "planted-model"
    shutil.copytree(bundled_whisper_base(), planted)
    payload = task(worker, "planted", SPEECH.read_bytes())
    chain = payload["profile_document"]["chain"]
    transcribe = next(entry for entry in chain if "transcribe" in entry)
    transcribe["transcribe"]["model"] = str(planted)
    worker.redis.set(TOKEN_KEY.format("task-planted"), "1")
    answer = from_dict(worker.run("task-planted", payload))
    assert isinstance(answer, Failed) and answer.stage == "transcribe" and answer.fault == Fault.ENVIRONMENT
    assert str(planted) in answer.message and "its own config names" in answer.message
    assert not [spec for spec in _cache if spec.model == str(planted)], "the planted model was loaded"


def test_catalogue_models_and_the_workers_own_models_are_accepted(worker):
    profile = worker.settings.profile("default")
    assert worker.refused_model(profile) is None  # 'base': the catalogue's, from the verified cache
    qwen = profile_from_document({
        **profile_document(profile),
        "chain": [{"resample": {}}, {"transcribe": {"engine": "qwen3-asr", "model": "qwen3-asr-0.6b",
                                                     "aligner": "Qwen/Qwen3-ForcedAligner-0.6B-hf"}}],
    })
    assert worker.refused_model(qwen) is None
    elsewhere = profile_from_document({
        **profile_document(profile),
        "chain": [{"resample": {}}, {"transcribe": {"engine": "qwen3-asr", "model": "qwen3-asr-0.6b",
                                                     "aligner": "/srv/other/aligner"}}],
    })
    assert "aligner '/srv/other/aligner'" in worker.refused_model(elsewhere)
