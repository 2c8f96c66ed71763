"""The API's response bodies (pipeline/api/formats.py), made from records of real runs: the
bundled Whisper base transcribes tests/data/speech_en.wav and translates speech_de.wav once,
and every format is read back with a real parser: the ``openai`` package's models, ffmpeg's
subtitle demuxers, Python's csv and json.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from openai.types.audio import Transcription, TranscriptionSegment, TranscriptionVerbose, TranslationVerbose

from hushdrop.pipeline.api.formats import (
    ASR_OUTPUTS,
    OPENAI_FORMATS,
    asr_response,
    detect_language_response,
    language_code,
    language_name,
    openai_response,
)
from hushdrop.pipeline.process import Processor
from tests.api.subtitle_checks import check_subtitles, parsed_cues
from tests.helpers import ENGLISH_CONTENT, GERMAN_ONLY, SPEECH_DE, SPEECH_EN, SPEECH_EN_TEXT, lower_words, make_settings, wer, words


@pytest.fixture(scope="module")
def english(processor_session) -> dict:
    """The record of a real transcription of the English clip."""
    profile = processor_session.settings.profile("default")
    record = processor_session.run_chain(SPEECH_EN, profile).to_record()
    assert record["language"] == "en" and len(record["segments"]) >= 3, record["text"]
    return record


@pytest.fixture(scope="module")
def translation(tmp_path_factory) -> dict:
    """The record of a real translation (``task: translate``) of the German clip."""
    processor = Processor(make_settings(tmp_path_factory.mktemp("translate"), task="translate"))
    try:
        record = processor.run_chain(SPEECH_DE, processor.settings.profile("default")).to_record()
    finally:
        processor.close()
    assert (record["task"], record["language"], record["text_language"]) == ("translate", "de", "en")
    return record


def silent_record(record: dict) -> dict:
    """``record`` as a recording in which no speech was found reads."""
    return {**record, "segments": [], "text": "", "no_speech": True, "language": None, "language_probability": None}


# ------------------------------------------------------------------------------ OpenAI


def test_json_and_text_answer_the_whole_transcript_as_openai_transcription_reads_it(english):
    body, media_type = openai_response(english, "json")
    assert media_type == "application/json"
    parsed = Transcription.model_validate(json.loads(json.dumps(body)))
    assert set(body) == {"text"}
    assert wer(SPEECH_EN_TEXT, parsed.text) <= 0.15, parsed.text
    assert words(parsed.text) == words(english["text"])

    text, media_type = openai_response(english, "text")
    assert media_type.startswith("text/plain")
    assert text == parsed.text + "\n" and "\n" not in parsed.text


def test_verbose_json_is_a_transcription_verbose_whose_segments_are_the_records(english):
    body, media_type = openai_response(english, "verbose_json")
    assert media_type == "application/json"
    verbose = TranscriptionVerbose.model_validate(json.loads(json.dumps(body)))
    # Whisper's API names the language in full, lowercase
    assert (body["task"], verbose.language) == ("transcribe", "english")
    assert verbose.duration == pytest.approx(english["audio"]["duration_s"])
    assert verbose.words is None and "words" not in body  # words only when asked
    spoken = [s for s in english["segments"] if s["text"].strip()]
    assert [s.id for s in verbose.segments] == list(range(len(spoken)))
    for answered, recorded in zip(verbose.segments, spoken, strict=True):
        assert (answered.start, answered.end, answered.text) == (recorded["start"], recorded["end"], recorded["text"])
        assert answered.avg_logprob == recorded["avg_logprob"] and answered.no_speech_prob == recorded["no_speech_prob"]
        assert answered.seek == round(recorded["start"] * 100) and answered.tokens == []
        assert 0.5 < answered.compression_ratio < 2.4  # plain sentences: not what Whisper calls repetitive
    assert verbose.text == openai_response(english, "json")[0]["text"]


def test_word_granularity_lists_every_word_in_order_and_segment_granularity_can_be_left_out(english):
    both, _ = openai_response(english, "verbose_json", ["word", "segment"])
    verbose = TranscriptionVerbose.model_validate(json.loads(json.dumps(both)))
    assert verbose.segments and verbose.words
    recorded = [w["text"].strip() for s in english["segments"] for w in s["words"] if w["text"].strip()]
    assert [w.word for w in verbose.words] == recorded
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= verbose.duration for w in verbose.words)
    assert words(" ".join(w.word for w in verbose.words)) == words(verbose.text)

    only_words, _ = openai_response(english, "verbose_json", ["word"])
    assert "segments" not in only_words and len(only_words["words"]) == len(verbose.words)
    TranscriptionVerbose.model_validate(only_words)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_parse_with_ffmpeg_in_order_within_the_recording_and_hold_the_whole_text(english, fmt, tmp_path):
    text, media_type = openai_response(english, fmt)
    assert media_type.startswith("text/vtt" if fmt == "vtt" else "text/plain")
    texts = check_subtitles(text, fmt, tmp_path, english["audio"]["duration_s"])
    assert len(texts) >= len([s for s in english["segments"] if s["text"].strip()])
    assert parsed_cues(text, fmt, tmp_path)[0][0] == round(english["segments"][0]["start"] * 1000)
    assert words(" ".join(texts)) == words(english["text"])


def test_a_translation_answers_with_task_translate_in_english(translation):
    body, _ = openai_response(translation, "verbose_json")
    verbose = TranslationVerbose.model_validate(body)
    assert (body["task"], verbose.language) == ("translate", "english")
    assert not lower_words(verbose.text) & GERMAN_ONLY, verbose.text
    assert openai_response(translation, "json")[0]["text"] == verbose.text


def test_a_recording_without_speech_answers_empty_text_and_no_cues(english, tmp_path):
    silent = silent_record(english)
    assert openai_response(silent, "json")[0] == {"text": ""}
    assert openai_response(silent, "text")[0] == "\n"
    verbose = TranscriptionVerbose.model_validate(openai_response(silent, "verbose_json", ["word", "segment"])[0])
    assert (verbose.text, verbose.segments, verbose.words) == ("", [], [])
    assert openai_response(silent, "srt")[0] == ""
    assert openai_response(silent, "vtt")[0].startswith("WEBVTT\n")


def test_an_unknown_format_or_granularity_is_refused_naming_the_known_ones(english):
    with pytest.raises(ValueError, match="json, text, srt, vtt, verbose_json"):
        openai_response(english, "docx")
    with pytest.raises(ValueError, match="sentence.*segment"):
        openai_response(english, "verbose_json", ["sentence"])
    with pytest.raises(ValueError, match="txt, vtt, srt, tsv, json"):
        asr_response(english, "docx")
    assert set(OPENAI_FORMATS) == {"json", "text", "srt", "vtt", "verbose_json"}


# ------------------------------------------------------------------------------ whisper-asr-webservice


def test_asr_txt_is_one_segment_a_line(english):
    text, media_type = asr_response(english, "txt")
    assert media_type.startswith("text/plain")
    assert text.splitlines() == [" ".join(s["text"].split()) for s in english["segments"] if s["text"].strip()]


def test_asr_tsv_has_a_header_and_integer_millisecond_rows_matching_the_segments(english):
    text, _ = asr_response(english, "tsv")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    assert rows[0] == ["start", "end", "text"]
    spoken = [s for s in english["segments"] if s["text"].strip()]
    assert [(int(a), int(b)) for a, b, _ in rows[1:]] == [(round(s["start"] * 1000), round(s["end"] * 1000)) for s in spoken]
    assert [t for _, _, t in rows[1:]] == [s["text"] for s in spoken]


def test_asr_json_is_whispers_result_dict(english):
    text, media_type = asr_response(english, "json")
    assert media_type.startswith("text/plain")  # as whisper-asr-webservice sends every output
    result = json.loads(text)
    assert set(result) == {"text", "segments", "language"} and result["language"] == "en"
    segments = [TranscriptionSegment.model_validate(s) for s in result["segments"]]
    assert [s.start for s in segments] == sorted(s.start for s in segments)
    assert all("words" not in s for s in result["segments"])
    with_words = json.loads(asr_response(english, "json", word_timestamps=True)[0])
    first = with_words["segments"][0]["words"]
    assert first and {"word", "start", "end", "probability"} <= set(first[0])
    assert words(result["text"]) == words(english["text"])


@pytest.mark.parametrize("output", ["srt", "vtt"])
def test_asr_subtitles_are_the_outboxs_own(english, output):
    assert asr_response(english, output)[0] == openai_response(english, output)[0]


def test_asr_json_of_a_translation_names_the_language_spoken(translation):
    result = json.loads(asr_response(translation, "json")[0])
    assert result["language"] == "de"
    assert len(lower_words(result["text"]) & ENGLISH_CONTENT) >= 5, result["text"]
    assert set(ASR_OUTPUTS) == {"txt", "vtt", "srt", "tsv", "json"}


def test_detect_language_answers_whispers_name_code_and_confidence(english, translation):
    found = detect_language_response(english)
    assert (found["detected_language"], found["language_code"]) == ("english", "en")
    assert 0.5 < found["confidence"] <= 1
    assert detect_language_response(translation)["detected_language"] == "german"
    # Bazarr reads an empty answer as "could not detect"
    assert detect_language_response(silent_record(english)) == {}


# ------------------------------------------------------------------------------ language names


def test_language_names_are_whispers_for_every_language_whisper_knows():
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    for code in _LANGUAGE_CODES:
        name = language_name(code)
        assert name and name != code and name == name.lower(), code
        assert language_code(name) == code and language_code(code.upper()) == code
    # where the page's names differ from Whisper's, the API answers Whisper's
    assert [language_name(c) for c in ("zh", "my", "nn", "yue", "ht")] == [
        "chinese", "myanmar", "nynorsk", "cantonese", "haitian creole"
    ]
    assert language_code("Chinese (Mandarin)") == "zh" and language_code("German") == "de"
    assert language_code("klingon") is None and language_code("") is None and language_name(None) == ""
