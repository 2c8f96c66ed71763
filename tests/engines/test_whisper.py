"""The whisper engine's registry entry: options, languages and models, checked against faster-whisper."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import numpy as np
import pytest
from faster_whisper import BatchedInferencePipeline, WhisperModel

from hushdrop.pipeline.engines import DecodeRequest, EngineSpec, engine_for, load_engine
from hushdrop.pipeline.engines.whisper import LANGUAGES, WhisperOptions
from hushdrop.pipeline.errors import ConfigError


def test_language_copy_matches_the_models_public_list():
    """The registry's copy is what a loaded faster-whisper model says it supports."""
    engine = load_engine(EngineSpec())
    assert LANGUAGES == frozenset(engine.model.supported_languages)
    assert engine_for("whisper").languages is LANGUAGES


def test_options_are_faster_whispers_transcribe_arguments():
    """Every argument of faster-whisper's transcribe can be given, and nothing else."""
    arguments = set(inspect.signature(WhisperModel.transcribe).parameters) - {"self", "audio"}
    batched = set(inspect.signature(BatchedInferencePipeline.transcribe).parameters) - {"self", "audio"}
    assert set(WhisperOptions.model_fields) == arguments | batched


def test_unknown_option_is_rejected_with_a_suggestion():
    with pytest.raises(ConfigError) as info:
        WhisperOptions.parse({"bogus_option": 1, "beam_sise": 3})
    assert info.value.source == "whisper engine_options"
    assert "bogus_option: unknown key 'bogus_option'; known keys: batch_size," in info.value.problems[0]
    assert info.value.problems[1] == "beam_sise: unknown key 'beam_sise'; did you mean 'beam_size'?"


