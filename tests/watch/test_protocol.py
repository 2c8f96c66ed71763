"""The coordinator ↔ worker messages: plain JSON round trips, and the worker side's run_job."""

from __future__ import annotations

import json

import pytest
import soundfile

from hushdrop.pipeline.errors import EnvironmentFault, RejectedInput, StageError
from hushdrop.pipeline.job import Job
from hushdrop.pipeline.outputs import RENDERERS, commit_outputs
from hushdrop.pipeline.watch import protocol
from hushdrop.pipeline.watch.protocol import (
    CannotStart, Failed, Fault, Finished, Progress, Ready, RunJob, Stop, from_json, to_json,
)
from hushdrop.pipeline.watch.worker import run_job
from tests.helpers import SPEECH_EN
from tests.watch.conftest import transcript_job


@pytest.mark.parametrize("message", [
    RunJob(7, 2, "default/ab12/talk.wav", "default", None, "e3b0" * 16),
    RunJob(7, 1, "default/ab12/r\udcffsum\u00e9.wav", "meetings", "de"),  # a name that is not UTF-8
    # what a worker with its own config gets: the profile and the coordinator's time limits
    RunJob(7, 1, "default/ab12/talk.wav", "default", None, "e3b0" * 16,
           {"name": "default", "chain": [{"normalize": {}}]}, {"stage_floor_seconds": 600.0}),
    Stop(),
    Ready({"pid": 12, "engine": "whisper", "model": "base", "device": "cpu", "compute_type": "int8"}),
    CannotStart("ModelError: model.bin has the wrong sha256"),
    Progress(7, "transcribe", 0.4286, 4, 7),  # 43 % of the fifth of seven stages
    Progress(7, "open", 0.0, 0, 7, 61.25),  # the recording's duration, for the time limits
    Failed(7, "open", "not a recording ffmpeg can read", Fault.RECORDING, 2),
    Finished(7, transcript_job(), 2),
])
def test_every_message_survives_plain_json(message):
    text = to_json(message)
    assert json.loads(text)["kind"] == message.kind  # plain JSON, no pickles
    back = from_json(text)
    assert type(back) is type(message)
    if isinstance(back, Finished):  # the job travels as its record: what it found, not where it ran
        assert (back.job_id, back.attempt, back.job.to_record()) == (message.job_id, message.attempt, message.job.to_record())
    else:
        assert back == message
    if isinstance(back, Failed):
        assert isinstance(back.fault, Fault)


def test_every_message_kind_is_known_once():
    assert sorted(protocol.MESSAGES) == sorted({"run-job", "stop", "ready", "cannot-start", "progress", "finished", "failed"})


@pytest.fixture(scope="module")
def processed(processor_session) -> Job:
    profile = processor_session.settings.profile("default")
    job = processor_session.run_chain(SPEECH_EN, profile, language="en")
    job.received_at, job.finished_at = 1_763_700_000.0, 1_763_700_042.5
    return job


def test_a_real_processed_job_survives_json_and_renders_byte_identical_outputs(processed, tmp_path):
    assert processed.transcript.segments and processed.stages and processed.facts  # a real run, not an empty job
    back = Job.from_record(json.loads(json.dumps(processed.to_record())))
    assert back.to_record() == processed.to_record()
    for fmt, render in RENDERERS.items():
        assert render(back).encode() == render(processed).encode(), fmt
    # and through the commit itself (which stamps its own finished_at: give both the same clock)
    first = commit_outputs(processed, tmp_path / "a", list(RENDERERS))
    back.finished_at = processed.finished_at
    again = commit_outputs(back, tmp_path / "b", list(RENDERERS))
    for one, two in zip(first, again):
        a, b = one.read_bytes(), two.read_bytes()
        if one.suffix == ".json":
            a, b = (json.dumps({**json.loads(x), "finished_at": None}).encode() for x in (a, b))
        assert a == b, one.name


def in_spool(settings, source, relative: str = "default/t1/clip.wav") -> str:
    """``source`` copied to ``relative`` inside the settings' spool, as a claim puts it there."""
    target = settings.spool_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return relative


def test_run_job_answers_finished_with_a_document_and_reports_progress(processor_session):
    settings = processor_session.settings
    sent = []
    answer = run_job(processor_session, settings, RunJob(3, 1, in_spool(settings, SPEECH_EN), "default", "en"), sent.append)
    assert isinstance(answer, Finished) and answer.job_id == 3 and answer.attempt == 1
    assert answer.job.audio is None and answer.job.transcript.segments
    assert from_json(to_json(answer)).job.to_record() == answer.job.to_record()
    assert sent and all(isinstance(p, Progress) and p.job_id == 3 for p in sent)
    # each report says where in the chain it is: stage by stage, each from 0 to its end
    names = [spec.name for spec in settings.profile("default").chain]
    assert all(p.stage_count == len(names) for p in sent)
    assert all(names[p.stage_index] == p.stage for p in sent[1:])
    positions = [(p.stage_index, p.fraction) for p in sent]
    assert positions == sorted(positions) and positions[-1] == (len(names) - 1, 1.0)
    # the first report names the opening and the recording's length, which scales the time limits
    assert (sent[0].stage, sent[0].stage_index, sent[0].fraction) == ("open", 0, 0.0)
    assert sent[0].duration_s == pytest.approx(soundfile.info(str(SPEECH_EN)).duration, abs=0.01)
    assert all(p.duration_s is None for p in sent[1:])


def test_a_file_whose_length_cannot_be_read_reports_no_duration_and_fails_in_the_chain(settings, tmp_path):
    unreadable = tmp_path / "not-audio.wav"
    unreadable.write_bytes(b"this is not a recording at all")
    sent = []
    message = RunJob(5, 1, in_spool(settings, unreadable), "default")
    answer = run_job(_Failing(RejectedInput("open", "not audio")), settings, message, sent.append)
    assert [(p.stage, p.duration_s) for p in sent] == [("open", None)]
    assert isinstance(answer, Failed) and answer.stage == "open"


class _Failing:
    """A processor whose chain raises ``exc``: only the mapping to a Fault is under test."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def run_chain(self, *args, **kwargs):
        raise self.exc


@pytest.mark.parametrize("exc, stage, fault", [
    (RejectedInput("open", "not audio"), "open", Fault.RECORDING),
    (EnvironmentFault("decode", "ffmpeg lacks a filter"), "decode", Fault.ENVIRONMENT),
    (StageError("transcribe", "ran out of memory"), "transcribe", None),
    (OSError(28, "No space left on device"), "worker", Fault.ENVIRONMENT),
    (ValueError("a bug"), "worker", Fault.TRANSIENT),
])
def test_run_job_turns_every_failure_into_a_failed_message(settings, exc, stage, fault):
    answer = run_job(_Failing(exc), settings, RunJob(4, 2, "default/t4/nowhere.wav", "default"), lambda p: None)
    assert isinstance(answer, Failed) and (answer.job_id, answer.attempt, answer.stage) == (4, 2, stage)
    expected = fault or (Fault.TRANSIENT if exc.retryable else Fault.RECORDING)
    assert answer.fault == expected


@pytest.mark.parametrize("relative", ["../../etc/passwd", "/etc/passwd", ""])
def test_run_job_refuses_a_path_outside_the_spool_without_opening_it(settings, relative):
    sent = []
    answer = run_job(_Failing(AssertionError("the chain must not run")), settings, RunJob(6, 1, relative, "default"), sent.append)
    assert isinstance(answer, Failed) and answer.fault == Fault.RECORDING and "not a path inside the spool" in answer.message
    assert sent == []
