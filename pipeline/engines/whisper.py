"""The ``whisper`` engine: faster-whisper (CTranslate2) on CPU (int8) or CUDA (float16).

Importing this module loads neither faster-whisper nor CTranslate2: the registry entry
(options, languages, models) is read when config.yaml is checked, the model only when a
worker opens its chain.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import Field, field_validator

from hushdrop.pipeline.engines.base import (
    SAMPLE_RATE,
    DecodeRequest,
    Engine,
    EngineCapabilities,
    EngineEntry,
    EngineOptions,
    EngineResult,
    EngineSpec,
    WindowProgress,
)
from hushdrop.pipeline.engines import catalogue, hub
from hushdrop.pipeline.engines.catalogue import WHISPER_RUNTIME_BYTES
from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.fsutil import sha256_file
from hushdrop.pipeline.job import TRANSLATION_LANGUAGE, Segment, Word
from hushdrop.pipeline.models import WHISPER_BASE_SHA256, ModelStatus, bundled_whisper_base

ENGINE_NAME = "whisper"

# The codes faster-whisper's tokenizer knows. faster-whisper publishes them only as the
# private ``faster_whisper.tokenizer._LANGUAGE_CODES`` or through a loaded model
# (``WhisperModel.supported_languages``), and the config is checked without loading one;
# so this is a copy, and tests/engines/test_whisper.py checks it against the model's list.
LANGUAGES = frozenset(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he "
    "hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl "
    "nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz "
    "vi yi yo zh yue".split()
)


class WhisperOptions(EngineOptions):
    """``engine_options`` for whisper: faster-whisper's ``transcribe`` arguments, and ``batch_size``.

    A key left out keeps the engine's setting (see ``WhisperEngine._transcribe_one``) or
    faster-whisper's default; a key given replaces it, as written.
    """

    engine = ENGINE_NAME

    batch_size: int | None = Field(None, ge=1, description="pieces per call through the batched pipeline; the stage's batch_size by default")
    language: str | None = None
    task: Literal["transcribe", "translate"] | None = None  # refused: the profile's ``task`` says it
    log_progress: bool | None = None
    beam_size: int | None = Field(None, ge=1)
    best_of: int | None = Field(None, ge=1)
    patience: float | None = None
    length_penalty: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = Field(None, ge=0)
    temperature: float | list[float] | None = None
    compression_ratio_threshold: float | None = None
    log_prob_threshold: float | None = None
    no_speech_threshold: float | None = None
    condition_on_previous_text: bool | None = None
    prompt_reset_on_temperature: float | None = None
    initial_prompt: str | list[int] | None = None
    prefix: str | None = None
    suppress_blank: bool | None = None
    suppress_tokens: list[int] | None = None
    without_timestamps: bool | None = None
    max_initial_timestamp: float | None = None
    word_timestamps: bool | None = None
    prepend_punctuations: str | None = None
    append_punctuations: str | None = None
    multilingual: bool | None = None
    vad_filter: bool | None = None
    vad_parameters: dict[str, Any] | None = None
    max_new_tokens: int | None = None
    chunk_length: int | None = None
    clip_timestamps: str | list[float] | list[dict[str, Any]] | None = None
    hallucination_silence_threshold: float | None = None
    hotwords: str | None = None
    language_detection_threshold: float | None = None
    language_detection_segments: int | None = None

    @field_validator("task")
    @classmethod
    def _task_is_the_profiles(cls, value: str | None) -> str | None:
        """What a job is asked for (transcribe or translate) is one profile setting, ``task``,
        which the outputs and the text stages follow; an engine option could only contradict it."""
        if value is not None:
            raise ValueError(f"set the profile's `task: {value}` instead of engine_options.task")
        return value


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # a broken CUDA install means: no CUDA
        return False


def worker_memory(name: str) -> int:
    """Bytes a worker holding model ``name`` needs: its catalogue figure, or for a model of the
    user's (a path, or a ``models:`` entry) the runtime plus its files, never less than base's."""
    cat = catalogue.current()
    base = cat.find("base", ENGINE_NAME)
    assert base is not None
    entry = cat.find(name, ENGINE_NAME)
    if entry is not None and entry.memory_int8:
        return entry.memory_int8
    if entry is not None:
        model_bytes = hub.pulled_size(entry, cat)
    else:
        try:
            model_bytes = (Path(name).expanduser() / "model.bin").stat().st_size
        except OSError:
            model_bytes = None
    if model_bytes is None:
        return base.memory_int8  # the model is missing: the worker will say so when it loads
    return max(base.memory_int8, WHISPER_RUNTIME_BYTES + int(model_bytes * 0.9))


def _resolve_model(name: str) -> tuple[Path, str | None]:
    """The folder of model ``name`` and its model.bin's sha256 where already known."""
    if name == "base":
        return bundled_whisper_base(), WHISPER_BASE_SHA256
    cat = catalogue.current()
    entry = cat.find(name, ENGINE_NAME)
    if entry is not None:
        folder = hub.installed(entry, cat)
        return folder, hub.pulled_sha256(folder, "model.bin")
    path = Path(name).expanduser()
    if (path / "model.bin").is_file():
        # without it faster-whisper fetches a tokenizer from the internet while loading
        if not (path / "tokenizer.json").is_file():
            raise ModelError(
                f"whisper model {path} has no tokenizer.json: copy the tokenizer.json of the model it was converted "
                f"from into it. hushdrop never downloads while transcribing."
            )
        return path, None
    raise ModelError(
        f"whisper model {name!r} not found: use a model name ({', '.join(cat.names(ENGINE_NAME))}; "
        f"`hushdrop models` lists them) or the path of a CTranslate2 model directory containing model.bin "
        f"and tokenizer.json. hushdrop never downloads models while transcribing."
    )


