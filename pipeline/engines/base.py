"""The engine interface every ASR backend implements.

An engine is loaded once per worker process (see ``pipeline.engines.load_engine``)
and turns a batch of 16 kHz mono float32 arrays into segments with word times and
a language. It never sees files, profiles or the ledger: the ``transcribe`` stage
does voice-activity detection, cuts the audio into windows no longer than
``capabilities.max_window_s`` and maps times back to the recording.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from hushdrop.pipeline.job import Segment

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class EngineSpec:
    """Which engine and model to load; the key of the per-process engine cache."""

    engine: str = "whisper"
    model: str = "base"
    device: str = "auto"  # auto | cpu | cuda
    compute_type: str = "auto"
    cpu_threads: int = 0  # 0 = the library's choice
    aligner: str | None = None  # qwen3-asr: forced-aligner checkpoint, optional


@dataclass(frozen=True)
class EngineCapabilities:
    languages: frozenset[str] | None  # None = any language the model knows
    word_timestamps: bool
    batching: bool
    devices: tuple[str, ...]
    max_window_s: float


@dataclass
class DecodeRequest:
    """What the profile asks of the engine for one job."""

    language: str | None = None  # None = detect
    glossary: Sequence[str] = ()
    word_timestamps: bool = True
    beam_size: int = 5
    options: dict[str, Any] = field(default_factory=dict)  # engine-specific extras


@dataclass
class EngineResult:
    """One window's transcription, with times relative to the window start."""

    segments: list[Segment]
    language: str | None
    language_probability: float | None
    no_speech: bool = False


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

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Engine, model name, model path/hash, device and precision, for the job record."""

    def close(self) -> None:
        return None
