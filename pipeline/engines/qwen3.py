"""The ``qwen3-asr`` engine: Qwen3-ASR on transformers' native classes.

Speech goes through ``Qwen3ASRProcessor`` + ``Qwen3ASRForConditionalGeneration`` in
batches (bf16 on CUDA, fp32 on CPU); word times come from the optional forced aligner
``Qwen3ASRForTokenClassification``. Checkpoints are always loaded from local
directories: either a path, or a known name pulled once into ``cache_dir()/models``
with ``hushdrop models pull NAME`` (see :func:`pull_model`).

What the model does, and how this module maps it onto the engine contract:

- Output text is ``language <Name><asr_text><transcript>``; ``language None`` with an
  empty transcript means "no speech". A forced language is prefilled into the
  assistant turn, so the model then writes only the transcript.
- The glossary (and an optional free-text ``context`` option) goes into the system
  turn, which the model reads as context / hot words.
- A window longer than the per-call limit (1200 s, or 300 s when the aligner runs) is
  cut at quiet points and the pieces' results are merged back with their offsets.
- Greedy decoding can loop ("I think I think ..."): a looping or runaway window is
  decoded again with a repetition penalty, and any loop left is cut.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import shutil
import threading
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

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
from hushdrop.pipeline.errors import ConfigError, ModelError
from hushdrop.pipeline.job import Segment, Word
from hushdrop.pipeline.text import RepeatGuard
from hushdrop.pipeline.models import ModelStatus, cache_dir

log = logging.getLogger(__name__)

ENGINE_NAME = "qwen3-asr"
MIN_TRANSFORMERS = "5.13"
MAX_WINDOW_S = 1200.0  # the model's per-call limit
ALIGNER_MAX_S = 300.0  # the forced aligner's per-call limit

ASR_CHECKPOINTS = ("Qwen/Qwen3-ASR-0.6B-hf", "Qwen/Qwen3-ASR-1.7B-hf")
ALIGNER_CHECKPOINTS = ("Qwen/Qwen3-ForcedAligner-0.6B-hf",)
ALIASES = {
    "qwen3-asr-0.6b": "Qwen/Qwen3-ASR-0.6B-hf",
    "qwen3-asr-1.7b": "Qwen/Qwen3-ASR-1.7B-hf",
    "qwen3-forcedaligner-0.6b": "Qwen/Qwen3-ForcedAligner-0.6B-hf",
    "qwen3-aligner-0.6b": "Qwen/Qwen3-ForcedAligner-0.6B-hf",
}

# ISO code -> the language name the model was trained with ("language <Name><asr_text>").
LANGUAGES: dict[str, str] = {
    "ar": "Arabic",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fa": "Persian",
    "fi": "Finnish",
    "fil": "Filipino",
    "fr": "French",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "mk": "Macedonian",
    "ms": "Malay",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sv": "Swedish",
    "th": "Thai",
    "tr": "Turkish",
    "vi": "Vietnamese",
    "yue": "Cantonese",  # its own language, not a variant of zh
    "zh": "Chinese",
}
_NAME_TO_CODE = {name.lower(): code for code, name in LANGUAGES.items()}
# The forced aligner knows only these.
ALIGNER_LANGUAGES = frozenset({"zh", "en", "yue", "fr", "de", "it", "ja", "ko", "pt", "ru", "es"})

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_NOT_READY_HINT = "run `hushdrop models pull {name}` or set model: /path"


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Qwen3Options:
    """Decoding settings; any field can be overridden per job via ``DecodeRequest.options``."""

    batch_size: int = 8
    chunk_length_s: float = MAX_WINDOW_S
    tokens_per_second: float = 6.0  # generation budget: ~3-5 tokens/s of fast speech, plus headroom
    token_margin: int = 32
    max_new_tokens_cap: int = 8192
    repetition_penalty: float = 1.15  # only for the re-decode of a looping window
    no_repeat_ngram_size: int = 10
    context: str = ""  # free text put before the glossary terms in the prompt

    def __post_init__(self) -> None:
        problems = []
        if self.batch_size < 1:
            problems.append("batch_size must be at least 1")
        if not 0 < self.chunk_length_s <= MAX_WINDOW_S:
            problems.append(f"chunk_length_s must be in (0, {MAX_WINDOW_S:g}]")
        if self.tokens_per_second <= 0 or self.token_margin < 0 or self.max_new_tokens_cap < 1:
            problems.append("tokens_per_second must be > 0, token_margin >= 0, max_new_tokens_cap >= 1")
        if self.repetition_penalty < 1.0 or self.no_repeat_ngram_size < 0:
            problems.append("repetition_penalty must be >= 1 and no_repeat_ngram_size >= 0")
        if problems:
            raise ConfigError("qwen3-asr options", problems)

    def updated(self, overrides: Mapping[str, Any]) -> Qwen3Options:
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ConfigError(
                "qwen3-asr options",
                [f"unknown option {key!r}; known: {', '.join(sorted(known))}" for key in unknown],
            )
        converted: dict[str, Any] = {}
        for key, value in overrides.items():
            current = getattr(self, key)
            try:
                converted[key] = type(current)(value)
            except (TypeError, ValueError):
                raise ConfigError("qwen3-asr options", [f"{key}: expected {type(current).__name__}, got {value!r}"])
        return replace(self, **converted) if converted else self

    def max_new_tokens(self, seconds: float) -> int:
        return max(1, min(self.max_new_tokens_cap, math.ceil(self.tokens_per_second * seconds) + self.token_margin))


def check_options(options: Mapping[str, Any]) -> Qwen3Options:
    """Validate a profile's ``engine_options`` for qwen3-asr (ConfigError naming each bad key)."""
    return Qwen3Options().updated(options)


