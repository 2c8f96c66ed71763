"""tag: engine non-speech tags become events; long gaps between speech become [silence]."""

from __future__ import annotations

from pathlib import Path

from hushdrop.pipeline.audio import AudioFacts
from hushdrop.pipeline.job import EVENT_VOCABULARY, Job, Segment, Transcript
from hushdrop.stages.tag import Tag, TagOptions, split_tags


def test_split_tags_normalises_vocabulary_and_keeps_ordinary_parentheses():
    assert split_tags("[Music] hello (APPLAUSE) there *laughs*") == ("hello there", ["music", "applause", "laughter"])
    assert split_tags("♪ la la ♪") == ("la la", ["music"])
    assert split_tags("the budget (the old one) is fine") == ("the budget (the old one) is fine", [])


def job(segments, regions, duration, no_speech=False) -> Job:
    j = Job(source=Path("x.wav"))
    j.facts = AudioFacts("x.wav", 1, "wav", "pcm_s16le", duration, 16000, 1)
    j.transcript = Transcript(segments=segments, speech_regions=regions, no_speech=no_speech)
    return j


def test_silences_from_vad_gaps_and_engine_events():
    j = job(
        [Segment(0.5, 2.0, "hello"), Segment(10.0, 12.0, "[Applause]"), Segment(12.0, 14.0, "bye")],
        [(0.5, 2.0), (10.0, 14.0)],
        20.0,
    )
    Tag().run(j)
    events = [(e.kind, e.start, e.end, e.source) for e in j.transcript.events]
    assert events == [
        ("silence", 2.0, 10.0, "vad"),
        ("applause", 10.0, 12.0, "engine"),
        ("silence", 14.0, 20.0, "vad"),
    ]
    assert [s.text for s in j.transcript.segments] == ["hello", "bye"]
    assert {e.kind for e in j.transcript.events} <= set(EVENT_VOCABULARY)


def test_no_speech_recording_is_one_silence_and_timestamps_switch():
    j = job([], [], 8.0, no_speech=True)
    Tag(TagOptions(timestamps=False)).run(j)
    assert [(e.kind, e.start, e.end) for e in j.transcript.events] == [("silence", 0.0, 8.0)]
    assert j.show_timestamps is False
