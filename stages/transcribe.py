"""transcribe: voice-activity detection, then the ASR engine on windows of speech.

Silero VAD (shipped inside faster-whisper, no download) finds where people speak.
No speech means an empty transcript marked ``no_speech``: the engine is not even
asked, so silence can never turn into hallucinated text. Speech regions are packed
into windows no longer than the engine accepts (which also bounds memory on a
2-hour file), transcribed, and their times mapped back onto the recording: every
word is dated inside the speech region it was heard in, and a segment the engine runs
across a join between two regions is split there, so no segment spans a gap.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from hushdrop.pipeline.chunking import pack_regions
from hushdrop.pipeline.engines import ENGINE_NAMES, SAMPLE_RATE, DecodeRequest, Engine, EngineSpec, engine_for, load_engine
from hushdrop.pipeline.errors import ConfigError, ModelError, RejectedInput, StageError
from hushdrop.pipeline.job import Job
from hushdrop.pipeline.text import option_error_text
from hushdrop.stages.base import Stage, StageOptions


# a piece decoded beside others holds at least this much speech: shorter ones would cost more
# in restarts (each piece begins without the text before it) than they gain
MIN_PIECE_SECONDS = 60.0


class TranscribeOptions(StageOptions):
    engine: Literal[ENGINE_NAMES] = "whisper"  # type: ignore[valid-type]  # the registry's names
    model: str = Field("base", description="'base' (bundled) or a model directory / checkpoint name")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "auto"
    cpu_threads: int = Field(0, ge=0)
    concurrent_pieces: int | Literal["auto"] = Field(
        "auto",
        description="whisper on a CPU: decode this many pieces of a long recording at once on the one loaded model "
        "(cut at pauses, at least a minute of speech each); auto: this worker's share of the cores (`workers`)",
    )
    aligner: str | None = Field(None, description="qwen3-asr: forced-aligner checkpoint for word times")
    beam_size: int = Field(5, ge=1, le=20)
    word_timestamps: bool = True
    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # faster-whisper's own VAD settings: pauses under 2 s stay inside a region, as recorded
    vad_min_silence_ms: int = Field(2000, ge=50, description="a pause this long ends a speech region")
    vad_speech_pad_ms: int = Field(400, ge=0, description="recorded audio kept on each side of a region")
    join_pause_ms: int = Field(0, ge=0, le=5000, description="digital silence put between two regions joined into one window")
    window_seconds: float = Field(600.0, ge=30.0, le=1200.0, description="longest audio sent in one call")
    batch_size: int = Field(
        1, ge=1, le=64,
        description="whisper: decode this many ≤30 s pieces of a window per model call (faster-whisper's "
        "batched pipeline); 1 decodes them one after another",
    )
    engine_options: dict = Field(default_factory=dict, description="extra options passed to the engine")

    @field_validator("concurrent_pieces", mode="before")
    @classmethod
    def _pieces(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
            raise ValueError(f"must be a whole number from 1 to 64, or auto; got {value!r}")
        return value

    @field_validator("engine_options")
    @classmethod
    def _engine_options_known(cls, value: dict, info: ValidationInfo) -> dict:
        """Checked against the engine's own ``Options`` now, so a typo fails at config load."""
        engine = info.data.get("engine")  # absent when the engine name itself was wrong
        if engine is None:
            return value
        options = engine_for(engine).Options
        try:
            options.model_validate(value)
        except ValidationError as exc:
            # the same errors, their text worded against the engine's options (this model
            # cannot tell which keys an engine_options dict may hold)
            raise ValidationError.from_exception_data(
                exc.title,
                [
                    {"type": "value_error", "loc": err["loc"], "input": err["input"],
                     "ctx": {"error": option_error_text(err, options)}}
                    for err in exc.errors()
                ],
            ) from None
        return value

    def supported_languages(self) -> frozenset[str]:
        """Languages the engine can be forced to, known without loading it."""
        return engine_for(self.engine).languages


