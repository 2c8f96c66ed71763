"""The job context: the one object that flows along a stage chain.

A job starts as (source file, profile settings) and accumulates audio facts, the
working audio, the transcript and a record of what each stage did. It knows
nothing about folders, the ledger or where it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hushdrop.pipeline.audio import Audio, AudioFacts


@dataclass
class Word:
    start: float
    end: float
    text: str
    probability: float | None = None


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    language: str | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    raw_text: str | None = None  # what the engine wrote, before grammar and script conversion


@dataclass
class Event:
    """A non-speech stretch: silence, music, applause, laughter, noise."""

    start: float
    end: float
    kind: str
    source: str  # "vad" or "engine"


@dataclass
class Transcript:
    language: str | None = None
    language_probability: float | None = None
    segments: list[Segment] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    speech_regions: list[tuple[float, float]] = field(default_factory=list)
    no_speech: bool = False

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text).strip()


@dataclass
class StageRecord:
    name: str
    options: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)


ProgressCallback = Callable[[str, float], None]


def no_progress(stage: str, fraction: float) -> None:
    return None


@dataclass
class Job:
    source: Path
    profile: str = "default"
    language: str = "auto"
    glossary: list[str] = field(default_factory=list)
    facts: AudioFacts | None = None
    audio: Audio | None = None
    transcript: Transcript = field(default_factory=Transcript)
    stages: list[StageRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    engine_info: dict[str, Any] = field(default_factory=dict)
    show_timestamps: bool = True
    script: str = "keep"  # the Chinese script zh/yue text was converted to (profile `script`)
    received_at: float | None = None  # when hushdrop took the recording (Unix time)
    finished_at: float | None = None  # when its outputs were written (Unix time)
    waveform: dict[str, Any] | None = None  # peaks of the decoded audio (pipeline.peaks), for the web page
    progress: ProgressCallback = field(default=no_progress, repr=False)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def warn(self, message: str) -> None:
        """A note the person who dropped the file should see."""
        self.notes.append(f"warning: {message}")

    @property
    def warnings(self) -> list[str]:
        return [n.removeprefix("warning: ") for n in self.notes if n.startswith("warning: ")]
