"""The job context: the one object that flows along a stage chain.

A job starts as (source file, profile settings) and accumulates audio facts, the
working audio, the transcript and a record of what each stage did. It knows
nothing about folders, the ledger or where it runs.

A finished job has one serialised form, its record (:meth:`Job.to_record`, versioned by
``record_version``): the JSON output is that record, a remote worker sends it back, the
web page reads it (:meth:`Job.from_record`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from hushdrop.pipeline.audio import Audio, AudioFacts
from hushdrop.pipeline.names import display_name, is_lossless_text


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
    language: str | None = None  # the language of ``text``: English in a translation
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


# the kinds an Event has, and the words engines write for them in their non-speech tags
EVENT_VOCABULARY = ("silence", "music", "applause", "laughter", "noise")

_EVENT_WORDS: dict[str, str] = {
    "music": "music",
    "musique": "music",
    "musik": "music",
    "música": "music",
    "音乐": "music",
    "singing": "music",
    "applause": "applause",
    "applauding": "applause",
    "clapping": "applause",
    "掌声": "applause",
    "laughter": "laughter",
    "laughing": "laughter",
    "laughs": "laughter",
    "laugh": "laughter",
    "chuckles": "laughter",
    "笑声": "laughter",
    "noise": "noise",
    "static": "noise",
    "coughing": "noise",
    "coughs": "noise",
    "background noise": "noise",
    "silence": "silence",
    "blank_audio": "silence",
    "no speech": "silence",
}


def event_kind(label: str) -> str | None:
    """The event kind an engine's non-speech tag names ("Music", "掌声", "BLANK_AUDIO"), or None."""
    return _EVENT_WORDS.get(label.strip().lower().replace("_", " ").strip(), None) or _EVENT_WORDS.get(
        label.strip().lower()
    )


# the language a translation (a profile's ``task: translate``) is written in: Whisper's translate
# task knows one target, English
TRANSLATION_LANGUAGE = "en"


@dataclass
class WindowReading:
    """Which reading of one window of speech the transcript holds, and why (the record's ``windows``).

    Where a cleaning stage (dehum, denoise) changed the recording, the transcribe stage can
    decode a window twice, as recorded and as cleaned, and keep the reading the engine is
    more confident in; ``evidence`` holds each reading's figures that decided it.
    """

    start: float  # recording seconds: the window's first speech
    end: float  # and its last
    decodes: int  # 1, or 2 when the window was read both as recorded and as cleaned
    kept: str  # "recorded" or "cleaned": the audio the kept text was decoded from
    reason: str
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)  # reading -> the engine's figures