# --------------------------------------------------------------------------- checkpoints


def canonical_name(name: str) -> str | None:
    """The hub name for a known checkpoint name or alias, else None."""
    lowered = name.strip().lower()
    for known in (*ASR_CHECKPOINTS, *ALIGNER_CHECKPOINTS):
        if lowered == known.lower():
            return known
    return ALIASES.get(lowered)


def checkpoint_dir(name: str) -> Path:
    """Where ``hushdrop models pull`` puts a known checkpoint."""
    return cache_dir() / "models" / name


def is_loadable(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        any(path.glob(pattern)) for pattern in _WEIGHT_PATTERNS
    )


def resolve_checkpoint(model: str, role: str = "model") -> Path:
    """A loadable local directory for ``model`` (a known name or a path), or ModelError."""
    known = canonical_name(model)
    path = checkpoint_dir(known) if known else Path(model).expanduser()
    if is_loadable(path):
        return path
    what = "is not a complete checkpoint (needs config.json and *.safetensors)" if path.is_dir() else "does not exist"
    pull_name = known or (ALIGNER_CHECKPOINTS[0] if role == "aligner" else ASR_CHECKPOINTS[0])
    raise ModelError(
        f"qwen3-asr {role} {model!r}: {path} {what}. Get a checkpoint one of two ways: "
        f"(1) on a machine with network access run `hushdrop models pull {pull_name}`, or "
        f"(2) copy a downloaded checkpoint directory (e.g. of {pull_name}) to this machine and set "
        f"`{role}: /path/to/that/directory`. hushdrop never downloads models while transcribing."
    )


