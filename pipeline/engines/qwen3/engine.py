"""The qwen3-asr engine: Qwen3-ASR on transformers' native classes.

Speech goes through ``Qwen3ASRProcessor`` + ``Qwen3ASRForConditionalGeneration`` in
batches (bf16 on CUDA, fp32 on CPU); word times come from the optional forced aligner
``Qwen3ASRForTokenClassification``. torch and transformers are imported when an engine
is made, not when this module is.

- A window longer than the per-call limit (``chunk_length_s``, or 300 s when the aligner
  runs) is cut at quiet points into :class:`DecodeItem` s, decoded in batches, and the
  items' results are merged back into one result per window at their offsets.
- Greedy decoding can loop ("I think I think ..."): a looping or runaway item is decoded
  again with a repetition penalty, and any loop left is cut.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hushdrop.pipeline.chunking import split_at_quiet_points
from hushdrop.pipeline.engines.base import (
    SAMPLE_RATE,
    DecodeRequest,
    Engine,
    EngineCapabilities,
    EngineResult,
    EngineSpec,
    WindowProgress,
)
from hushdrop.pipeline.engines.qwen3.checkpoints import check_transformers, fingerprint, resolve_checkpoint
from hushdrop.pipeline.engines.qwen3.options import ALIGNER_MAX_S, ENGINE_NAME, Qwen3Options
from hushdrop.pipeline.engines.qwen3.text import (
    ALIGNER_LANGUAGES,
    LANGUAGES,
    build_context,
    interpolate_segments,
    language_code,
    language_name,
    parse_output,
    split_sentences,
)
from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.job import Segment, Word
from hushdrop.pipeline.text import RepeatGuard

log = logging.getLogger(__name__)


@dataclass
class DecodeItem:
    """A stretch of one window that is decoded in one model call, and what came of it."""

    window: int
    offset: int  # samples from the window start
    audio: np.ndarray
    text: str = ""
    language: str | None = None  # model language name
    words: list[Word] | None = None

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def _pick_device(spec: EngineSpec) -> tuple[str, Any]:
    import torch

    device = spec.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device: cuda was requested but torch sees no CUDA device; use device: auto or cpu")
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if spec.compute_type == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif spec.compute_type in dtypes:
        dtype = dtypes[spec.compute_type]
    else:
        raise ModelError(f"qwen3-asr compute_type {spec.compute_type!r}: use auto, {', '.join(dtypes)}")
    return device, dtype


def _attn_implementation(device: str) -> str:
    if device.startswith("cuda"):
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


class Qwen3AsrEngine(Engine):
    name = ENGINE_NAME

    def __init__(self, spec: EngineSpec, options: Qwen3Options | None = None):
        self.spec = spec
        self.options = options or Qwen3Options()
        self.transformers_version = check_transformers()
        import torch
        from transformers import Qwen3ASRForConditionalGeneration, Qwen3ASRProcessor

        self.model_path = resolve_checkpoint(spec.model, "model")
        self.aligner_path = resolve_checkpoint(spec.aligner, "aligner") if spec.aligner else None
        self.device, self.dtype = _pick_device(spec)
        self.attn_implementation = _attn_implementation(self.device)
        if spec.cpu_threads > 0:
            torch.set_num_threads(spec.cpu_threads)
        self.processor = self._load(Qwen3ASRProcessor, self.model_path)
        self.model = self._load(Qwen3ASRForConditionalGeneration, self.model_path, model=True)
        self.aligner = self.aligner_processor = None
        if self.aligner_path is not None:
            from transformers import Qwen3ASRForTokenClassification

            self.aligner_processor = self._load(Qwen3ASRProcessor, self.aligner_path)
            self.aligner = self._load(Qwen3ASRForTokenClassification, self.aligner_path, model=True)
        eos = self.model.generation_config.eos_token_id or self.model.config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.guard = RepeatGuard()  # its defaults are the thresholds for decoder output
        self._lock = threading.Lock()
        self.capabilities = EngineCapabilities(max_window_s=self.options.chunk_length_s)

    def _load(self, cls: Any, path: Path, model: bool = False) -> Any:
        kwargs: dict[str, Any] = {"local_files_only": True}
        if model:
            kwargs.update(dtype=self.dtype, attn_implementation=self.attn_implementation)
        try:
            loaded = cls.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise ModelError(f"could not load {cls.__name__} from {path}: {exc}") from exc
        return loaded.to(self.device).eval() if model else loaded

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.spec.model,
            "model_path": str(self.model_path),
            "model_fingerprint": fingerprint(self.model_path),
            "aligner": self.spec.aligner,
            "aligner_path": str(self.aligner_path) if self.aligner_path else None,
            "device": self.device,
            "compute_type": str(self.dtype).removeprefix("torch."),
            "attn_implementation": self.attn_implementation,
            "transformers": self.transformers_version,
        }

    def close(self) -> None:
        import torch

        self.model = self.aligner = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- transcription ---------------------------------------------------------------

    def transcribe(
        self,
        windows: Sequence[np.ndarray],
        request: DecodeRequest,
        progress: WindowProgress | None = None,
    ) -> list[EngineResult]:
        opts = self.options.updated(request.options)
        forced = language_name(request.language) if request.language else None
        context = build_context(opts.context, request.glossary)
        align = self.aligner is not None and request.word_timestamps
        limit = min(opts.chunk_length_s, ALIGNER_MAX_S) if align else opts.chunk_length_s

        items: list[DecodeItem] = []
        for index, window in enumerate(windows):
            audio = np.asarray(window, dtype=np.float32).reshape(-1)
            for start, end in split_at_quiet_points(audio, SAMPLE_RATE, limit):
                items.append(DecodeItem(index, start, audio[start:end]))

        with self._lock:
            self._decode_all(items, forced, context, opts, progress)
            if align:
                self._align_all(items, opts)
        return [self._merge(index, [p for p in items if p.window == index]) for index in range(len(windows))]

    def _batches(self, items: list[DecodeItem], size: int) -> list[list[DecodeItem]]:
        # Longest first, so each batch holds similar lengths and pads little.
        ordered = sorted(items, key=lambda p: -len(p.audio))
        return [ordered[i : i + size] for i in range(0, len(ordered), size)]

    def _decode_all(
        self,
        items: list[DecodeItem],
        forced: str | None,
        context: str | None,
        opts: Qwen3Options,
        progress: WindowProgress | None,
    ) -> None:
        done: Counter[int] = Counter()
        suspects: list[DecodeItem] = []
        for batch in self._batches(items, opts.batch_size):
            for item, (raw, runaway) in zip(batch, self._generate(batch, forced, context, opts, retry=False)):
                self._store(item, raw, forced)
                if runaway or self.guard.has_loop(item.text):
                    suspects.append(item)
                if progress is not None:
                    done[item.window] += item.seconds
                    progress(item.window, done[item.window])
        for batch in self._batches(suspects, opts.batch_size):
            for item, (raw, runaway) in zip(batch, self._generate(batch, forced, context, opts, retry=True)):
                self._store(item, raw, forced)
                if self.guard.has_loop(item.text):
                    item.text = self.guard.cut(item.text)
                    log.warning("qwen3-asr: window %d still loops after a re-decode; repeats cut", item.window)
                elif runaway:
                    log.warning("qwen3-asr: window %d hit the token budget twice; text may be incomplete", item.window)
                else:
                    log.info("qwen3-asr: window %d looped; re-decoded with a repetition penalty", item.window)

    def _store(self, item: DecodeItem, raw: str, forced: str | None) -> None:
        parsed = parse_output(raw, forced)
        item.text, item.language = parsed.text, parsed.language

    def _generate(
        self,
        batch: list[DecodeItem],
        forced: str | None,
        context: str | None,
        opts: Qwen3Options,
        retry: bool,
    ) -> list[tuple[str, bool]]:
        """Decoded text (special tokens removed) and whether it ran out of tokens, per item."""
        import torch

        inputs = self.processor.apply_transcription_request(
            audio=[p.audio for p in batch], language=forced, prompt=context
        )
        inputs = inputs.to(self.device)
        inputs["input_features"] = inputs["input_features"].to(self.dtype)
        budgets = [opts.max_new_tokens(p.seconds) for p in batch]
        kwargs: dict[str, Any] = {"max_new_tokens": max(budgets), "do_sample": False, "num_beams": 1}
        if retry:
            kwargs.update(repetition_penalty=opts.repetition_penalty, no_repeat_ngram_size=opts.no_repeat_ngram_size)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        generated = out[:, inputs["input_ids"].shape[1] :].tolist()
        results = []
        for tokens, budget in zip(generated, budgets):
            end = next((i for i, t in enumerate(tokens) if t in self.eos_ids), None)
            runaway = end is None or end >= budget
            tokens = tokens[: budget if end is None else min(end, budget)]
            results.append((self.processor.tokenizer.decode(tokens, skip_special_tokens=True), runaway))
        return results

    def _align_all(self, items: list[DecodeItem], opts: Qwen3Options) -> None:
        import torch

        todo = [p for p in items if p.text and language_code(p.language) in ALIGNER_LANGUAGES | {None}]
        for batch in self._batches(todo, opts.batch_size):
            try:
                inputs, word_lists = self.aligner_processor.prepare_forced_aligner_inputs(
                    audio=[p.audio for p in batch],
                    transcript=[p.text for p in batch],
                    language=[LANGUAGES.get(language_code(p.language) or "") for p in batch],
                )
            except (ImportError, ValueError) as exc:  # e.g. Japanese needs nagisa
                log.warning("qwen3-asr: no word times for %d windows: %s", len(batch), exc)
                continue
            inputs = inputs.to(self.device)
            inputs["input_features"] = inputs["input_features"].to(self.dtype)
            with torch.inference_mode():
                logits = self.aligner(**inputs).logits
            items = self.aligner_processor.decode_forced_alignment(
                logits.float(), inputs["input_ids"], word_lists, timestamp_token_id=self.aligner.config.timestamp_token_id
            )
            for item, words in zip(batch, items):
                limit = item.seconds
                item.words = [
                    Word(start=min(w["start_time"], limit), end=min(max(w["end_time"], w["start_time"]), limit), text=w["text"])
                    for w in words
                ]

    def _segments(self, item: DecodeItem) -> list[Segment]:
        code = language_code(item.language)
        sentences = split_sentences(item.text)
        if not sentences:
            return []
        if item.words:
            segments = self._aligned_segments(item, sentences, code)
            if segments is not None:
                return segments
        return interpolate_segments(sentences, item.audio, code)

    def _aligned_segments(self, item: DecodeItem, sentences: list[str], code: str | None) -> list[Segment] | None:
        """Sentences with the aligner's words; None when words and sentences do not line up."""
        assert item.words is not None and self.aligner_processor is not None
        counts = [len(self.aligner_processor.split_words_for_alignment(s, item.language)) for s in sentences]
        if sum(counts) != len(item.words):
            return None
        segments: list[Segment] = []
        pos = 0
        for sentence, count in zip(sentences, counts):
            words = item.words[pos : pos + count]
            pos += count
            if not words:  # punctuation only: belongs to the sentence before
                if segments:
                    segments[-1].text = f"{segments[-1].text} {sentence}"
                continue
            spoken = sentence.split()
            if len(spoken) == len(words):  # keep the punctuation the aligner strips
                words = [replace(w, text=t) for w, t in zip(words, spoken)]
            segments.append(Segment(start=words[0].start, end=words[-1].end, text=sentence, words=words, language=code))
        return segments

    def _merge(self, index: int, items: list[DecodeItem]) -> EngineResult:
        segments: list[Segment] = []
        voted: Counter[str] = Counter()
        for item in sorted(items, key=lambda p: p.offset):
            offset = item.offset / SAMPLE_RATE
            if item.language:
                voted[item.language] += item.seconds
            for seg in self._segments(item):
                seg.start += offset
                seg.end += offset
                for word in seg.words:
                    word.start += offset
                    word.end += offset
                segments.append(seg)
        language = language_code(voted.most_common(1)[0][0]) if voted else None
        return EngineResult(
            segments=segments,
            language=language,
            language_probability=None,  # the model states a language but gives no probability
            no_speech=not segments,
        )