@dataclass
class Transcript:
    language: str | None = None  # the language spoken (detected or the profile's), even in a translation
    language_probability: float | None = None
    segments: list[Segment] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    speech_regions: list[tuple[float, float]] = field(default_factory=list)
    no_speech: bool = False
    windows: list[WindowReading] = field(default_factory=list)

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
    task: str = "transcribe"  # the profile's ``task``: transcribe, or translate into English
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
    # the working audio (samples, rate) as it was before the first cleaning stage changed it, kept
    # for the transcribe stage to read both; None when nothing cleaned it. Never in the record.
    as_recorded: tuple[Any, int] | None = field(default=None, repr=False)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def warn(self, message: str) -> None:
        """A note the person who dropped the file should see."""
        self.notes.append(f"warning: {message}")

    def keep_as_recorded(self, samples: Any, rate: int) -> None:
        """Keep ``samples`` as the audio before cleaning, unless an earlier cleaning stage already did.

        Called by a cleaning stage just before it swaps its output in: the old samples' memory
        map stays readable after the working audio lets go of its file.
        """
        if self.as_recorded is None:
            self.as_recorded = (samples, rate)

    @property
    def warnings(self) -> list[str]:
        return [n.removeprefix("warning: ") for n in self.notes if n.startswith("warning: ")]

    @property
    def translated(self) -> bool:
        return self.task == "translate"

    @property
    def text_language(self) -> str | None:
        """The language the transcript's text is written in: English in a translation, else the
        language spoken. What acts on the text by language (grammar, the Chinese script,
        subtitle line breaks and names) asks this, not ``transcript.language``."""
        return TRANSLATION_LANGUAGE if self.translated else self.transcript.language

    def language_of(self, segment: Segment) -> str | None:
        """The language ``segment``'s text is written in: its own, else the transcript's (English
        throughout a translation)."""
        return TRANSLATION_LANGUAGE if self.translated else segment.language or self.transcript.language

    # -- the record: the one serialised form of a finished job --------------------------

    def to_record(self) -> dict[str, Any]:
        """What a run of the chain found, as plain JSON-able data, version :data:`RECORD_VERSION`:
        the JSON output's content (:func:`pipeline.outputs.render_json` writes it as it is), what
        a worker sends back, what the page reads. :meth:`from_record` gives back a job that
        renders the same outputs. ``language`` is the language spoken; ``text_language`` the one
        the text is written in, which differs when ``task`` is ``translate`` (then it is English).

        Not in it: the chain's inputs (the folder of ``source``, the requested language, the
        glossary), the working audio (gone once the chain ends), the progress callback (it
        belongs to the process that runs the chain), and ``facts.path`` (a folder of this machine).
        """
        t = self.transcript
        return {
            "schema": SCHEMA,
            "record_version": RECORD_VERSION,
            "hushdrop_version": hushdrop_version(),
            "received_at": utc_time(self.received_at),
            "finished_at": utc_time(self.finished_at),
            "source": self._source_record(),
            "audio": {k: v for k, v in asdict(self.facts).items() if k != "path"} if self.facts else None,
            "language": t.language,
            "language_probability": t.language_probability,
            "task": self.task,
            "text_language": self.text_language,
            "no_speech": t.no_speech,
            "script": self.script,
            "show_timestamps": self.show_timestamps,
            "engine": self.engine_info,
            "stages": [asdict(s) for s in self.stages],
            "notes": list(self.notes),
            "text": t.text,
            "segments": [asdict(s) for s in t.segments],
            "events": [asdict(e) for e in t.events],
            "speech_regions": [list(r) for r in t.speech_regions],
            "windows": [asdict(w) for w in t.windows],
            "waveform": self.waveform,
        }

    def _source_record(self) -> dict[str, Any]:
        """The recording's name as dropped; where it is not plain UTF-8 text, its exact bytes too."""
        name = self.source.name
        record = {"name": display_name(name), "profile": self.profile}
        if not is_lossless_text(name):
            record["name_bytes_hex"] = os.fsencode(name).hex()
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Job":
        """The job a record describes (no audio; progress goes nowhere). Keys it does not know
        (the page's ``edited`` marks) are passed over; a record of version 1 (JSON outputs
        written before ``record_version``) did not say ``show_timestamps``, so it is read from
        the tag stage's options there."""
        source = record.get("source") or {}
        audio = record.get("audio")
        t = Transcript(
            language=record.get("language"),
            language_probability=record.get("language_probability"),
            segments=[
                Segment(**{**_known(Segment, s), "words": [Word(**_known(Word, w)) for w in s.get("words") or []]})
                for s in record.get("segments") or []
            ],
            events=[Event(**_known(Event, e)) for e in record.get("events") or []],
            speech_regions=[(float(a), float(b)) for a, b in record.get("speech_regions") or []],
            no_speech=bool(record.get("no_speech")),
            windows=[WindowReading(**_known(WindowReading, w)) for w in record.get("windows") or []],
        )
        stages = [
            StageRecord(str(s.get("name")), dict(s.get("options") or {}), float(s.get("seconds") or 0.0), list(s.get("notes") or []))
            for s in record.get("stages") or []
        ]
        version = record.get("record_version")
        if isinstance(version, int) and version >= 2:
            show_timestamps = bool(record.get("show_timestamps", True))
        else:
            show_timestamps = not any(s.name == "tag" and s.options.get("timestamps") is False for s in stages)
        return cls(
            source=_source_path(source),
            profile=source.get("profile") or "default",
            facts=AudioFacts(**{**_known(AudioFacts, audio), "path": ""}) if isinstance(audio, dict) else None,
            transcript=t,
            stages=stages,
            notes=list(record.get("notes") or []),
            engine_info=dict(record.get("engine") or {}),
            show_timestamps=show_timestamps,
            task="translate" if record.get("task") == "translate" else "transcribe",
            script=record.get("script") or "keep",
            received_at=timestamp_of(record.get("received_at")),
            finished_at=timestamp_of(record.get("finished_at")),
            waveform=record.get("waveform"),
        )


# the JSON output's layout, as its readers know it (keys are only ever added to it)
SCHEMA = 1
# the version of Job.to_record's form; 2 added show_timestamps (version 1 guessed it); 3 added
# windows (which reading of each window was kept; absent from older records, read as none)
RECORD_VERSION = 3


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of the dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _source_path(source: dict[str, Any]) -> Path:
    """The recording's exact name from a record's ``source`` (its bytes where they were kept)."""
    try:
        return Path(os.fsdecode(bytes.fromhex(source["name_bytes_hex"])))
    except (KeyError, TypeError, ValueError):
        return Path(source.get("name") or "recording")


def utc_time(timestamp: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC, e.g. 2026-11-21T17:04:05Z (how a record keeps times)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def timestamp_of(text: Any) -> float | None:
    """The Unix time of an ISO 8601 string from a record (``2026-11-21T17:04:05Z``), or None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@lru_cache(maxsize=1)
def hushdrop_version() -> str:
    """The installed hushdrop's version (a record says which wrote it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hushdrop")
    except PackageNotFoundError:  # run from a checkout that was never installed
        import tomllib

        try:
            with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as f:
                return str(tomllib.load(f)["project"]["version"])
        except (OSError, KeyError, ValueError):
            return "unknown"
