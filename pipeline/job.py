"""The job context: the one object that flows along a stage chain.

A job starts as (source file, profile settings) and accumulates audio facts, the
working audio, the transcript and a record of what each stage did. It knows
nothing about folders, the ledger or where it runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
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

    # -- the transcript document, as plain data ------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything a run of the chain found, as plain JSON-able data: facts, transcript,
        stage records, notes, engine info, times, waveform. Not the working audio (it is gone
        once the chain ends) and not the progress callback (it belongs to the process that
        runs the chain). :meth:`from_dict` gives back a job that renders the same outputs."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_IN_DOCUMENT}
        data["source"] = str(self.source)
        data["glossary"] = list(self.glossary)
        data["facts"] = asdict(self.facts) if self.facts is not None else None
        data["transcript"] = asdict(self.transcript)
        data["transcript"]["speech_regions"] = [list(r) for r in self.transcript.speech_regions]
        data["stages"] = [asdict(s) for s in self.stages]
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        """The job :meth:`to_dict` described (no audio; progress goes nowhere)."""
        data = dict(data)
        t = dict(data.pop("transcript"))
        transcript = Transcript(
            language=t.get("language"),
            language_probability=t.get("language_probability"),
            segments=[
                Segment(**{**seg, "words": [Word(**w) for w in seg.get("words", [])]}) for seg in t.get("segments", [])
            ],
            events=[Event(**e) for e in t.get("events", [])],
            speech_regions=[(float(a), float(b)) for a, b in t.get("speech_regions", [])],
            no_speech=bool(t.get("no_speech", False)),
        )
        facts = data.pop("facts", None)
        return cls(
            **{k: v for k, v in data.items() if k in _DOCUMENT_FIELDS},
            source=Path(data["source"]),
            facts=AudioFacts(**facts) if facts is not None else None,
            transcript=transcript,
            stages=[StageRecord(**s) for s in data.get("stages", [])],
        )


_NOT_IN_DOCUMENT = frozenset({"audio", "progress"})
_DOCUMENT_FIELDS = frozenset(f.name for f in fields(Job)) - _NOT_IN_DOCUMENT - {"source", "facts", "transcript", "stages"}