def model_statuses() -> list[ModelStatus]:
    """Whether each known Qwen3-ASR checkpoint is in the cache and loadable."""
    statuses = []
    for name in (*ASR_CHECKPOINTS, *ALIGNER_CHECKPOINTS):
        path = checkpoint_dir(name)
        if is_loadable(path):
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            statuses.append(ModelStatus(ENGINE_NAME, name, True, str(path), f"pulled, {size / 1e9:.2f} GB"))
        else:
            statuses.append(ModelStatus(ENGINE_NAME, name, False, "-", _NOT_READY_HINT.format(name=name)))
    return statuses


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def pull_model(name: str) -> Path:
    """Download a known checkpoint once into ``cache_dir()/models/<name>`` and return its path.

    The only place hushdrop touches the network for Qwen3-ASR. It downloads into a
    sibling staging directory (resumable) and renames it into place when complete.
    """
    known = canonical_name(name)
    if known is None:
        choices = ", ".join([*ASR_CHECKPOINTS, *ALIGNER_CHECKPOINTS, *ALIASES])
        raise ModelError(f"unknown qwen3-asr checkpoint {name!r}; choose one of: {choices}")
    dest = checkpoint_dir(known)
    if is_loadable(dest):
        return dest
    manual = (
        f"On a machine with network access run `hushdrop models pull {known}` (or "
        f"`huggingface-cli download {known} --local-dir DIR`), copy the directory here and set "
        f"`model: /path/to/DIR` in the profile, or place it at {dest}."
    )
    if _offline():
        raise ModelError(f"cannot pull {known}: HF_HUB_OFFLINE is set, so no download is attempted. {manual}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelError(f"cannot pull {known}: huggingface_hub is not installed ({exc}). {manual}") from exc
    staging = dest.parent / f".{dest.name}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        snapshot_download(repo_id=known, local_dir=str(staging))
    except Exception as exc:  # connection, auth, disk: all end the same way for the user
        raise ModelError(f"could not download {known}: {type(exc).__name__}: {exc}. {manual}") from exc
    if not is_loadable(staging):
        raise ModelError(f"download of {known} into {staging} is incomplete (no config.json or weights). {manual}")
    shutil.rmtree(staging / ".cache", ignore_errors=True)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(staging, dest)
    return dest


def check_transformers() -> str:
    """The installed transformers version, or ModelError if it cannot run Qwen3-ASR."""
    upgrade = f'upgrade it: pip install "transformers>={MIN_TRANSFORMERS}"'
    try:
        import transformers
        from packaging.version import InvalidVersion, Version
    except ImportError as exc:
        raise ModelError(f"the qwen3-asr engine needs transformers>={MIN_TRANSFORMERS} and torch ({exc})") from exc
    version = str(transformers.__version__)
    try:
        too_old = Version(version) < Version(MIN_TRANSFORMERS)
    except InvalidVersion:
        too_old = False  # a dev build; the import below is the real test
    if too_old:
        raise ModelError(f"the qwen3-asr engine needs transformers>={MIN_TRANSFORMERS}, found {version}; {upgrade}")
    try:
        from transformers import (  # noqa: F401
            Qwen3ASRForConditionalGeneration,
            Qwen3ASRForTokenClassification,
            Qwen3ASRProcessor,
        )
    except ImportError as exc:
        raise ModelError(f"transformers {version} has no Qwen3-ASR classes ({exc}); {upgrade}") from exc
    return version


# --------------------------------------------------------------------------- text helpers


def language_name(code: str) -> str:
    """The model's name for an ISO code (a model language name is accepted as is)."""
    key = code.strip().lower()
    if key in LANGUAGES:
        return LANGUAGES[key]
    if key in _NAME_TO_CODE:
        return LANGUAGES[_NAME_TO_CODE[key]]
    raise ConfigError(
        "qwen3-asr language",
        [f"language {code!r} is not supported by qwen3-asr; use auto or one of: {', '.join(sorted(LANGUAGES))}"],
    )


def language_code(name: str | None) -> str | None:
    """The ISO code for a language name the model reported; None when unknown."""
    if not name:
        return None
    return _NAME_TO_CODE.get(name.strip().lower())


@dataclass
class ParsedOutput:
    language: str | None  # the model's language name
    text: str
    no_speech: bool


def parse_output(raw: str, forced_language: str | None = None) -> ParsedOutput:
    """Split decoded text (special tokens removed) into language name and transcript."""
    text = raw.strip()
    marker = "<asr_text>"
    if forced_language is not None:
        # The prompt already holds "language X<asr_text>"; a stray repeat is dropped.
        transcript = text.split(marker, 1)[-1].strip()
        return ParsedOutput(forced_language, transcript, not transcript)
    if marker not in text:
        return ParsedOutput(None, text, not text)
    prefix, transcript = text.split(marker, 1)
    transcript = transcript.strip()
    first = next((line.strip() for line in prefix.splitlines() if line.strip()), "")
    name = first[len("language ") :].strip() if first.lower().startswith("language ") else first
    if name.lower() == "none":
        return ParsedOutput(None, transcript, not transcript)
    return ParsedOutput(name or None, transcript, not transcript)


def build_context(context: str, glossary: Sequence[str]) -> str | None:
    terms = [t.strip() for t in glossary if t and t.strip()]
    parts = [context.strip()] if context.strip() else []
    if terms:
        parts.append(", ".join(dict.fromkeys(terms)))
    return "\n".join(parts) or None


_SENTENCE_END_RE = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？；])")