class Transcribe(Stage):
    name = "transcribe"
    Options = TranscribeOptions

    def __init__(self, options: TranscribeOptions | None = None):
        super().__init__(options)
        self.engine: Engine | None = None

    @property
    def spec(self) -> EngineSpec:
        o = self.options
        return EngineSpec(
            engine=o.engine,
            model=o.model,
            device=o.device,
            compute_type=o.compute_type,
            cpu_threads=o.cpu_threads,
            # `auto` is settled by the worker plan (pipeline/watch/sizing.py) before a worker
            # starts; a chain built without one decodes one piece at a time
            concurrent_pieces=1 if o.concurrent_pieces == "auto" else o.concurrent_pieces,
            aligner=o.aligner,
        )

    def open(self) -> None:
        try:
            self.engine = load_engine(self.spec)  # cached per process: loaded once, reused
        except ModelError as exc:
            raise StageError(self.name, str(exc)) from exc

    def engine_info(self) -> dict[str, Any] | None:
        """The loaded engine's ``describe()`` (engine, model, device, precision); None before ``open``."""
        return self.engine.describe() if self.engine is not None else None

    def request(self, job: Job) -> DecodeRequest:
        """What this job asks of the engine: the profile's language, task and glossary, these options.

        RejectedInput for ``task: translate`` on an engine whose registry entry cannot translate
        (config check refuses such a profile; this guards one that reached a worker otherwise).
        """
        if job.task == "translate" and not engine_for(self.options.engine).can_translate:
            able = " or ".join(name for name in ENGINE_NAMES if engine_for(name).can_translate)
            raise RejectedInput(
                self.name, f"the {self.options.engine} engine cannot translate: use task: transcribe, or engine: {able}"
            )
        return DecodeRequest(
            language=None if job.language == "auto" else job.language,
            glossary=tuple(job.glossary),
            word_timestamps=self.options.word_timestamps,
            beam_size=self.options.beam_size,
            batch_size=self.options.batch_size,
            task=job.task,
            options=dict(self.options.engine_options),
        )

    def run(self, job: Job) -> None:
        if self.engine is None:
            self.open()
        assert self.engine is not None
        samples, rate = self.audio_of(job).samples()
        if rate != SAMPLE_RATE:
            raise self.fail(
                f"the engine needs {SAMPLE_RATE} Hz audio but got {rate} Hz: "
                f"put a `resample` stage before `transcribe` in the chain"
            )
        job.engine_info = self.engine.describe()
        transcript = job.transcript
        regions = self._speech_regions(samples)
        transcript.speech_regions = [(a / rate, b / rate) for a, b in regions]
        if not regions:
            transcript.no_speech = True
            job.note("transcribe: no speech detected")
            return
        max_window = min(self.options.window_seconds, self.engine.capabilities.max_window_s)
        windows = pack_regions(regions, samples, rate, max_window, gap_seconds=self.options.join_pause_ms / 1000)
        windows = self._spread(windows, self.engine.capabilities.concurrent_windows, rate)
        speech_total = sum(w.length for w in windows) / rate
        decoded = [0.0] * len(windows)
        progress_lock = threading.Lock()

        def progress(index: int, seconds: float) -> None:
            with progress_lock:  # windows decoded at once report from their own threads
                decoded[index] = seconds
                job.progress(self.name, min(1.0, sum(decoded) / max(speech_total, 1e-9)))

        try:
            results = self.engine.transcribe([w.gather(samples) for w in windows], self.request(job), progress)
        except ConfigError as exc:  # a request this engine cannot honour: retrying will not help
            raise RejectedInput(self.name, str(exc)) from exc
        languages: Counter[str] = Counter()
        probabilities: dict[str, float] = {}
        for window, result in zip(windows, results):
            for seg in result.segments:
                if seg.text.strip():
                    transcript.segments.extend(window.map_segment(seg, rate))
            if result.language:
                languages[result.language] += window.speech_length
                probabilities.setdefault(result.language, result.language_probability or 0.0)
        if languages:
            transcript.language = languages.most_common(1)[0][0]
            transcript.language_probability = probabilities[transcript.language]
        if not transcript.segments:
            transcript.no_speech = True
            job.note("transcribe: the engine heard no words in the speech regions")

    @staticmethod
    def _spread(windows: list, at_once: int, rate: int) -> list:
        """``windows`` with the longest cut in two (at a pause, never inside speech) until there are
        as many as the engine decodes at once: a recording with that many windows already is not
        cut any further, so it is decoded exactly as one piece at a time would, only sooner."""
        windows = list(windows)
        while len(windows) < at_once:
            longest = max(range(len(windows)), key=lambda i: windows[i].speech_length)
            if windows[longest].speech_length < 2 * MIN_PIECE_SECONDS * rate:
                break
            parts = windows[longest].split(2)
            if len(parts) == 1:
                break
            windows[longest : longest + 1] = parts
        return windows

    def _speech_regions(self, samples: np.ndarray) -> list[tuple[int, int]]:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        if len(samples) < SAMPLE_RATE // 10:
            return []
        options = VadOptions(
            threshold=self.options.vad_threshold,
            min_silence_duration_ms=self.options.vad_min_silence_ms,
            speech_pad_ms=self.options.vad_speech_pad_ms,
        )
        # blocks of ten minutes keep VAD's working copies small on a long recording;
        # a region cut at a block edge is rejoined by pack_regions (adjacent pieces)
        block = 600 * SAMPLE_RATE
        regions: list[tuple[int, int]] = []
        for offset in range(0, len(samples), block):
            piece = np.asarray(samples[offset : offset + block], dtype=np.float32)
            if len(piece) < SAMPLE_RATE // 10:
                break
            for stamp in get_speech_timestamps(piece, options, sampling_rate=SAMPLE_RATE):
                regions.append((offset + int(stamp["start"]), offset + int(stamp["end"])))
        return regions

