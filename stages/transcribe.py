"""transcribe: voice-activity detection, then the ASR engine on windows of speech.

Silero VAD (shipped inside faster-whisper, no download) finds where people speak.
No speech means an empty transcript marked ``no_speech``: the engine is not even
asked, so silence can never turn into hallucinated text. Speech regions are packed
into windows no longer than the engine accepts (which also bounds memory on a
2-hour file), transcribed, and their times mapped back onto the recording: every
word is dated inside the speech region it was heard in, and a segment the engine runs
across a join between two regions is split there, so no segment spans a gap.

Cleaning is checked by the engine's own evidence. Where ``dehum`` or ``denoise`` changed the
recording (they keep it as it was: ``Job.keep_as_recorded``), each window is decoded twice,
as cleaned and as recorded, each in the language the engine hears in that audio (unless the
profile names one), and the reading kept is the one the engine is more confident in
(:func:`choose_reading`: words over none, no repetition loop over one, the language it is
surer of, then the text it finds likelier when each text is scored on both audios). Where
people speak is judged on the audio as recorded, so both readings hear the same windows. Where
nothing cleaned the recording, each window is decoded once. Either way the transcript's
``windows`` say which reading each window kept and why (the JSON output's ``windows``).
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from hushdrop.pipeline.chunking import UNSPACED_LANGUAGES, Window, pack_regions
from hushdrop.pipeline.engines import ENGINE_NAMES, SAMPLE_RATE, DecodeRequest, Engine, EngineSpec, engine_for, load_engine
from hushdrop.pipeline.engines.base import EngineResult
from hushdrop.pipeline.errors import ConfigError, ModelError, RejectedInput, StageError
from hushdrop.pipeline.job import Job, WindowReading
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
    compare_cleaned: bool = Field(
        True,
        description="where dehum or denoise changed the recording, decode each window both as recorded and as "
        "cleaned (each in the language heard in it) and keep the reading the engine is more confident in",
    )
    # a near tie goes to the recorded reading, what the engine alone would write; chosen on
    # synthesised speech (bench/cleaning.py --set tuning and tuning-long, docs/benchmarks.md)
    cleaned_margin: float = Field(
        0.05, ge=-2.0, le=2.0,
        description="compare_cleaned: the cleaned reading is kept when the engine finds its text likelier than the "
        "recorded one's by more than this (mean log-probability per token, each text scored on both audios; with an "
        "engine that cannot score a text, each decoding's own)",
    )

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
        # the audio before cleaning, taken off the job here whatever happens: it holds a file's space
        as_recorded, job.as_recorded = job.as_recorded, None
        samples, rate = self.audio_of(job).samples()
        if rate != SAMPLE_RATE:
            raise self.fail(
                f"the engine needs {SAMPLE_RATE} Hz audio but got {rate} Hz: "
                f"put a `resample` stage before `transcribe` in the chain"
            )
        job.engine_info = self.engine.describe()
        transcript = job.transcript
        recorded = self._recorded_samples(job, as_recorded, samples, rate)
        # where people speak is judged on the audio as recorded: a gate's silence between words
        # can cut the quiet end of speech that the voice detector hears through the noise
        regions = self._speech_regions(samples if recorded is None else recorded)
        transcript.speech_regions = [(a / rate, b / rate) for a, b in regions]
        if not regions:
            transcript.no_speech = True
            job.note("transcribe: no speech detected")
            return
        max_window = min(self.options.window_seconds, self.engine.capabilities.max_window_s)
        windows = pack_regions(regions, samples, rate, max_window, gap_seconds=self.options.join_pause_ms / 1000)
        windows = self._spread(windows, self.engine.capabilities.concurrent_windows, rate)
        speech_total = sum(w.length for w in windows) / rate * (2 if recorded is not None else 1)
        decoded = [0.0] * (2 * len(windows))
        progress_lock = threading.Lock()

        def progress_of(first: int):
            def progress(index: int, seconds: float) -> None:
                with progress_lock:  # windows decoded at once report from their own threads
                    decoded[first + index] = seconds
                    job.progress(self.name, min(1.0, sum(decoded) / max(speech_total, 1e-9)))

            return progress

        request = self.request(job)
        try:
            results = self.engine.transcribe([w.gather(samples) for w in windows], request, progress_of(0))
            if recorded is None:
                kept = "cleaned" if as_recorded is not None else "recorded"
                if as_recorded is None:
                    reason = "no cleaning stage changed the recording: read as recorded"
                elif self.options.compare_cleaned:
                    reason = "the audio before cleaning did not line up with the cleaned audio: only the cleaned is read"
                else:
                    reason = "compare_cleaned is off: only the cleaned audio is read"
                readings = [self._single_reading(w, r, rate, kept, reason) for w, r in zip(windows, results)]
            else:
                results, readings = self._read_both(windows, results, samples, recorded, request, rate, progress_of(len(windows)))
        except ConfigError as exc:  # a request this engine cannot honour: retrying will not help
            raise RejectedInput(self.name, str(exc)) from exc
        transcript.windows = readings
        if recorded is not None:
            chose = Counter(r.kept for r in readings)
            job.note(
                f"transcribe: {len(readings)} window(s) read as recorded and as cleaned; kept "
                f"{chose['cleaned']} cleaned, {chose['recorded']} as recorded"
            )
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

    def _recorded_samples(self, job: Job, as_recorded, samples: np.ndarray, rate: int) -> np.ndarray | None:
        """The audio as recorded, to read beside the cleaned audio; None where there is none to
        compare (nothing cleaned it, ``compare_cleaned`` is off) or it no longer lines up sample
        for sample with the working audio (a stage after cleaning changed its rate or length)."""
        if as_recorded is None or not self.options.compare_cleaned:
            return None
        recorded, recorded_rate = as_recorded
        if recorded_rate != rate or len(recorded) != len(samples):
            job.note(
                "transcribe: the audio before cleaning no longer lines up with the working audio "
                "(a stage after dehum/denoise changed its rate or length): only the cleaned audio is read"
            )
            return None
        return recorded

    def _single_reading(self, window: Window, result: EngineResult, rate: int, kept: str, reason: str) -> WindowReading:
        start, end = _window_span(window, rate)
        figures = {k: v for k, v in reading_evidence(result).items() if k != "text"}  # the transcript holds its text
        return WindowReading(start, end, 1, kept, reason, {kept: figures})

    def _read_both(
        self,
        windows: list[Window],
        cleaned: list[EngineResult],
        samples: np.ndarray,
        recorded: np.ndarray,
        request: DecodeRequest,
        rate: int,
        progress,
    ) -> tuple[list[EngineResult], list[WindowReading]]:
        """Each window decoded again as recorded, in the language the engine hears in the recorded
        audio (noise can mislead it, and so can cleaning: which it is surer of decides), and per
        window the reading the engine is more confident in (:func:`choose_reading`)."""
        assert self.engine is not None
        again = self.engine.transcribe([w.gather(recorded) for w in windows], request, progress)
        results, readings = [], []
        for window, clean, raw in zip(windows, cleaned, again):
            evidence = {"cleaned": reading_evidence(clean), "recorded": reading_evidence(raw)}
            same = evidence["cleaned"]["text"] == evidence["recorded"]["text"]
            if clean.segments and raw.segments and clean.language == raw.language and not same:
                # both texts scored on each audio: two texts' scores on one audio compare (texts
                # heard in two languages are chosen between by the languages: choose_reading)
                for audio_name, audio in (("cleaned", samples), ("recorded", recorded)):
                    scores = self.engine.score(window.gather(audio), [clean, raw], request.task) or [None, None]
                    for name, value in zip(("cleaned", "recorded"), scores):
                        evidence[name][f"on_{audio_name}"] = value
            kept, reason = choose_reading(evidence["cleaned"], evidence["recorded"], self.options.cleaned_margin)
            start, end = _window_span(window, rate)
            readings.append(WindowReading(start, end, 2, kept, reason, evidence))
            results.append(clean if kept == "cleaned" else raw)
        return results, readings

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



def _window_span(window: Window, rate: int) -> tuple[float, float]:
    regions = window.regions
    return round(regions[0].source_offset / rate, 3), round((regions[-1].source_offset + regions[-1].length) / rate, 3)


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: the text's UTF-8 bytes over their zlib-compressed size (a loop
    of the same words compresses well: above 2.4 Whisper itself rejects a decoding)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def reading_evidence(result: EngineResult) -> dict[str, Any]:
    """What the engine says of its own reading of one window: the mean log-probability per token
    and the no-speech probability (each segment's weighted by its length in characters, a stand-in
    for its tokens), the compression ratio of all its text, its words (characters for a language
    written without spaces), the language it heard and the text itself (so that the record shows
    what the reading not kept said)."""
    spoken = [s for s in result.segments if s.text.strip()]
    text = " ".join(s.text.strip() for s in spoken)
    weights = [max(1, len(s.text.strip())) for s in spoken]
    total = sum(weights)

    def mean(values) -> float | None:
        pairs = [(v, w) for v, w in zip(values, weights) if v is not None]
        weight = sum(w for _, w in pairs)
        return round(sum(v * w for v, w in pairs) / weight, 4) if weight else None

    unspaced = result.language in UNSPACED_LANGUAGES
    probability = result.language_probability
    return {
        "avg_logprob": mean(s.avg_logprob for s in spoken) if total else None,
        "no_speech_prob": mean(s.no_speech_prob for s in spoken) if total else None,
        "compression_ratio": round(compression_ratio(text), 3),
        "words": len("".join(text.split())) if unspaced else len(text.split()),
        "language": result.language,
        "language_probability": None if probability is None else round(probability, 4),
        "text": text,
    }


# Whisper's own bound: a decoding that compresses better than this is a repetition loop
_LOOPING_RATIO = 2.4
# words heard only in the cleaned audio are kept where the engine itself thinks speech the likelier
# (its no-speech probability at most one half): where the audio as recorded was read as silence, a
# gate's remains can be read as sentences nobody said
_MORE_LIKELY_SILENT = 0.5


def choose_reading(cleaned: dict[str, Any], recorded: dict[str, Any], margin: float) -> tuple[str, str]:
    """``("cleaned" | "recorded", why)``: which of a window's two readings to keep, from the engine's
    own evidence (:func:`reading_evidence`). A reading with words beats one without (the cleaned
    reading only where the engine's no-speech probability for it is at most 0.5); two that say the
    same words keep the recorded one; one that loops (compression ratio over 2.4) loses to one that
    does not; where the two audios were heard in different languages, the reading in the language
    the engine was surer of wins (log-probabilities of texts in two languages do not compare);
    otherwise, where the engine scored both texts on both audios (``on_cleaned``, ``on_recorded``:
    :meth:`Engine.score`), the cleaned text is kept where it is the likelier over the two audios
    together by more than ``margin``. A decoding's own log-probabilities do not compare across two
    audios (the engine reads gated audio more confidently than it reads it right), and each text is
    the best the decoder found on its own audio; scored on both, each has that advantage once. Where
    the engine cannot score, the cleaned reading is kept when its own mean log-probability per token
    beats the recorded one's by more than ``margin`` (and where it gives no log-probabilities, as the
    chain did before it compared)."""
    if cleaned["words"] and not recorded["words"]:
        doubt = cleaned.get("no_speech_prob")
        if doubt is not None and doubt > _MORE_LIKELY_SILENT:
            return "recorded", (f"only the cleaned reading has words, but the engine thinks them more likely "
                                f"not speech (no-speech probability {doubt:.2f}): none kept")
        return "cleaned", "only the cleaned reading has words"
    if recorded["words"] and not cleaned["words"]:
        return "recorded", "only the recorded reading has words"
    if not cleaned["words"]:
        return "recorded", "neither reading has words"
    if cleaned.get("text") is not None and cleaned.get("text") == recorded.get("text"):
        return "recorded", "both readings say the same words: the recorded one is kept"
    loops = {name: ev["compression_ratio"] > _LOOPING_RATIO for name, ev in (("cleaned", cleaned), ("recorded", recorded))}
    if loops["cleaned"] != loops["recorded"]:
        name = "recorded" if loops["cleaned"] else "cleaned"
        other = "cleaned" if name == "recorded" else "recorded"
        return name, f"the {other} reading repeats itself (compression ratio over {_LOOPING_RATIO:g})"
    languages = cleaned.get("language"), recorded.get("language")
    sure = cleaned.get("language_probability"), recorded.get("language_probability")
    if None not in languages and languages[0] != languages[1] and None not in sure:
        name = "cleaned" if sure[0] > sure[1] else "recorded"
        (mine, theirs), (p, q) = (languages, sure) if name == "cleaned" else (languages[::-1], sure[::-1])
        return name, f"the engine is surer of the language heard in the {name} audio ({mine} {p:.2f} against {theirs} {q:.2f})"
    heard = [ev.get(f"on_{audio}") for ev in (cleaned, recorded) for audio in ("cleaned", "recorded")]
    if None not in heard:
        c, r = (heard[0] + heard[1]) / 2, (heard[2] + heard[3]) / 2
        if c > r + margin:
            return "cleaned", (f"the engine finds the cleaned text likelier, each text scored on both audios "
                               f"(mean log-probability {c:.2f} against {r:.2f})")
        return "recorded", (f"the engine finds the recorded text as likely or more, each text scored on both "
                            f"audios (mean log-probability {r:.2f} against {c:.2f})")
    c, r = cleaned["avg_logprob"], recorded["avg_logprob"]
    if c is None or r is None:  # an engine that gives none: the cleaned audio, as without comparing
        return "cleaned", "no log-probability to compare: the cleaned reading, as without compare_cleaned"
    if c > r + margin:
        return "cleaned", f"the cleaned reading is more confident (log-probability {c:.2f} against {r:.2f})"
    return "recorded", f"the recorded reading is as confident or more (log-probability {r:.2f} against {c:.2f})"

