"""Outputs: five formats, atomic commit, never overwriting an earlier result."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.job import AudioFacts, Event, Job, Segment, StageRecord, Transcript, Word
from pipeline.outputs import NO_SPEECH, commit_outputs

FORMATS = ["txt", "srt", "vtt", "json", "md"]


def sample_job(no_speech: bool = False) -> Job:
    job = Job(source=Path("/in/Team call 03.m4a"), profile="default")
    job.facts = AudioFacts("/in/Team call 03.m4a", 1234, "mov,mp4,m4a", "aac", 3725.5, 44100, 2)
    job.engine_info = {"engine": "whisper", "model": "base", "model_sha256": "ab" * 32}
    job.stages = [StageRecord("normalize", {"target_lufs": -23.0}, 0.0), StageRecord("transcribe", {"beam_size": 5}, 12.5)]
    segments = [] if no_speech else [
        Segment(1.0, 3.5, "Hello there.", [Word(1.0, 1.6, "Hello", 0.9), Word(1.7, 3.5, "there.", 0.8)]),
        Segment(3661.25, 3662.0, "Goodbye.", []),
    ]
    job.transcript = Transcript("en", 0.97, segments, [Event(3.5, 3661.25, "silence", "vad")], no_speech=no_speech)
    return job


def test_all_formats_written_with_content(tmp_path):
    paths = commit_outputs(sample_job(), tmp_path, FORMATS)
    assert [p.name for p in paths] == [f"Team call 03.{f}" for f in FORMATS]
    text = {p.suffix[1:]: p.read_text() for p in paths}
    assert text["txt"] == "[00:00:01] Hello there.\n[01:01:01] Goodbye.\n"
    assert "1\n00:00:01,000 --> 00:00:03,500\nHello there.\n" in text["srt"]
    assert "2\n01:01:01,250 --> 01:01:02,000\nGoodbye." in text["srt"]
    assert text["vtt"].startswith("WEBVTT\n") and "01:01:01.250 --> 01:01:02.000" in text["vtt"]
    record = json.loads(text["json"])
    assert record["language"] == "en" and record["language_probability"] == 0.97
    assert record["audio"]["duration_s"] == 3725.5 and record["audio"]["channels"] == 2
    assert record["audio"]["container"] == "mov,mp4,m4a" and record["audio"]["codec"] == "aac"
    assert "path" not in record["audio"]  # where the original lived is nobody's business
    assert record["engine"]["model_sha256"] == "ab" * 32
    assert [s["name"] for s in record["stages"]] == ["normalize", "transcribe"]
    assert record["segments"][0]["words"][0] == {"start": 1.0, "end": 1.6, "text": "Hello", "probability": 0.9}
    assert record["events"][0]["kind"] == "silence"
    assert "# Team call 03.m4a" in text["md"] and "**Duration:** 01:02:05" in text["md"]
    assert "*[silence, 3658 s]*" in text["md"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_name_collision_never_overwrites(tmp_path):
    first = commit_outputs(sample_job(), tmp_path, FORMATS)
    before = {p: p.read_bytes() for p in first}
    (tmp_path / "Team call 03 (2).srt").write_text("someone else's file")
    second = commit_outputs(sample_job(), tmp_path, FORMATS)
    assert {p: p.read_bytes() for p in first} == before
    assert [p.name for p in second] == [f"Team call 03 (3).{f}" for f in FORMATS]
    assert (tmp_path / "Team call 03 (2).srt").read_text() == "someone else's file"


def test_no_speech_is_said_not_invented(tmp_path):
    paths = {p.suffix[1:]: p for p in commit_outputs(sample_job(no_speech=True), tmp_path, FORMATS)}
    assert paths["txt"].read_text() == NO_SPEECH + "\n"
    assert json.loads(paths["json"].read_text())["no_speech"] is True
    assert NO_SPEECH in paths["vtt"].read_text() and NO_SPEECH in paths["md"].read_text()


def test_outputs_are_hard_linked_from_fsynced_temp_files(tmp_path):
    # the commit publishes complete files only: each final name has one link left
    for path in commit_outputs(sample_job(), tmp_path, ["txt", "json"]):
        assert os.stat(path).st_nlink == 1 and path.stat().st_size > 0