def split_sentences(text: str, max_chars: int = 240) -> list[str]:
    """Sentences of ``text``; an overlong one is broken at spaces/commas near ``max_chars``."""
    out: list[str] = []
    for sentence in _SENTENCE_END_RE.split(text.strip()):
        sentence = sentence.strip()
        while len(sentence) > max_chars:
            cut = max(sentence.rfind(" ", 0, max_chars), sentence.rfind("，", 0, max_chars), sentence.rfind(",", 0, max_chars))
            cut = cut + 1 if cut > max_chars // 3 else max_chars
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            out.append(sentence)
    return out


def speech_timeline(audio: np.ndarray, frame_s: float = 0.02) -> tuple[np.ndarray, float]:
    """Cumulative seconds of voiced audio at each frame boundary, and the frame length.

    Frames quieter than a tenth of the loud (95th-percentile) level count as pauses.
    """
    frame = int(frame_s * SAMPLE_RATE)
    n = len(audio) // frame
    if n == 0:
        duration = len(audio) / SAMPLE_RATE
        return np.array([0.0, duration]), duration
    rms = np.sqrt(np.square(audio[: n * frame].astype(np.float32).reshape(n, frame)).mean(axis=1))
    voiced = rms >= max(float(np.percentile(rms, 95)) * 0.1, 1e-5)
    if not voiced.any():
        voiced[:] = True
    return np.concatenate([[0.0], np.cumsum(voiced) * frame_s]), frame_s


def interpolate_segments(texts: Sequence[str], audio: np.ndarray, language: str | None) -> list[Segment]:
    """Times for consecutive ``texts`` spoken in ``audio``, without an aligner.

    Each text gets a share of the *voiced* time (see :func:`speech_timeline`)
    proportional to its character count, and that share is mapped back to clock time,
    so a pause inside the window moves the sentences after it later instead of
    smearing them evenly. An estimate, not an alignment: words stay empty.
    """
    timeline, frame_s = speech_timeline(audio)
    duration = len(audio) / SAMPLE_RATE
    weights = np.array([max(1, len(t)) for t in texts], dtype=np.float64)
    bounds = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()]) * timeline[-1]

    def start_of(voiced_s: float) -> float:  # start of the frame in which voiced_s is passed
        return min((int(np.searchsorted(timeline, voiced_s, side="right")) - 1) * frame_s, duration)

    def end_of(voiced_s: float) -> float:  # first frame boundary where voiced_s is reached
        return min(int(np.searchsorted(timeline, voiced_s - 1e-9, side="left")) * frame_s, duration)

    segments = []
    for text, lo, hi in zip(texts, bounds[:-1], bounds[1:]):
        start = start_of(lo)
        segments.append(Segment(start=start, end=max(start, end_of(hi)), text=text, language=language))
    return segments


# --------------------------------------------------------------------------- engine


@dataclass
class _Piece:
    """A stretch of one window that is decoded in one model call."""

    window: int
    offset: int  # samples from the window start
    audio: np.ndarray
    text: str = ""
    language: str | None = None  # model language name
    no_speech: bool = True
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


def _fingerprint(path: Path) -> str:
    """A cheap identity for a checkpoint: its config plus weight file names and sizes."""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for pattern in _WEIGHT_PATTERNS:
        for f in sorted(path.glob(pattern)):
            digest.update(f"{f.name}:{f.stat().st_size}".encode())
    return digest.hexdigest()[:16]