def model_statuses() -> list[ModelStatus]:
    """The bundled base model (reassembled and verified here on first use) and every other catalogue
    model, pulled or not; a user's own CTranslate2 directory is named by path, so it is not listed."""
    statuses = []
    try:
        path = bundled_whisper_base()
    except ModelError as exc:
        statuses.append(ModelStatus(ENGINE_NAME, "base", False, "-", str(exc)))
    else:
        statuses.append(ModelStatus(ENGINE_NAME, "base", True, str(path), f"bundled, sha256 {WHISPER_BASE_SHA256[:12]}… verified"))
    return statuses + hub.catalogue_statuses(ENGINE_NAME, skip=("base",))


def with_first_merge(tokenizer):
    """``tokenizer`` with Whisper's first BPE merge, "Ġ t", where its tokenizer.json lacks it.

    The bundled base model's tokenizer.json holds "Ġt" (id 256) in its vocabulary but no merge that
    makes it, so " the" and every other lower-case word starting with "t" after a space encode as
    "Ġ" + the rest, a split the model never produces itself (it decodes " the" as one token). Decoding is
    unaffected (token ids become text either way); what hushdrop encodes is: the glossary
    (``hotwords``) and a prompt. Whisper's own tokenizer (tiktoken) ranks "Ġt" first, so the merge
    goes in at rank 0. A tokenizer that has it, or is not this kind of BPE, is returned as it is."""
    import tokenizers

    data = json.loads(tokenizer.to_str())
    model = data.get("model") or {}
    merges = model.get("merges")
    if model.get("type") != "BPE" or not merges or "Ġt" not in (model.get("vocab") or {}):
        return tokenizer
    pairs = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    if ("Ġ", "t") in pairs:
        return tokenizer
    merges.insert(0, "Ġ t" if isinstance(merges[0], str) else ["Ġ", "t"])
    return tokenizers.Tokenizer.from_str(json.dumps(data))


