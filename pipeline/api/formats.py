"""The transcription API's answers, made from a finished job's record.

Everything here is pure: a record (:meth:`pipeline.job.Job.to_record`, read back with
:meth:`~pipeline.job.Job.from_record`) goes in, a response body and its media type come out.
Subtitles are the outbox's own (:func:`pipeline.outputs.render_srt`, :func:`~pipeline.outputs.render_vtt`:
cues cut by :mod:`pipeline.subtitles`), so a client gets the same srt and vtt as the folder.

Two dialects:

- OpenAI's ``/v1/audio/transcriptions`` and ``/v1/audio/translations``
  (:func:`openai_response`): ``json``, ``text``, ``srt``, ``vtt`` and ``verbose_json`` in the
  shapes the ``openai`` package's models read (``Transcription``, ``TranscriptionVerbose``,
  ``TranscriptionSegment``, ``TranscriptionWord``, ``TranslationVerbose``).
- whisper-asr-webservice's ``/asr`` and ``/detect-language`` (:func:`asr_response`,
  :func:`detect_language_response`): its writers' ``txt``, ``vtt``, ``srt``, ``tsv`` and ``json``
  (app/utils.py and openai-whisper's writers), every one sent as ``text/plain`` as that service does.

Language names are Whisper's own, lowercase English ("english", "german"), as both services
answer: the page's table (:data:`pipeline.web.i18n.LANGUAGE_NAMES_EN`) lowercased, with the three
names Whisper spells differently from the page.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Iterable

from hushdrop.pipeline.job import Job, Segment
from hushdrop.pipeline.outputs import render_srt, render_vtt, text_segments
from hushdrop.pipeline.text import stored_text
from hushdrop.pipeline.web.i18n import LANGUAGE_NAMES_EN

OPENAI_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
OPENAI_GRANULARITIES = ("segment", "word")
ASR_OUTPUTS = ("txt", "vtt", "srt", "tsv", "json")

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
VTT = "text/vtt; charset=utf-8"

# where Whisper's own table (whisper.tokenizer.LANGUAGES) names a language differently from the page
_WHISPER_SPELLINGS = {"zh": "chinese", "my": "myanmar", "nn": "nynorsk"}
LANGUAGE_NAMES: dict[str, str] = {code: name.lower() for code, name in LANGUAGE_NAMES_EN.items()} | _WHISPER_SPELLINGS
_CODES_BY_NAME: dict[str, str] = {name.lower(): code for code, name in LANGUAGE_NAMES_EN.items()} | {
    name: code for code, name in LANGUAGE_NAMES.items()
}


def language_name(code: str | None) -> str:
    """Whisper's name of a language code, lowercase English as OpenAI's API answers it
    (``en`` → ``english``, ``zh`` → ``chinese``); a code hushdrop does not know stays as it is,
    and no language (a recording without speech) is the empty string."""
    if not code:
        return ""
    return LANGUAGE_NAMES.get(code.lower(), code)


def language_code(value: str | None) -> str | None:
    """The language code a client named, by code (``de``, ``DE``) or by name (``german``,
    ``German``, ``chinese``); None for an empty value or a language hushdrop does not know."""
    key = (value or "").strip().lower()
    if key in LANGUAGE_NAMES:
        return key
    return _CODES_BY_NAME.get(key)


# ------------------------------------------------------------------------------ OpenAI


def openai_response(
    record: dict[str, Any], response_format: str = "json", granularities: Iterable[str] | None = None
) -> tuple[str | dict[str, Any], str]:
    """The answer to an OpenAI transcription (or translation) request for ``record``: the body
    (a dict for ``json`` and ``verbose_json``, else text) and its media type.

    ``granularities`` (``timestamp_granularities[]``) matter only for ``verbose_json``: ``segment``
    (the default when none is asked) lists segments, ``word`` lists every word with its times.
    A translation (``task: translate``) answers with task ``translate`` and language ``english``,
    the language of its text, as OpenAI's translations do.

    Raises ValueError for a format or granularity OpenAI does not define (the route answers 400).
    """
    job = Job.from_record(record)
    if response_format == "json":
        return {"text": _text(job)}, JSON
    if response_format == "text":
        return _text(job) + "\n", TEXT
    if response_format == "srt":
        return render_srt(job), TEXT
    if response_format == "vtt":
        return render_vtt(job), VTT
    if response_format == "verbose_json":
        return verbose_json(job, granularities), JSON
    raise ValueError(f"response_format {response_format!r} is not one of {', '.join(OPENAI_FORMATS)}")


def verbose_json(job: Job, granularities: Iterable[str] | None = None) -> dict[str, Any]:
    """OpenAI's ``verbose_json`` (``TranscriptionVerbose``, ``TranslationVerbose``) for ``job``.

    ``language`` is the language of the text: the one spoken in a transcription, English in a
    translation. ``duration`` is the recording's. Segments carry what hushdrop knows and, where it
    keeps nothing, values that claim nothing (:func:`whisper_segment`)."""
    asked = set(granularities or ("segment",))
    unknown = asked - set(OPENAI_GRANULARITIES)
    if unknown:
        raise ValueError(
            f"timestamp_granularities {', '.join(sorted(unknown))} not known: use {' and/or '.join(OPENAI_GRANULARITIES)}"
        )
    segments = text_segments(job)
    body: dict[str, Any] = {
        "task": job.task,
        "language": language_name(job.text_language),
        "duration": _duration(job),
        "text": _text(job),
    }
    if "segment" in asked:
        body["segments"] = [whisper_segment(i, s) for i, s in enumerate(segments)]
    if "word" in asked:
        body["words"] = [{"word": w["word"], "start": w["start"], "end": w["end"]} for s in segments for w in _words(s)]
    return body


def whisper_segment(index: int, segment: Segment, words: bool = False) -> dict[str, Any]:
    """One segment as Whisper's result dict holds it (and OpenAI's ``TranscriptionSegment`` reads it).

    What hushdrop keeps is passed on as it is: times, text, ``avg_logprob`` and ``no_speech_prob``
    where the engine gave them. What it does not keep gets a value that claims nothing:
    ``tokens`` is empty (token ids belong to one model's tokenizer and are not kept), ``seek``
    is the segment's start in Whisper's 10 ms frames (where a client would seek to hear it),
    ``temperature`` is 0.0 (the first decoding pass, which is what a kept segment almost always
    comes from), a missing ``avg_logprob`` or ``no_speech_prob`` is 0.0 (below every threshold at
    which a client would call the segment failed or silent). ``compression_ratio`` is computed
    from the segment's text with Whisper's own formula (UTF-8 length over zlib-compressed length).
    ``words`` adds the segment's words as Whisper's ``word_timestamps`` do."""
    body: dict[str, Any] = {
        "id": index,
        "seek": int(round(segment.start * 100)),
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": segment.avg_logprob if segment.avg_logprob is not None else 0.0,
        "compression_ratio": compression_ratio(segment.text),
        "no_speech_prob": segment.no_speech_prob if segment.no_speech_prob is not None else 0.0,
    }
    if words:
        body["words"] = _words(segment)
    return body


def compression_ratio(text: str) -> float:
    """Whisper's measure of repetition: the text's UTF-8 length over its zlib-compressed length
    (above 2.4 Whisper deems a decoding repetitive)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _words(segment: Segment) -> list[dict[str, Any]]:
    """The segment's words in Whisper's form (``word``, ``start``, ``end``, ``probability``)."""
    out = []
    for w in segment.words:
        text = stored_text(w.text).strip()
        if text:
            out.append({"word": text, "start": w.start, "end": w.end, "probability": w.probability})
    return out


def _text(job: Job) -> str:
    """The whole transcript as one line of text: every segment's text, fit for a response."""
    return " ".join(" ".join(s.text.split()) for s in text_segments(job))


def _duration(job: Job) -> float:
    """The recording's length; the end of its last segment where the record has no audio facts."""
    if job.facts and job.facts.duration_s:
        return float(job.facts.duration_s)
    return max((s.end for s in job.transcript.segments), default=0.0)


# ------------------------------------------------------------------------------ whisper-asr-webservice


def asr_response(record: dict[str, Any], output: str = "txt", word_timestamps: bool = False) -> tuple[str, str]:
    """The answer to whisper-asr-webservice's ``POST /asr?output=…`` for ``record``: the body
    text and its media type (``text/plain`` for every output, as that service sends them).

    - ``txt``: each segment's text on its own line;
    - ``srt``, ``vtt``: the outbox's subtitles;
    - ``tsv``: a ``start\\tend\\ttext`` header, then one row per segment, times in integer
      milliseconds, tabs and line breaks in the text as spaces;
    - ``json``: Whisper's result dict, ``{"text", "segments", "language"}``, ``language`` the
      code of the language spoken (a translation's too, as Whisper reports it); each segment
      has its words when ``word_timestamps`` is asked.

    Raises ValueError for another output (the route answers 422, as that service does).
    """
    job = Job.from_record(record)
    segments = text_segments(job)
    if output == "txt":
        return "".join(f"{_line(s.text)}\n" for s in segments), TEXT
    if output == "srt":
        return render_srt(job), TEXT
    if output == "vtt":
        return render_vtt(job), TEXT
    if output == "tsv":
        rows = [f"{round(1000 * s.start)}\t{round(1000 * s.end)}\t{_line(s.text)}\n" for s in segments]
        return "start\tend\ttext\n" + "".join(rows), TEXT
    if output == "json":
        result = {
            "text": _text(job),
            "segments": [whisper_segment(i, s, words=word_timestamps) for i, s in enumerate(segments)],
            "language": job.transcript.language,
        }
        return json.dumps(result), TEXT
    raise ValueError(f"output {output!r} is not one of {', '.join(ASR_OUTPUTS)}")


def detect_language_response(record: dict[str, Any]) -> dict[str, Any]:
    """whisper-asr-webservice's ``POST /detect-language`` answer for ``record``:
    ``{"detected_language": "english", "language_code": "en", "confidence": 0.97}``.

    A recording in which no language was found answers ``{}``: Bazarr reads an empty answer as
    "could not detect" (custom_libs/subliminal_patch/providers/whisperai.py, detect_language),
    where a null code would make it fail."""
    code = record.get("language")
    if not code:
        return {}
    return {
        "detected_language": language_name(code),
        "language_code": code,
        "confidence": record.get("language_probability"),
    }


def _line(text: str) -> str:
    """``text`` on one line: every run of whitespace (a tab, a line break from an edit) as one space."""
    return " ".join(text.split())
