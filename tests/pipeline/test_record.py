"""A finished job's one serialised form (Job.to_record / Job.from_record): the JSON output is
the record, it reads back as a job that renders the same outputs, and older records still read."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hushdrop.pipeline.audio import AudioFacts
from hushdrop.pipeline.job import RECORD_VERSION, Event, Job, Segment, StageRecord, Transcript, WindowReading, Word
from hushdrop.pipeline.outputs import RENDERERS, commit_outputs, json_text, render_json

# the keys the JSON output had before it carried its record version (README: "Output files")
PUBLIC_KEYS = {
    "schema", "hushdrop_version", "received_at", "finished_at", "source", "audio", "language", "language_probability",
    "no_speech", "script", "engine", "stages", "notes", "text", "segments", "events", "speech_regions", "waveform",
}


def finished_job(name: str = "Team call 03.m4a", show_timestamps: bool = True) -> Job:
    job = Job(source=Path("/spool/default/ab12") / name, profile="meetings", language="de", glossary=["PyTorch"])
    job.facts = AudioFacts(str(job.source), 1234, "mov,mp4,m4a", "aac", 62.5, 44100, 2, decoded_s=62.5)
    job.engine_info = {"engine": "whisper", "model": "base", "device": "cpu"}
    job.stages = [StageRecord("transcribe", {"beam_size": 5}, 12.5, ["vad: 2 regions"]),
                  StageRecord("tag", {"timestamps": show_timestamps}, 0.01)]
    job.transcript = Transcript("en", 0.97, [
        Segment(1.0, 3.5, "Hello there.", [Word(1.0, 1.6, "Hello", 0.9), Word(1.7, 3.5, "there.", 0.8)], "en", -0.2, 0.01, "hello there"),
        Segment(40.0, 41.0, "Goodbye.", []),
    ], [Event(3.5, 40.0, "silence", "vad")], [(0.5, 3.6), (39.8, 41.2)], windows=[
        WindowReading(0.5, 41.2, 2, "recorded", "the recorded reading is as confident or more",
                      {"cleaned": {"avg_logprob": -0.6, "text": "Hello bear."}, "recorded": {"avg_logprob": -0.2, "text": "Hello there."}}),
    ])
    job.show_timestamps = show_timestamps
    job.script = "keep"
    job.warn("the file looks truncated")
    job.received_at, job.finished_at = 1_763_700_000.0, 1_763_700_042.0
    job.waveform = {"encoding": "u8-base64", "count": 4, "seconds": 62.5, "peaks": "AEB/gA=="}
    return job


def test_the_json_output_is_the_record_with_its_version_and_every_public_key():
    job = finished_job()
    record = job.to_record()
    assert json.loads(render_json(job)) == record
    assert record["record_version"] == RECORD_VERSION and set(record) == PUBLIC_KEYS | {"record_version", "show_timestamps", "task", "text_language", "windows"}
    assert record["source"] == {"name": "Team call 03.m4a", "profile": "meetings"}
    assert "path" not in record["audio"]  # a folder of the machine that ran it is no business of a reader
    assert record["received_at"] == "2025-11-21T04:40:00Z"


def test_a_record_reads_back_as_a_job_that_renders_every_output_byte_for_byte():
    for show_timestamps in (True, False):
        job = finished_job(show_timestamps=show_timestamps)
        back = Job.from_record(json.loads(render_json(job)))
        assert back.to_record() == job.to_record()
        assert back.show_timestamps is show_timestamps
        for fmt, render in RENDERERS.items():
            assert render(back) == render(job), fmt


def test_show_timestamps_is_read_from_the_record_not_guessed_from_the_stages():
    job = finished_job(show_timestamps=True)
    job.show_timestamps = False  # whatever set it: the record says so itself
    assert Job.from_record(job.to_record()).show_timestamps is False
    assert render_json(job) != render_json(finished_job())


def test_a_record_written_before_record_version_still_reads():
    record = finished_job(show_timestamps=False).to_record()
    del record["record_version"], record["show_timestamps"]  # a JSON output of hushdrop before
    job = Job.from_record(record)
    assert job.show_timestamps is False  # version 1 said it only in the tag stage's options
    assert RENDERERS["txt"](job) == "Hello there. Goodbye.\n"


def test_a_name_that_is_not_utf8_comes_back_exactly(tmp_path):
    name = os.fsdecode(b"r\xe9sum\xe9 \x1b[31m.wav")
    job = finished_job(name)
    back = Job.from_record(json.loads(json_text(job.to_record())))
    assert back.source == Path(name) and back.to_record() == job.to_record()
    written = commit_outputs(back, tmp_path, ["json"])
    assert json.loads(written[0].read_text())["source"]["name_bytes_hex"] == os.fsencode(name).hex()


def test_the_pages_edit_marks_are_passed_over():
    record = finished_job().to_record()
    record["segments"][0].update(text="Hello, there.", edited=True)
    record["edited_at"] = "2025-11-22T10:00:00Z"
    job = Job.from_record(record)
    assert job.transcript.segments[0].text == "Hello, there." and job.transcript.segments[0].raw_text == "hello there"