def test_bad_option_in_a_job_is_a_config_error_before_decoding(monkeypatch):
    engine = load_engine(EngineSpec())
    monkeypatch.setattr(engine.model, "transcribe", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(ConfigError, match="bogus_option"):
        engine.transcribe([np.zeros(16000, dtype=np.float32)], DecodeRequest(options={"bogus_option": 1}))


def _capture_calls(monkeypatch):
    """The options each window is decoded with, sequential or batched; nothing is decoded."""
    engine = load_engine(EngineSpec())
    calls: list[dict] = []

    def decode(audio, **options):
        calls.append(options)
        return iter([]), SimpleNamespace(language="en", language_probability=1.0)

    monkeypatch.setattr(engine, "_batched", lambda: SimpleNamespace(transcribe=decode))
    monkeypatch.setattr(engine.model, "transcribe", decode)
    return engine, calls


def test_batch_size_from_the_request_chooses_the_batched_pipeline(monkeypatch):
    engine, calls = _capture_calls(monkeypatch)
    window = [np.zeros(16000, dtype=np.float32)]
    engine.transcribe(window, DecodeRequest())
    engine.transcribe(window, DecodeRequest(batch_size=8))
    engine.transcribe(window, DecodeRequest(batch_size=8, options={"batch_size": 2}))  # engine_options win
    assert "batch_size" not in calls[0] and calls[0]["vad_filter"] is False
    assert calls[0]["condition_on_previous_text"] is True  # each 30 s piece prompted with the text before it
    assert calls[1]["batch_size"] == 8 and calls[1]["vad_filter"] is True
    assert "condition_on_previous_text" not in calls[1]
    assert calls[2]["batch_size"] == 2


def test_language_is_detected_per_piece_only_when_auto(monkeypatch):
    """Language auto: Whisper detects it on every 30 s piece (a recording that changes
    language is not decoded under the first piece's); a forced language stays forced."""
    engine, calls = _capture_calls(monkeypatch)
    window = [np.zeros(16000, dtype=np.float32)]
    engine.transcribe(window, DecodeRequest(language=None))
    engine.transcribe(window, DecodeRequest(language="zh"))
    # auto: the language hushdrop detected on the first 30 s (from the encoding the decoding
    # reuses), with per-piece detection still on
    assert calls[0]["multilingual"] is True and calls[0]["language"] == engine._detect_language(window[0])[0]
    assert calls[1]["multilingual"] is False and calls[1]["language"] == "zh"


def test_auto_language_encodes_the_first_30_s_once_and_decodes_as_faster_whisper_would(monkeypatch):
    """hushdrop's detection reuses its encoding for the decoding (EncodeOnce); the transcript and
    the language are those of faster-whisper's own detection."""
    import soundfile

    from tests.helpers import SPEECH_EN

    engine = load_engine(EngineSpec())
    audio = soundfile.read(SPEECH_EN, dtype="float32")[0][: 16000 * 12]
    before = engine.model.encode.reused
    (ours,) = engine.transcribe([audio], DecodeRequest(language=None))
    assert engine.model.encode.reused == before + 1
    monkeypatch.setattr(engine, "_detect_language", lambda audio: None)  # faster-whisper detects (and encodes) itself
    (theirs,) = engine.transcribe([audio], DecodeRequest(language=None))
    assert engine.model.encode.reused == before + 1
    assert [s.text for s in ours.segments] == [s.text for s in theirs.segments]
    assert ours.language == theirs.language == "en" and ours.language_probability > 0.5


def test_a_piece_keeps_the_language_before_it_unless_more_likely_in_another():
    from hushdrop.pipeline.engines.whisper import keep_language

    assert keep_language("de", [("<|cy|>", 0.44), ("<|la|>", 0.2), ("<|de|>", 0.1)]) == [
        ("<|de|>", 0.1), ("<|cy|>", 0.44), ("<|la|>", 0.2)]
    assert keep_language("de", [("<|en|>", 0.51), ("<|de|>", 0.3)]) == [("<|en|>", 0.51), ("<|de|>", 0.3)]
    assert keep_language("de", [("<|de|>", 0.2), ("<|en|>", 0.19)]) == [("<|de|>", 0.2), ("<|en|>", 0.19)]
    # a language the detector does not list is left to it (it lists every language it knows)
    assert keep_language("yue", [("<|zh|>", 0.4), ("<|en|>", 0.3)]) == [("<|zh|>", 0.4), ("<|en|>", 0.3)]


def _english_then_german() -> tuple[np.ndarray, float, float]:
    """32 s of English, half a second of quiet, then the German clip three times (3 × 19 s): four
    30 s pieces. And where the German starts, and where its second reading starts."""
    import soundfile

    from tests.helpers import SPEECH_DE, SPEECH_EN

    english = soundfile.read(SPEECH_EN, dtype="float32")[0]
    german = soundfile.read(SPEECH_DE, dtype="float32")[0]
    audio = np.concatenate([english, np.zeros(8000, dtype=np.float32), german, german, german])
    german_from = (len(english) + 8000) / 16000
    return audio, german_from, german_from + len(german) / 16000


def _english_only() -> set[str]:
    """English words a translation of speech_de.txt would hold and the German itself does not
    (the German has "Park" and "warm")."""
    from tests.helpers import ENGLISH_CONTENT, SPEECH_DE, lower_words

    return ENGLISH_CONTENT - lower_words(SPEECH_DE.with_suffix(".txt").read_text(encoding="utf-8"))


def _assert_english_then_german(result, german_from: float, again_from: float) -> None:
    from tests.helpers import GERMAN_ONLY, SPEECH_EN_TEXT, lower_words, wer

    english = " ".join(s.text for s in result.segments if s.start < german_from - 0.3)
    german = lower_words(" ".join(s.text for s in result.segments if s.start >= again_from - 0.3))
    assert wer(SPEECH_EN_TEXT, english) < 0.15, english
    assert len(german & GERMAN_ONLY) >= 6 and not german & _english_only(), german


def _record_prompts(engine) -> list[tuple[int, str, str]]:
    """(thread, the piece's language, its prompt's text) for every piece faster-whisper decodes."""
    import threading

    prompts: list[tuple[int, str, str]] = []
    get_prompt = engine.pieces._get_prompt

    def recording(tokenizer, previous_tokens, *args, **kwargs):
        prompts.append((threading.get_ident(), tokenizer.language_code, tokenizer.decode(list(previous_tokens))))
        return get_prompt(tokenizer, previous_tokens, *args, **kwargs)

    engine.pieces._get_prompt = recording
    return prompts


# words of speech_en.txt that no German piece's prompt may hold once the language has changed
ENGLISH_MEETING = {"garden", "tomatoes", "beans", "fence", "shed", "gloves", "hammer", "nails", "weather", "lunch"}


def test_a_window_that_changes_language_is_written_in_each_language():
    """English, then German, in one window, language auto: the pieces after the change are decoded
    in German, and no prompt of theirs holds the English text before them. Prompted with it, the
    decoder went on in English and invented it ("Thank you for listening and see you on Saturday
    morning", over and over), though the pieces were decoded as German. The piece where the German
    starts (its first seconds English, heard as German at under even odds) keeps English: its
    German may come out translated, a known limit (PieceLanguage)."""
    import ctranslate2

    from tests.helpers import lower_words

    ctranslate2.set_random_seed(1)  # a piece that falls back to sampling reads the same every run
    engine = load_engine(EngineSpec())
    prompts = _record_prompts(engine)
    audio, german_from, again_from = _english_then_german()
    (result,) = engine.transcribe([audio], DecodeRequest(language=None))
    _assert_english_then_german(result, german_from, again_from)
    german_prompts = [text for _, language, text in prompts if language == "de"]
    assert len(german_prompts) >= 2 and all(not lower_words(text) & ENGLISH_MEETING for text in german_prompts), prompts
    assert lower_words(german_prompts[-1]) & {"und", "ich", "wir"}, prompts  # prompted with the German before it


def test_windows_decoded_at_once_each_keep_their_own_pieces_languages():
    """The language of the pieces before is per window: two windows decoded side by side, one in
    German throughout and one that changes from English to German, each read as itself, and no
    German piece prompted with the English of the other thread's window."""
    import ctranslate2

    from tests.helpers import GERMAN_ONLY, lower_words

    ctranslate2.set_random_seed(1)
    engine = load_engine(EngineSpec(concurrent_pieces=2, cpu_threads=1))
    prompts = _record_prompts(engine)
    mixed, german_from, again_from = _english_then_german()
    german_only = mixed[int(german_from * 16000):]
    results = engine.transcribe([mixed, german_only], DecodeRequest(language=None))
    _assert_english_then_german(results[0], german_from, again_from)
    german = lower_words(" ".join(s.text for s in results[1].segments))
    assert results[1].language == "de" and len(german & GERMAN_ONLY) >= 8 and not german & _english_only()
    assert len({thread for thread, _, _ in prompts}) == 2  # the windows were decoded on two threads
    assert all(not lower_words(text) & ENGLISH_MEETING for _, language, text in prompts if language == "de"), prompts


def test_a_piece_skipped_as_no_speech_leaves_the_language_and_the_prompt_as_they_were():
    """Noise heard as Norwegian at 0.9 and then skipped by faster-whisper as no speech must not make
    the next piece Norwegian or cut its prompt. No real recording here makes Whisper both hear a
    language that surely and skip the piece, so the detector's and the decoder's answers are
    scripted; the wrapping is the engine's own."""
    from hushdrop.pipeline.engines.whisper import PieceLanguage

    detections = iter([[("<|nn|>", 0.9), ("<|en|>", 0.05)], [("<|nn|>", 0.4), ("<|en|>", 0.35)]])
    no_speech = iter([0.9, 0.1])
    options = SimpleNamespace(no_speech_threshold=0.6, log_prob_threshold=-1.0)
    model = SimpleNamespace(
        model=SimpleNamespace(detect_language=lambda encoded: [next(detections)]),
        get_prompt=lambda tokenizer, previous_tokens, **kwargs: list(previous_tokens),
        generate_with_fallback=lambda *args: (SimpleNamespace(no_speech_prob=next(no_speech)), -1.5, 0.0, 1.0),
    )
    pieces = PieceLanguage(model)
    with pieces.window("en"):
        for _ in range(2):
            (ranked,) = model.model.detect_language(None)
            prompt = model.get_prompt(None, [1, 2, 3])
            model.generate_with_fallback(None, prompt, None, options)
    # the second piece: English kept (Norwegian at 0.4 is not more likely than not), prompt whole
    assert ranked[0] == ("<|en|>", 0.35) and prompt == [1, 2, 3]


def test_a_translation_keeps_its_english_prompt_when_the_language_changes():
    """In a translation the prompt is English whatever was spoken: a change of language keeps it.
    The detector's answer is scripted, as above."""
    from hushdrop.pipeline.engines.whisper import PieceLanguage

    model = SimpleNamespace(
        model=SimpleNamespace(detect_language=lambda encoded: [[("<|de|>", 0.9), ("<|en|>", 0.05)]]),
        get_prompt=lambda tokenizer, previous_tokens, **kwargs: list(previous_tokens),
        generate_with_fallback=lambda *args: None,
    )
    pieces = PieceLanguage(model)
    with pieces.window("en", translate=True):
        model.model.detect_language(None)
        assert model.get_prompt(None, [1, 2, 3]) == [1, 2, 3]
    with pieces.window("en"):
        model.model.detect_language(None)
        assert model.get_prompt(None, [1, 2, 3]) == []


def _clip(path, seconds: float | None = None) -> np.ndarray:
    import soundfile

    audio = soundfile.read(path, dtype="float32")[0]
    return audio if seconds is None else audio[: int(seconds * 16000)]


def test_a_reading_scores_higher_on_the_speech_it_was_heard_in_than_on_other_speech():
    """``score``: the mean log-probability of a reading's own tokens, given to the decoder with
    the audio. A reading of the English clip is likely on it and unlikely on the German clip, and
    the other way round; a reading that stops a sentence early scores lower (the end of the text
    comes where speech goes on); a reading without the engine's tokens gets no score."""
    from hushdrop.pipeline.engines.base import EngineResult
    from tests.helpers import SPEECH_DE, SPEECH_EN

    engine = load_engine(EngineSpec())
    english, german = _clip(SPEECH_EN, 20.0), _clip(SPEECH_DE)
    (en,) = engine.transcribe([english], DecodeRequest(language="en"))
    (de,) = engine.transcribe([german], DecodeRequest(language="de"))
    assert len(en.tokens) == len(en.segments) >= 3 and all(en.tokens), en
    on_english, on_german = engine.score(english, [en, de]), engine.score(german, [en, de])
    assert -1.0 < on_english[0] < 0 and -1.0 < on_german[1] < 0, (on_english, on_german)
    assert on_english[0] > on_english[1] + 1 and on_german[1] > on_german[0] + 1, (on_english, on_german)
    stopped = EngineResult(en.segments[:2], "en", 1.0, tokens=en.tokens[:2])
    assert engine.score(english, [stopped])[0] < on_english[0]
    untokenised = EngineResult(en.segments, "en", 1.0)
    assert engine.score(english, [untokenised, en]) == [None, on_english[0]]


def test_a_long_window_is_scored_piece_by_piece_where_each_segment_was_heard():
    """Over 30 s, each segment's tokens are scored on the 30 s piece its middle falls in: the
    window's own reading scores well, and the same segments with each piece's text put on the
    other piece score far lower."""
    import dataclasses

    from hushdrop.pipeline.engines.base import EngineResult
    from tests.helpers import SPEECH_EN

    english = _clip(SPEECH_EN)  # its first 19 s, quiet to 30 s, then the rest: two pieces, other sentences
    cut = int(19.0 * 16000)
    audio = np.concatenate([english[:cut], np.zeros(30 * 16000 - cut, dtype=np.float32), english[cut:]])
    engine = load_engine(EngineSpec())
    (reading,) = engine.transcribe([audio], DecodeRequest(language="en"))
    assert any(s.end <= 30.0 for s in reading.segments) and any(s.start >= 30.0 for s in reading.segments), reading

    def moved(s):
        shift = 30.0 if s.end <= 30.0 else -30.0
        return dataclasses.replace(s, start=max(0.0, s.start + shift), end=max(0.0, s.end + shift))

    swapped = EngineResult([moved(s) for s in reading.segments], "en", 1.0, tokens=reading.tokens)
    own, other = engine.score(audio, [reading, swapped])
    assert own > -1.0 and other < own - 1.0, (own, other)


def test_text_is_encoded_as_the_model_writes_it_so_a_glossary_reads_as_it_would_be_heard():
    """What the engine decodes from English speech, encoded again by its tokenizer (as a glossary or
    a prompt is), comes back as the very tokens the model wrote: " the" is one token, not "Ġ" +
    "the" as the bundled tokenizer.json alone would give (it lacks the merge that makes "Ġt")."""
    import tokenizers

    from hushdrop.pipeline.engines.whisper import with_first_merge
    from hushdrop.pipeline.models import bundled_whisper_base
    from tests.helpers import SPEECH_EN

    engine = load_engine(EngineSpec())
    (reading,) = engine.transcribe([_clip(SPEECH_EN, 20.0)], DecodeRequest(language="en"))
    written = [t for tokens in reading.tokens for t in tokens if t < 50257]  # text tokens, no timestamps
    text = engine.model.hf_tokenizer.decode(written)
    assert " the " in f"{text} " or " to " in text, text
    assert engine.model.hf_tokenizer.encode(text, add_special_tokens=False).ids == written
    as_shipped = tokenizers.Tokenizer.from_file(str(bundled_whisper_base() / "tokenizer.json"))
    assert as_shipped.encode(" the", add_special_tokens=False).tokens == ["Ġ", "the"]  # what the repair is for
    assert engine.model.hf_tokenizer.encode(" the", add_special_tokens=False).tokens == ["Ġthe"]
    assert with_first_merge(engine.model.hf_tokenizer) is engine.model.hf_tokenizer  # repaired once, left alone after
