"""tag: sound events and timestamp display.

What can be detected honestly with what hushdrop has:
- ``silence``: long stretches with no speech, from the VAD regions the transcribe
  stage found (reliable).
- ``music``, ``applause``, ``laughter``, ``noise``: only when the engine itself writes
  a non-speech tag such as "[Music]", "(applause)", "*laughs*" or "♪". These tags are
  taken out of the text and become events with one vocabulary. There is no separate
  sound-event classifier, so an event the engine did not mark is not reported.
"""

from __future__ import annotations

import re

from pydantic import Field

from hushdrop.pipeline.job import Event, Job, event_kind
from hushdrop.stages.base import Stage, StageOptions

_BRACKETED = re.compile(r"[\[(*（【]\s*([^\])*）】]{1,40}?)\s*[\])*）】]")
_MUSIC_NOTES = re.compile(r"[♪♫♬]+")


def split_tags(text: str) -> tuple[str, list[str]]:
    """Remove engine non-speech tags from ``text``; return the text and the event kinds."""
    kinds: list[str] = []

    def take(m: re.Match) -> str:
        kind = event_kind(m.group(1))
        if kind is None:
            return m.group(0)  # an ordinary parenthesis in speech stays
        kinds.append(kind)
        return " "

    text = _BRACKETED.sub(take, text)
    if _MUSIC_NOTES.search(text):
        kinds.append("music")
        text = _MUSIC_NOTES.sub(" ", text)
    return re.sub(r"\s{2,}", " ", text).strip(), kinds


class TagOptions(StageOptions):
    silence_min_seconds: float = Field(3.0, ge=0.5, description="shortest non-speech gap tagged [silence]")
    timestamps: bool = Field(True, description="[hh:mm:ss] before each segment in txt and md")


class Tag(Stage):
    name = "tag"
    Options = TagOptions

    def run(self, job: Job) -> None:
        transcript = job.transcript
        job.show_timestamps = self.options.timestamps
        events: list[Event] = []
        kept = []
        for segment in transcript.segments:
            text, kinds = split_tags(segment.text)
            for kind in kinds:
                events.append(Event(segment.start, segment.end, kind, "engine"))
            if text:
                segment.text = text
                kept.append(segment)
        transcript.segments = kept
        duration = job.facts.duration_s if job.facts else 0.0
        events.extend(self._silences(transcript.speech_regions, duration, transcript.no_speech))
        transcript.events = sorted(events, key=lambda e: (e.start, e.end))

    def _silences(self, regions: list[tuple[float, float]], duration: float, no_speech: bool) -> list[Event]:
        minimum = self.options.silence_min_seconds
        if no_speech:
            return [Event(0.0, round(duration, 3), "silence", "vad")] if duration >= minimum else []
        gaps = []
        cursor = 0.0
        for start, end in regions:
            gaps.append((cursor, start))
            cursor = max(cursor, end)
        gaps.append((cursor, duration))
        return [
            Event(round(a, 3), round(b, 3), "silence", "vad") for a, b in gaps if b - a >= minimum
        ]