class Qwen3AsrEngine(Engine):
    name = ENGINE_NAME

    def __init__(self, spec: EngineSpec, options: Qwen3Options | None = None):
        self.spec = spec
        self.options = options or Qwen3Options()
        self.transformers_version = check_transformers()
        os.environ["HF_HUB_OFFLINE"] = "1"  # run/watch never reach the network, whatever the code below does
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
        self.guard = RepeatGuard()
        self._lock = threading.Lock()
        self.capabilities = EngineCapabilities(
            languages=frozenset(LANGUAGES),
            word_timestamps=self.aligner is not None,
            batching=True,
            devices=("cpu", "cuda"),
            max_window_s=self.options.chunk_length_s,
        )

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
            "model_fingerprint": _fingerprint(self.model_path),
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

        pieces: list[_Piece] = []
        for index, window in enumerate(windows):
            audio = np.asarray(window, dtype=np.float32).reshape(-1)
            for start, end in split_at_quiet_points(audio, SAMPLE_RATE, limit):
                pieces.append(_Piece(index, start, audio[start:end]))

        with self._lock:
            self._decode_all(pieces, forced, context, opts, progress)
            if align:
                self._align_all(pieces, opts)
        return [self._merge(index, [p for p in pieces if p.window == index]) for index in range(len(windows))]

    def _batches(self, pieces: list[_Piece], size: int) -> list[list[_Piece]]:
        # Longest first, so each batch holds similar lengths and pads little.
        ordered = sorted(pieces, key=lambda p: -len(p.audio))
        return [ordered[i : i + size] for i in range(0, len(ordered), size)]

    def _decode_all(
        self,
        pieces: list[_Piece],
        forced: str | None,
        context: str | None,
        opts: Qwen3Options,
        progress: WindowProgress | None,
    ) -> None:
        done: Counter[int] = Counter()
        suspects: list[_Piece] = []
        for batch in self._batches(pieces, opts.batch_size):
            for piece, (raw, runaway) in zip(batch, self._generate(batch, forced, context, opts, retry=False)):
                self._store(piece, raw, forced)
                if runaway or self.guard.has_loop(piece.text):
                    suspects.append(piece)
                if progress is not None:
                    done[piece.window] += piece.seconds
                    progress(piece.window, done[piece.window])
        for batch in self._batches(suspects, opts.batch_size):
            for piece, (raw, runaway) in zip(batch, self._generate(batch, forced, context, opts, retry=True)):
                self._store(piece, raw, forced)
                if self.guard.has_loop(piece.text):
                    piece.text = self.guard.cut(piece.text)
                    log.warning("qwen3-asr: window %d still loops after a re-decode; repeats cut", piece.window)
                elif runaway:
                    log.warning("qwen3-asr: window %d hit the token budget twice; text may be incomplete", piece.window)
                else:
                    log.info("qwen3-asr: window %d looped; re-decoded with a repetition penalty", piece.window)

    def _store(self, piece: _Piece, raw: str, forced: str | None) -> None:
        parsed = parse_output(raw, forced)
        piece.text, piece.language, piece.no_speech = parsed.text, parsed.language, parsed.no_speech

    def _generate(
        self,
        batch: list[_Piece],
        forced: str | None,
        context: str | None,
        opts: Qwen3Options,
        retry: bool,
    ) -> list[tuple[str, bool]]:
        """Decoded text (special tokens removed) and whether it ran out of tokens, per piece."""
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

    def _align_all(self, pieces: list[_Piece], opts: Qwen3Options) -> None:
        import torch

        todo = [p for p in pieces if p.text and language_code(p.language) in ALIGNER_LANGUAGES | {None}]
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
            for piece, words in zip(batch, items):
                limit = piece.seconds
                piece.words = [
                    Word(start=min(w["start_time"], limit), end=min(max(w["end_time"], w["start_time"]), limit), text=w["text"])
                    for w in words
                ]

    def _segments(self, piece: _Piece) -> list[Segment]:
        code = language_code(piece.language)
        sentences = split_sentences(piece.text)
        if not sentences:
            return []
        if piece.words:
            segments = self._aligned_segments(piece, sentences, code)
            if segments is not None:
                return segments
        return interpolate_segments(sentences, piece.audio, code)

    def _aligned_segments(self, piece: _Piece, sentences: list[str], code: str | None) -> list[Segment] | None:
        """Sentences with the aligner's words; None when words and sentences do not line up."""
        assert piece.words is not None and self.aligner_processor is not None
        counts = [len(self.aligner_processor.split_words_for_alignment(s, piece.language)) for s in sentences]
        if sum(counts) != len(piece.words):
            return None
        segments: list[Segment] = []
        pos = 0
        for sentence, count in zip(sentences, counts):
            words = piece.words[pos : pos + count]
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

    def _merge(self, index: int, pieces: list[_Piece]) -> EngineResult:
        segments: list[Segment] = []
        voted: Counter[str] = Counter()
        for piece in sorted(pieces, key=lambda p: p.offset):
            offset = piece.offset / SAMPLE_RATE
            if piece.language:
                voted[piece.language] += piece.seconds
            for seg in self._segments(piece):
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


__all__ = [
    "ALIASES",
    "ASR_CHECKPOINTS",
    "ALIGNER_CHECKPOINTS",
    "LANGUAGES",
    "Qwen3AsrEngine",
    "Qwen3Options",
    "RepeatGuard",
    "check_options",
    "model_statuses",
    "pull_model",
    "resolve_checkpoint",
]
