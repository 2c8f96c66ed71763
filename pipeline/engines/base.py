"""The engine contract every ASR backend implements, and its registry entry.

An engine is loaded once per worker process (see ``pipeline.engines.load_engine``)
and turns a batch of 16 kHz mono float32 arrays into segments with word times and
a language. It never sees files, profiles or the ledger: the ``transcribe`` stage
does voice-activity detection, cuts the audio into windows no longer than
``capabilities.max_window_s`` and maps times back to the recording.

Each engine also has an :class:`EngineEntry` in the registry (``ENGINES``): what can be
known about it without loading a model — its ``engine_options`` model, the languages it
can be forced to, how to load it, which models it has on this machine and how much
memory a worker holding one of them needs. The config loader, the ``transcribe`` stage
and ``workers: auto`` ask the entry; none of them knows any engine by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Self, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.job import Segment
from hushdrop.pipeline.models import ModelStatus
from hushdrop.pipeline.text import option_error_text

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class EngineSpec:
    """Which engine and model to load; the key of the per-process engine cache."""

    engine: str = "whisper"
    model: str = "base"
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "auto"
    cpu_threads: int = 0  # 0 = the library's choice
    concurrent_pieces: int = 1  # pieces of one recording the one loaded model decodes at once (CPU)
    aligner: str | None = None  # qwen3-asr: forced-aligner checkpoint, optional


@dataclass(frozen=True)
class EngineCapabilities:
    """What a loaded engine tells the ``transcribe`` stage about the audio it accepts."""

    max_window_s: float  # the longest window one call may hold
    concurrent_windows: int = 1  # windows of one call it decodes at the same time


class EngineOptions(BaseModel):
    """An engine's ``engine_options``: every key known, unknown keys rejected.

    The same model checks a profile when config.yaml is loaded (through the registry
    entry) and a job's options when the engine runs, so a typo fails ``config check``,
    not every job.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    engine: ClassVar[str]

    @classmethod
    def problems(cls, exc: ValidationError) -> list[str]:
        """One line per error, with "did you mean" for a misspelled key."""
        return [
            f"{'.'.join(str(p) for p in err['loc']) or 'engine_options'}: {option_error_text(err, cls)}"
            for err in exc.errors()
        ]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        """``raw`` validated, or ConfigError naming each bad key."""
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            raise ConfigError(f"{cls.engine} engine_options", cls.problems(exc)) from None

    def updated(self, overrides: Mapping[str, Any]) -> Self:
        """These options with a job's ``overrides`` on top (ConfigError for a bad one)."""
        return self.parse({**self.model_dump(exclude_unset=True), **overrides}) if overrides else self


@dataclass(frozen=True)
class EngineEntry:
    """An engine as the registry knows it, before (and without) loading a model."""

    name: str
    Options: type[EngineOptions]
    languages: frozenset[str]  # codes a profile may force (its ``language``)
    load: Callable[[EngineSpec], Engine]  # imports the engine's libraries only when called
    model_statuses: Callable[[], list[ModelStatus]]  # the models it has, or could have, here
    # whether a model name is one of this engine's own catalogue (found in hushdrop's verified
    # cache, never at a path the name chooses): a remote worker loads only these, or what its own
    # config names
    is_catalogue_model: Callable[[str], bool]
    # bytes one worker process holds once it has loaded model ``name`` (the runtime included):
    # what `workers: auto` divides the available memory by
    worker_memory: Callable[[str], int]
    # whether a model of this engine on a CPU can decode several pieces of one recording at once
    # (a transcribe stage's ``concurrent_pieces``)
    concurrent_pieces: bool = False
    # whether it can translate what is said into English text (a profile's ``task: translate``);
    # `config check` asks this, never an engine's name
    can_translate: bool = False

    def check_language(self, code: str) -> None:
        """ValueError unless a profile may force this engine to ``code``."""
        if code not in self.languages:
            raise ValueError(
                f"language {code!r} is not one the {self.name} engine can be forced to; "
                f"use 'auto' or one of: {', '.join(sorted(self.languages))}"
            )


@dataclass
class DecodeRequest:
    """What the profile asks of the engine for one job."""

    language: str | None = None  # None = detect
    glossary: Sequence[str] = ()
    word_timestamps: bool = True
    beam_size: int = 5  # an engine that decodes greedily ignores it
    batch_size: int = 1  # pieces of one window per model call, for an engine that can; 1 = one by one
    # transcribe: text in the language spoken; translate: English text whatever was spoken
    # (only for an engine whose entry says ``can_translate``)
    task: str = "transcribe"
    options: dict[str, Any] = field(default_factory=dict)  # engine_options: checked by the engine's Options


@dataclass
class EngineResult:
    """One window's transcription, with times relative to the window start."""

    segments: list[Segment]
    language: str | None
    language_probability: float | None
    no_speech: bool = False
    # the engine's own token ids of each segment's text, where it has them (for ``Engine.score``)
    tokens: list[list[int]] = field(default_factory=list)


WindowProgress = Callable[[int, float], None]  # (window index, seconds decoded in it)


class Engine(ABC):
    name: str
    capabilities: EngineCapabilities

    @abstractmethod
    def transcribe(
        self,
        windows: Sequence[np.ndarray],
        request: DecodeRequest,
        progress: WindowProgress | None = None,
    ) -> list[EngineResult]:
        """Transcribe each 16 kHz mono float32 window; one result per window."""

    def score(
        self, audio: np.ndarray, readings: Sequence[EngineResult], task: str = "transcribe"
    ) -> list[float | None] | None:
        """How likely the engine finds each reading's text as the words of ``audio`` (a 16 kHz
        window, the readings' segments timed within it): the mean log-probability per token with
        the text given, not searched for (a reading of this engine's, with its ``tokens``). None
        where the engine cannot say; an entry is None for a reading with no words. Texts scored on
        the same audio compare, where the log-probabilities two decodings report of two different
        audios do not."""
        return None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Engine, model name, model path/hash, device and precision, for the job record."""

    def close(self) -> None:
        return None
