"""Qwen3-ASR's text and timing: language names, the output format, sentences, estimated times.

The model writes ``language <Name><asr_text><transcript>``; ``language None`` with an
empty transcript means "no speech". A forced language is prefilled into the assistant
turn, so the model then writes only the transcript. The glossary (and an optional
free-text ``context`` option) goes into the system turn, which the model reads as
context / hot words. Without the forced aligner, sentence times are estimated from
where the audio is voiced (:func:`interpolate_segments`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hushdrop.pipeline.chunking import frame_energies
from hushdrop.pipeline.engines.base import SAMPLE_RATE
from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.job import Segment

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
    rms = np.sqrt(frame_energies(audio, int(frame_s * SAMPLE_RATE), np.float32))
    if len(rms) == 0:
        duration = len(audio) / SAMPLE_RATE
        return np.array([0.0, duration]), duration
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