class EncodeOnce:
    """``WhisperModel.encode`` that hands back its last output when the very same features come
    again (compared in full, so a different piece is always encoded), once — per thread, since
    windows decoded at the same time each have their own.

    It lets :meth:`WhisperEngine._detect_language` encode a window's first 30 s to find its
    language and the decoding that follows reuse that encoding, where faster-whisper would
    encode those 30 s twice (once to detect, once to decode).
    """

    def __init__(self, encode):
        self._encode = encode
        self._local = threading.local()
        self.reused = 0  # for tests and benchmarks

    def __call__(self, features: np.ndarray):
        last, self._local.last = getattr(self._local, "last", None), None
        if last is not None and last[0].shape == features.shape and np.array_equal(last[0], features):
            self.reused += 1
            return last[1]
        output = self._encode(features)
        self._local.last = (np.array(features, copy=True), output)
        return output


# A 30 s piece is decoded in another language than the piece before it only where Whisper hears
# that language in it with a probability above this: more likely than all the others together.
_PIECE_LANGUAGE_ABOVE = 0.5


class PieceLanguage:
    """The language of each 30 s piece of a window, where faster-whisper detects it per piece
    (``multilingual``): it stays the previous piece's unless the piece is more likely in another
    language than not; and where it changes, the text before the change is left out of the prompt
    of every piece after it.

    Installed on a ``WhisperModel``: it stands in for the CTranslate2 model (whose
    ``detect_language`` faster-whisper calls on every piece, passing everything else through), for
    ``get_prompt`` and for ``generate_with_fallback``. Why:

    - faster-whisper decodes a piece in whatever language comes first, however unsure. Under noise
      or babble a piece of one language is often heard as another (Welsh or Latin for German
      speech) at well under even odds, and then decoded as that language: garbled words, or none.
      Once a recording has changed language, its pieces are heard with far more certainty.
    - the prompt (``condition_on_previous_text``) is text in the previous piece's language; given
      to a piece in another, the decoder goes on in the prompt's language and pattern, and the new
      language's speech comes out as invention, even though the piece is decoded in its own
      language (docs/benchmarks.md). In a translation the prompt is English whatever was spoken,
      so there it stays.
    - a piece faster-whisper skips as no speech (its ``no_speech_threshold``) leaves the language
      and the prompt as they were before it: noise heard as some language must not decide the next.

    Known limit: the piece where a recording changes language still holds some of the old one and is
    often heard as the new one at under even odds; it keeps the old language and the prompt, and its
    new-language speech may come out translated into the old. The pieces after it are heard with
    certainty and are written in the new language. Dropping the prompt wherever the most likely
    language differs fixes that piece but costs noisy recordings whole pieces (docs/benchmarks.md).

    The state is per thread and per window (:meth:`window`), since windows decoded at the same time
    each have their own; outside a window, detection and prompts are faster-whisper's own.
    """

    def __init__(self, whisper_model):
        self._model = whisper_model.model
        self._get_prompt = whisper_model.get_prompt
        self._generate_with_fallback = whisper_model.generate_with_fallback
        self._local = threading.local()
        whisper_model.model = self
        whisper_model.get_prompt = self.get_prompt
        whisper_model.generate_with_fallback = self.generate_with_fallback

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    @contextmanager
    def window(self, language: str | None, translate: bool = False):
        """Decode one window whose first piece is in ``language`` (None: faster-whisper's own ways)."""
        local = self._local
        local.language, local.changed, local.left_behind, local.before = language, False, [], None
        local.keep_prompt = translate
        try:
            yield
        finally:
            local.language = None

    def detect_language(self, *args, **kwargs):
        results = self._model.detect_language(*args, **kwargs)
        local = self._local
        previous = getattr(local, "language", None)
        if previous is None:
            return results
        local.before = (previous, local.left_behind)  # put back if this piece is skipped as no speech
        results = [keep_language(previous, ranked) for ranked in results]
        local.language = results[0][0][0][2:-2]
        local.changed = local.language != previous and not local.keep_prompt
        return results

    def get_prompt(self, tokenizer, previous_tokens, *args, **kwargs):
        local = self._local
        if getattr(local, "language", None) is not None:
            if local.changed:  # everything so far is in the old language
                local.left_behind, local.changed = list(previous_tokens), False
            # faster-whisper hands every piece all the text since its last reset: the text before
            # the change comes first, unless a reset (after a piece sampled hot) has dropped it
            left = local.left_behind
            if left and previous_tokens[: len(left)] == left:
                previous_tokens = previous_tokens[len(left):]
        return self._get_prompt(tokenizer, previous_tokens, *args, **kwargs)

    def generate_with_fallback(self, encoder_output, prompt, tokenizer, options):
        outcome = self._generate_with_fallback(encoder_output, prompt, tokenizer, options)
        local = self._local
        if getattr(local, "language", None) is not None and local.before is not None:
            result, avg_logprob = outcome[0], outcome[1]
            # faster-whisper's own test for skipping a piece as no speech (generate_segments)
            skipped = (
                options.no_speech_threshold is not None
                and result.no_speech_prob > options.no_speech_threshold
                and not (options.log_prob_threshold is not None and avg_logprob > options.log_prob_threshold)
            )
            if skipped:
                local.language, local.left_behind = local.before
            local.before = None
        return outcome


