"""The ``whisper`` engine: faster-whisper (CTranslate2) on CPU (int8) or CUDA (float16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hushdrop.pipeline.engines.base import (
    SAMPLE_RATE,
    DecodeRequest,
    Engine,
    EngineCapabilities,
    EngineResult,
    EngineSpec,
    WindowProgress,
)
from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.job import Segment, Word
from hushdrop.pipeline.fsutil import sha256_file
from hushdrop.pipeline.models import WHISPER_BASE_SHA256, bundled_whisper_base


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # a broken CUDA install means: no CUDA
        return False


def _resolve_model(name: str) -> tuple[Path, str | None]:
    if name == "base":
        return bundled_whisper_base(), WHISPER_BASE_SHA256
    path = Path(name).expanduser()
    if (path / "model.bin").is_file():
        return path, None
    raise ModelError(
        f"whisper model {name!r} not found: use 'base' (bundled) or the path of a "
        f"CTranslate2 model directory containing model.bin. hushdrop never downloads models "
        f"while transcribing."
    )


class WhisperEngine(Engine):
    name = "whisper"

    def __init__(self, spec: EngineSpec):
        from faster_whisper import WhisperModel

        self.spec = spec
        self.model_path, self.model_sha256 = _resolve_model(spec.model)
        if spec.device == "auto":
            self.device = "cuda" if cuda_available() else "cpu"
        else:
            self.device = spec.device
        if spec.compute_type == "auto":
            self.compute_type = "float16" if self.device == "cuda" else "int8"
        else:
            self.compute_type = spec.compute_type
        try:
            self.model = WhisperModel(
                str(self.model_path),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=spec.cpu_threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"could not load whisper model from {self.model_path}: {exc}") from exc
        self._pipeline = None  # BatchedInferencePipeline, made on first use
        self.capabilities = EngineCapabilities(
            languages=None,
            word_timestamps=True,
            batching=False,
            devices=("cpu", "cuda"),
            max_window_s=600.0,
        )

    def _batched(self):
        if self._pipeline is None:
            from faster_whisper import BatchedInferencePipeline

            self._pipeline = BatchedInferencePipeline(self.model)
        return self._pipeline

    def describe(self) -> dict[str, Any]:
        if self.model_sha256 is None:  # a model of the user's: hashed once, not per job
            self.model_sha256 = sha256_file(self.model_path / "model.bin", follow_symlinks=True)
        return {
            "engine": self.name,
            "model": self.spec.model,
            "model_path": str(self.model_path),
            "model_sha256": self.model_sha256,
            "device": self.device,
            "compute_type": self.compute_type,
        }

    def transcribe(
        self,
        windows: Sequence[np.ndarray],
        request: DecodeRequest,
        progress: WindowProgress | None = None,
    ) -> list[EngineResult]:
        return [self._transcribe_one(i, w, request, progress) for i, w in enumerate(windows)]

    def _transcribe_one(
        self, index: int, audio: np.ndarray, request: DecodeRequest, progress: WindowProgress | None
    ) -> EngineResult:
        glossary = ", ".join(request.glossary) if request.glossary else None
        options = dict(
            language=request.language,
            beam_size=request.beam_size,
            word_timestamps=request.word_timestamps,
            vad_filter=False,  # the transcribe stage has already cut out non-speech
            condition_on_previous_text=False,  # stops one bad window from poisoning the next
            hotwords=glossary,
            # language auto: detect it on every 30 s piece, not once per window. A recording
            # that changes language (a meeting, an interview, joined voice memos) was decoded
            # under the first piece's language; Whisper then fails its checks on the other
            # pieces and re-decodes each at up to five temperatures: the multilingual slowdown
            # (10-min mixed file: 1.20x bare's CPU time before, 0.70x with this; docs/benchmarks.md).
            # The held-out clips, one language each, come out word for word the same.
            multilingual=request.language is None,
        )
        # no ``hallucination_silence_threshold``: it skips a silent gap of more than 2 s before
        # a suspected hallucination, and the VAD has already cut every such gap out of the
        # window. What it still did was re-decode real speech that merely looked unlikely
        # (another language, a mumble) from one second further on: measured at 2x the engine's
        # time on a mixed-language file once, at nothing another time; the held-out set gives
        # the same words without it (docs/benchmarks.md)
        options.update(request.options)
        batch_size = int(options.pop("batch_size", 1) or 1)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if batch_size > 1:
            # faster-whisper's batched pipeline: Silero VAD cuts the window into pieces of at
            # most 30 s at its pauses and the model decodes ``batch_size`` pieces per call.
            # Each piece is decoded on its own (never conditioned on the one before, at the
            # first temperature only), so these two options do not apply. Not the default: on a
            # 2-core CPU it was 1.75x faster than bare but lost whole sentences (60-min English:
            # WER 9.2 % against 3.5 % bare and 4.2 % sequential).
            options.pop("condition_on_previous_text", None)
            options.pop("hallucination_silence_threshold", None)
            options["vad_filter"] = True
            # timestamp tokens, as in sequential decoding: a piece comes back as sentences,
            # not as one segment of up to 30 s that the region table could not split
            options.setdefault("without_timestamps", False)
            segments_iter, info = self._batched().transcribe(audio, batch_size=batch_size, **options)
        else:
            segments_iter, info = self.model.transcribe(audio, **options)
        segments: list[Segment] = []
        for seg in segments_iter:  # a lazy generator: decoding happens while we iterate
            words = [
                Word(start=w.start, end=w.end, text=w.word.strip(), probability=w.probability)
                for w in (seg.words or [])
            ]
            segments.append(
                Segment(
                    start=seg.start,
                    end=seg.end,
                    text=seg.text.strip(),
                    words=words,
                    language=info.language,
                    avg_logprob=seg.avg_logprob,
                    no_speech_prob=seg.no_speech_prob,
                )
            )
            if progress is not None:
                progress(index, seg.end)
        return EngineResult(
            segments=segments,
            language=info.language,
            language_probability=info.language_probability,
            no_speech=not any(s.text for s in segments),
        )


__all__ = ["WhisperEngine", "cuda_available", "SAMPLE_RATE"]