def keep_language(language: str, ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """``ranked`` (``("<|de|>", p)`` pairs, most likely first) with ``language`` moved to the front,
    unless the language first in it has a probability above ``_PIECE_LANGUAGE_ABOVE`` or the
    detector does not list ``language`` at all (it lists every language it knows)."""
    token = f"<|{language}|>"
    if ranked[0][0] == token or ranked[0][1] > _PIECE_LANGUAGE_ABOVE:
        return ranked
    ours = [pair for pair in ranked if pair[0] == token]
    return ours + [pair for pair in ranked if pair[0] != token] if ours else ranked


# a token the decoder finds next to impossible costs what one at this probability costs: one such
# token (an end of text where speech goes on) must not outweigh every other token of a reading
_LEAST_LIKELY = 1e-6


class WhisperEngine(Engine):
    name = ENGINE_NAME

    def __init__(self, spec: EngineSpec):
        from faster_whisper import WhisperModel

        self.spec = spec
        self.model_path, self.model_sha256 = _resolve_model(spec.model)
        if spec.device == "auto":
            self.device = "cuda" if cuda_available() else "cpu"
        else:
            self.device = spec.device
        # concurrent pieces are a CPU measure: a GPU already runs one call on all its cores
        self.concurrency = max(1, spec.concurrent_pieces) if self.device == "cpu" else 1
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
                # CTranslate2 keeps one copy of the weights and runs this many calls at once, each
                # on ``cpu_threads`` threads: how pieces of one recording are decoded side by side
                num_workers=self.concurrency,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"could not load whisper model from {self.model_path}: {exc}") from exc
        self.model.hf_tokenizer = with_first_merge(self.model.hf_tokenizer)
        self.model.encode = EncodeOnce(self.model.encode)
        self.pieces = PieceLanguage(self.model)
        self._pipeline = None  # BatchedInferencePipeline, made on first use
        self.capabilities = EngineCapabilities(max_window_s=600.0, concurrent_windows=self.concurrency)

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
            "concurrent_pieces": self.concurrency,
        }

    def transcribe(
        self,
        windows: Sequence[np.ndarray],
        request: DecodeRequest,
        progress: WindowProgress | None = None,
    ) -> list[EngineResult]:
        extras = WhisperOptions.parse(request.options).model_dump(exclude_unset=True)
        if self.concurrency == 1 or len(windows) == 1:
            return [self._transcribe_one(i, w, request, extras, progress) for i, w in enumerate(windows)]
        # the longest first, so that the last piece to start is a short one
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(windows)), thread_name_prefix="decode") as pool:
            futures = {i: pool.submit(self._transcribe_one, i, windows[i], request, extras, progress) for i in order}
            return [futures[i].result() for i in range(len(windows))]

    def _transcribe_one(
        self,
        index: int,
        audio: np.ndarray,
        request: DecodeRequest,
        extras: dict[str, Any],
        progress: WindowProgress | None,
    ) -> EngineResult:
        glossary = ", ".join(request.glossary) if request.glossary else None
        options = dict(
            language=request.language,
            task=request.task,  # translate: English text, whatever the language spoken
            beam_size=request.beam_size,
            word_timestamps=request.word_timestamps,
            vad_filter=False,  # the transcribe stage has already cut out non-speech
            # each 30 s piece of a window is decoded with the text before it as its prompt, as
            # Whisper does: without it, a sentence that runs across the seek point loses the words
            # there. Windows are decoded apart, so nothing carries from one window to the next;
            # faster-whisper drops the prompt after a piece that needed a temperature above 0.5
            # (its ``prompt_reset_on_temperature``), so a bad piece does not poison the next, and
            # PieceLanguage leaves out the text from before a change of language.
            # Measured on our own speech, joined into recordings of 35-65 s (docs/benchmarks.md).
            condition_on_previous_text=True,
            hotwords=glossary,
            # language auto: detect it on every 30 s piece, not once per window. Decoded under
            # the first piece's language, a recording that changes language (a meeting, an
            # interview, joined voice memos) fails Whisper's checks on the other pieces, and
            # each is decoded again at up to five temperatures (docs/benchmarks.md).
            multilingual=request.language is None,
        )
        # no ``hallucination_silence_threshold``: it skips a silent gap of more than 2 s before
        # a suspected hallucination, and the VAD has already cut every such gap out of the
        # window. What it still did was re-decode real speech that merely looked unlikely
        # (another language, a mumble) from one second further on (docs/benchmarks.md).
        options.update(extras)
        batch_size = int(options.pop("batch_size", request.batch_size) or 1)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        detected: tuple[str, float] | None = None
        if options["language"] is None and batch_size == 1 and not {"language_detection_segments", "language_detection_threshold"} & set(extras):
            detected = self._detect_language(audio)
            if detected is not None:
                options["language"] = detected[0]  # multilingual stays on: each piece is still detected
        if batch_size > 1:
            # faster-whisper's batched pipeline: Silero VAD cuts the window into pieces of at
            # most 30 s at its pauses and the model decodes ``batch_size`` pieces per call.
            # Each piece is decoded on its own (never conditioned on the one before, at the
            # first temperature only), so these two options do not apply. Not the default: it
            # is faster but loses whole sentences (docs/benchmarks.md).
            options.pop("condition_on_previous_text", None)
            options.pop("hallucination_silence_threshold", None)
            options["vad_filter"] = True
            # timestamp tokens, as in sequential decoding: a piece comes back as sentences,
            # not as one segment of up to 30 s that the region table could not split
            options.setdefault("without_timestamps", False)
            segments_iter, info = self._batched().transcribe(audio, batch_size=batch_size, **options)
            piece_language = nullcontext()
        else:
            segments_iter, info = self.model.transcribe(audio, **options)
            # per-piece detection (``multilingual``): a piece keeps the language of the one before
            # it unless it is more likely in another; no prompt holds text from before a change
            piece_language = self.pieces.window(
                detected[0] if detected and options.get("multilingual") else None, translate=request.task == "translate"
            )
        segments: list[Segment] = []
        tokens: list[list[int]] = []
        with piece_language:
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
                        # the language of the text: English in a translation (the result keeps the one spoken)
                        language=TRANSLATION_LANGUAGE if request.task == "translate" else info.language,
                        avg_logprob=seg.avg_logprob,
                        no_speech_prob=seg.no_speech_prob,
                    )
                )
                tokens.append(list(seg.tokens))
                if progress is not None:
                    progress(index, seg.end)
        return EngineResult(
            segments=segments,
            language=info.language,
            language_probability=detected[1] if detected else info.language_probability,
            no_speech=not any(s.text for s in segments),
            tokens=tokens,
        )

    def score(
        self, audio: np.ndarray, readings: Sequence[EngineResult], task: str = "transcribe"
    ) -> list[float | None]:
        """Each reading's mean log-probability per token as the words of ``audio``: its own tokens,
        then the end of the text, given to the decoder (CTranslate2's ``align``, which faster-whisper
        runs for word times) after the language and task, without a prompt or timestamps. The
        audio is taken in 30 s pieces from its start, as the model hears at most 30 s, and each
        segment is scored on the piece its middle falls in: every reading on the same pieces, each
        piece encoded once. The end of the text counts once per piece, so a reading that stops
        while the piece still holds speech scores low where its words alone would not."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer

        extractor = self.model.feature_extractor
        piece = extractor.n_samples  # 30 s
        eot = self.model.hf_tokenizer.token_to_id("<|endoftext|>")
        tokenizers = [
            Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task=task, language=reading.language)
            if reading.language is not None else None
            for reading in readings
        ]
        last = max(0, (len(audio) - 1) // piece)
        tokens_at: dict[int, list[tuple[int, list[int]]]] = {}  # piece -> (reading, its tokens there)
        for r, reading in enumerate(readings):
            if tokenizers[r] is None or len(reading.tokens) != len(reading.segments):
                continue
            by_piece: dict[int, list[int]] = {}
            for seg, ids in zip(reading.segments, reading.tokens):
                text_ids = [i for i in ids if i < eot]  # the timestamps and special tokens come after it
                if text_ids:
                    k = min(last, int((seg.start + seg.end) / 2 * SAMPLE_RATE // piece))
                    by_piece.setdefault(k, []).extend(text_ids)
            for k, ids in by_piece.items():
                tokens_at.setdefault(k, []).append((r, ids))
        totals = [[0.0, 0] for _ in readings]
        for k in sorted(tokens_at):
            features = extractor(np.ascontiguousarray(audio[k * piece : (k + 1) * piece], dtype=np.float32))
            frames = min(extractor.nb_max_frames, max(1, features.shape[-1] - 1))
            encoded = self.model.encode(pad_or_trim(features[:, :frames]))
            for r, ids in tokens_at[k]:
                tokenizer = tokenizers[r]
                given = ids[: self.model.max_length // 2 - 2] + [tokenizer.eot]
                start = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
                (aligned,) = self.model.model.align(encoded, start, [given], [frames])
                probabilities = np.asarray(aligned.text_token_probs[: len(given)], dtype=np.float64)
                totals[r][0] += float(np.log(np.maximum(probabilities, _LEAST_LIKELY)).sum())
                totals[r][1] += len(probabilities)
        return [round(total / count, 4) if count else None for total, count in totals]

    def _detect_language(self, audio: np.ndarray) -> tuple[str, float] | None:
        """The language of ``audio``'s first 30 s and its probability, from the encoding that
        decoding those 30 s will reuse (:class:`EncodeOnce`); None for audio too short to have any.

        The features are built as faster-whisper builds its first piece (``generate_segments``:
        all frames but the last, padded to 30 s), so that the encodings are identical.
        """
        from faster_whisper.audio import pad_or_trim

        extractor = self.model.feature_extractor
        features = extractor(audio)
        content_frames = features.shape[-1] - 1
        if content_frames <= 0:
            return None
        encoded = self.model.encode(pad_or_trim(features[:, : min(extractor.nb_max_frames, content_frames)]))
        (token, probability), *_ = self.model.model.detect_language(encoded)[0]
        return token[2:-2], float(probability)


ENTRY = EngineEntry(
    name=ENGINE_NAME,
    Options=WhisperOptions,
    languages=LANGUAGES,
    load=WhisperEngine,
    model_statuses=model_statuses,
    is_catalogue_model=lambda name: catalogue.current().find(name, ENGINE_NAME) is not None,
    worker_memory=worker_memory,
    concurrent_pieces=True,
    can_translate=True,  # into English; a model trained without it says so in the catalogue
)

__all__ = ["ENTRY", "LANGUAGES", "WhisperEngine", "WhisperOptions", "cuda_available", "SAMPLE_RATE"]
