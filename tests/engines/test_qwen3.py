"""The qwen3-asr engine on tiny random-weight checkpoints (see conftest.py): CPU only, no download."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import os

import numpy as np
import pytest
from pydantic import ValidationError

from hushdrop.pipeline.chunking import split_at_quiet_points
from hushdrop.pipeline.engines.base import SAMPLE_RATE, DecodeRequest, EngineSpec
from hushdrop.pipeline.engines import catalogue, hub, qwen3
from hushdrop.pipeline.engines.qwen3 import (
    LANGUAGES,
    Qwen3AsrEngine,
    Qwen3Options,
    interpolate_segments,
    language_code,
    parse_output,
    split_sentences,
)
from hushdrop.pipeline.engines.qwen3.checkpoints import model_statuses
from hushdrop.pipeline.errors import ConfigError, ModelError
from hushdrop.pipeline.text import RepeatGuard
from tests.modelhub import LocalHub

from .conftest import FAST, make_engine, speechlike


class Spy:
    """Wraps a bound method, records its calls and results, and passes them through."""

    def __init__(self, target: object, name: str, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[tuple[tuple, dict]] = []
        self.results: list[object] = []
        original = getattr(target, name)

        def wrapper(*args, **kwargs):
            self.calls.append((args, kwargs))
            result = original(*args, **kwargs)
            self.results.append(result)
            return result

        monkeypatch.setattr(target, name, wrapper)


def texts(result) -> list[str]:
    return [s.text for s in result.segments]


# --------------------------------------------------------------------------- loading


def test_loads_tiny_checkpoint_through_the_user_path(engine: Qwen3AsrEngine, tiny_checkpoints):
    assert engine.capabilities.max_window_s == 1200.0
    assert engine.aligner is None  # no aligner configured
    assert {"en", "zh", "yue", "de"} <= qwen3.ENTRY.languages
    info = engine.describe()
    assert info["engine"] == "qwen3-asr"
    assert info["model_path"] == str(tiny_checkpoints["asr"])
    assert info["device"] == "cpu" and info["compute_type"] == "float32"
    assert info["attn_implementation"] == "sdpa"
    assert len(info["model_fingerprint"]) == 16
    assert not engine.model.training


def test_chunk_length_option_sets_max_window(tiny_checkpoints):
    eng = make_engine(tiny_checkpoints["asr"], chunk_length_s=300.0)
    assert eng.capabilities.max_window_s == 300.0
    with pytest.raises(ValidationError, match="chunk_length_s"):
        Qwen3Options(chunk_length_s=5000)


def test_unknown_option_is_rejected(engine):
    with pytest.raises(ConfigError, match="batchsize.*did you mean 'batch_size'"):
        engine.transcribe([speechlike(1.0)], DecodeRequest(options={"batchsize": 2}))


def test_job_options_override_the_engines_own_and_are_converted():
    base = Qwen3Options(batch_size=2, token_margin=4)
    merged = base.updated({"batch_size": "3", "tokens_per_second": 1})
    assert (merged.batch_size, merged.token_margin, merged.tokens_per_second) == (3, 4, 1.0)
    assert base.updated({}) is base
    with pytest.raises(ConfigError, match="batch_size: Input should be greater than or equal to 1"):
        base.updated({"batch_size": 0})


def test_making_an_engine_leaves_the_environment_alone(tiny_checkpoints, monkeypatch):
    """Offline mode is the CLI's to set at process start, not a side effect of loading a model."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = dict(os.environ)
    make_engine(tiny_checkpoints["asr"], **FAST)
    assert dict(os.environ) == before


# --------------------------------------------------------------------------- batching


def test_batch_gives_one_result_per_window_same_as_one_by_one(engine, monkeypatch):
    windows = [speechlike(4.0, seed=1), speechlike(7.0, seed=2), speechlike(2.5, seed=3)]
    generate = Spy(engine.model, "generate", monkeypatch)
    progress: list[tuple[int, float]] = []
    batched = engine.transcribe(windows, DecodeRequest(), lambda i, s: progress.append((i, s)))

    assert len(batched) == 3
    first_pass = generate.calls[0][1]
    assert first_pass["input_ids"].shape[0] == 3  # all three windows in one model call
    assert {i for i, _ in progress} == {0, 1, 2}
    for i, w in enumerate(windows):
        assert max(s for j, s in progress if j == i) == pytest.approx(len(w) / SAMPLE_RATE)

    single = [engine.transcribe([w], DecodeRequest())[0] for w in windows]
    assert batched == single
    for result, w in zip(batched, windows):
        assert result.segments, "the tiny model always emits words"
        assert all(0.0 <= s.start <= s.end <= len(w) / SAMPLE_RATE + 1e-6 for s in result.segments)


def test_batch_size_option_splits_model_calls(engine, monkeypatch):
    generate = Spy(engine.model, "generate", monkeypatch)
    windows = [speechlike(2.0, seed=s) for s in range(5)]
    results = engine.transcribe(windows, DecodeRequest(options={"batch_size": 2}))
    assert len(results) == 5
    first_pass_sizes = [kw["input_ids"].shape[0] for _, kw in generate.calls if "repetition_penalty" not in kw]
    assert first_pass_sizes == [2, 2, 1]


def test_max_new_tokens_scales_with_window_length():
    opts = Qwen3Options(tokens_per_second=6.0, token_margin=32, max_new_tokens_cap=8192)
    assert opts.max_new_tokens(10) == 92
    assert opts.max_new_tokens(100) == 632
    assert opts.max_new_tokens(1200) == 7232
    assert Qwen3Options(max_new_tokens_cap=500).max_new_tokens(1200) == 500


def test_empty_window_is_no_speech(engine):
    (result,) = engine.transcribe([np.zeros(0, dtype=np.float32)], DecodeRequest())
    assert result.no_speech is True and result.segments == []


# --------------------------------------------------------------------------- long input


def test_25_minute_input_is_chunked_and_merged(engine, monkeypatch):
    # 300 s pieces instead of the default 1200 s keep the random model's prefill cheap on CPU;
    # the splitting and merging code is the same.
    audio = speechlike(25 * 60, seed=5)
    total = len(audio) / SAMPLE_RATE
    generate = Spy(engine.model, "generate", monkeypatch)
    progress: list[tuple[int, float]] = []
    opts = {"tokens_per_second": 0.02, "token_margin": 2, "chunk_length_s": 300.0}
    (result,) = engine.transcribe([audio], DecodeRequest(options=opts), lambda i, s: progress.append((i, s)))

    cuts = split_at_quiet_points(audio, SAMPLE_RATE, 300.0)
    assert len(cuts) >= 5
    assert generate.calls[0][1]["input_ids"].shape[0] == len(cuts)  # all pieces in one batch
    assert progress[-1] == (0, pytest.approx(total))

    segments = result.segments
    assert segments and not result.no_speech
    for seg in segments:
        assert 0.0 <= seg.start <= seg.end <= total + 1e-6
    starts = [s.start for s in segments]
    assert starts == sorted(starts)
    assert all(b.start >= a.end - 0.05 for a, b in zip(segments, segments[1:]))
    for a, b in cuts:  # every piece contributed, at its own offset
        lo, hi = a / SAMPLE_RATE, b / SAMPLE_RATE
        assert any(lo - 1e-6 <= s.start and s.end <= hi + 1e-6 for s in segments)
    assert segments[0].start < 2.0 and segments[-1].end > total - 2.0  # covers the input


def test_default_window_limit_splits_at_1200s(engine, monkeypatch):
    # Only the splitting is checked here: decoding a 1200 s piece is slow on CPU.
    audio = speechlike(25 * 60, seed=6)
    seen: list[list[float]] = []
    monkeypatch.setattr(engine, "_decode_all", lambda pieces, *a: seen.append([p.seconds for p in pieces]))
    (result,) = engine.transcribe([audio], DecodeRequest())
    assert len(seen[0]) == 2 and max(seen[0]) <= 1200.0
    assert sum(seen[0]) == pytest.approx(len(audio) / SAMPLE_RATE)
    assert result.no_speech  # nothing was decoded


def test_request_chunk_length_splits_a_window(engine):
    audio = speechlike(150, seed=8)
    (result,) = engine.transcribe([audio], DecodeRequest(options={"chunk_length_s": 40.0}))
    pieces = split_at_quiet_points(audio, SAMPLE_RATE, 40.0)
    assert len(pieces) >= 4
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    # every piece contributed text; its segments lie inside it
    for a, b in pieces:
        lo, hi = a / SAMPLE_RATE, b / SAMPLE_RATE
        assert any(lo - 1e-6 <= s.start and s.end <= hi + 1e-6 for s in result.segments)


# --------------------------------------------------------------------------- language & prompt


def decoded_prompts(engine, spy: Spy) -> list[str]:
    batch = spy.results[0]
    return engine.processor.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=False)


@pytest.mark.parametrize("code,name", [("yue", "Cantonese"), ("de", "German"), ("zh", "Chinese"), ("en", "English")])
def test_forced_language_is_named_in_the_prompt(engine, monkeypatch, code, name):
    spy = Spy(engine.processor, "apply_transcription_request", monkeypatch)
    (result,) = engine.transcribe([speechlike(2.0)], DecodeRequest(language=code))
    (prompt,) = decoded_prompts(engine, spy)
    assert prompt.endswith(f"<|im_start|>assistant\nlanguage {name}<asr_text>")
    assert result.language == code
    assert all(s.language == code for s in result.segments)


def test_auto_language_leaves_the_answer_to_the_model(engine, monkeypatch):
    spy = Spy(engine.processor, "apply_transcription_request", monkeypatch)
    engine.transcribe([speechlike(2.0)], DecodeRequest(language=None))
    (prompt,) = decoded_prompts(engine, spy)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "<asr_text>" not in prompt


def test_unsupported_language_is_a_config_error(engine):
    with pytest.raises(ConfigError, match="'xx'"):
        engine.transcribe([speechlike(1.0)], DecodeRequest(language="xx"))


def test_glossary_goes_into_the_system_turn(engine, monkeypatch):
    spy = Spy(engine.processor, "apply_transcription_request", monkeypatch)
    request = DecodeRequest(glossary=["Kubernetes", "hushdrop"], options={"context": "A meeting."})
    engine.transcribe([speechlike(2.0)], request)
    (prompt,) = decoded_prompts(engine, spy)
    system = prompt.split("<|im_start|>system\n", 1)[1].split("<|im_end|>", 1)[0]
    assert system == "A meeting.\nKubernetes, hushdrop"


def test_language_table_maps_both_ways():
    assert LANGUAGES["yue"] == "Cantonese" and LANGUAGES["zh"] == "Chinese"
    assert language_code("Cantonese") == "yue"
    assert language_code("english") == "en"
    assert language_code("Klingon") is None
    assert all(language_code(name) == code for code, name in LANGUAGES.items())


def test_parse_output_reports_language_and_no_speech():
    parsed = parse_output("language English<asr_text>Hello there.")
    assert (parsed.language, parsed.text, parsed.no_speech) == ("English", "Hello there.", False)
    assert language_code(parse_output("language Cantonese<asr_text>你好").language) == "yue"
    silent = parse_output("language None<asr_text>")
    assert silent.language is None and silent.text == "" and silent.no_speech
    assert parse_output("", forced_language="German").no_speech
    assert parse_output("Guten Tag.", forced_language="German").text == "Guten Tag."
    untagged = parse_output("just text")
    assert untagged.language is None and untagged.text == "just text"


# --------------------------------------------------------------------------- repetition guard


@pytest.mark.parametrize(
    "text,expected",
    [
        ("I think " * 8 + "so.", "I think so."),
        ("好的" * 12 + "。谢谢", "好的。谢谢"),
        ("ha" * 30 + " funny", "ha funny"),
        ("we " * 20 + "went home", "we went home"),
        ("and then the cat sat. " * 6 + "The end.", "and then the cat sat. The end."),
    ],
)
def test_repeat_guard_detects_and_cuts_loops(text, expected):
    guard = RepeatGuard()
    assert guard.has_loop(text)
    assert guard.cut(text) == expected
    assert not guard.has_loop(guard.cut(text))


@pytest.mark.parametrize(
    "text",
    [
        "no no no, I said no.",
        "very very very good",
        "The cat sat on the mat. The cat sat on the mat again.",
        "謝謝謝謝你",
        "",
    ],
)
def test_repeat_guard_leaves_normal_speech_alone(text):
    guard = RepeatGuard()
    assert not guard.has_loop(text)
    assert guard.cut(text) == text.strip()


def test_looping_window_is_redecoded_with_a_penalty(tiny_checkpoints, monkeypatch):
    eng = make_engine(tiny_checkpoints["looping"], tokens_per_second=2.0, token_margin=0)
    generate = Spy(eng.model, "generate", monkeypatch)
    (result,) = eng.transcribe([speechlike(10.0)], DecodeRequest())

    first, retry = (kw for _, kw in generate.calls)
    assert "repetition_penalty" not in first
    assert retry["repetition_penalty"] == pytest.approx(1.15) and retry["no_repeat_ngram_size"] == 10
    raw_first = eng.processor.tokenizer.decode(generate.results[0][0, first["input_ids"].shape[1] :])
    assert raw_first.split() == ["hello"] * 20  # the model loops by construction
    text = " ".join(texts(result))
    assert text and not RepeatGuard().has_loop(text)


def test_loop_that_survives_the_redecode_is_cut(tiny_checkpoints):
    eng = make_engine(tiny_checkpoints["looping"], tokens_per_second=2.0, token_margin=0)
    # No penalty on the re-decode: it loops again, and the cutter has to act.
    options = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
    (result,) = eng.transcribe([speechlike(10.0)], DecodeRequest(options=options))
    assert texts(result) == ["hello"]


# --------------------------------------------------------------------------- timestamps


def test_interpolated_times_follow_voiced_audio():
    sr = SAMPLE_RATE
    rng = np.random.default_rng(0)
    audio = np.zeros(8 * sr, dtype=np.float32)
    audio[: 2 * sr] = rng.standard_normal(2 * sr) * 0.3  # speech 0-2 s
    audio[6 * sr :] = rng.standard_normal(2 * sr) * 0.3  # speech 6-8 s
    first, second = interpolate_segments(["Hello there.", "How are you?"], audio, "en")
    assert first.start == pytest.approx(0.0, abs=0.05) and first.end == pytest.approx(2.0, abs=0.1)
    assert second.start == pytest.approx(6.0, abs=0.1) and second.end == pytest.approx(8.0, abs=0.05)
    assert first.words == [] and first.language == "en"


def test_split_sentences():
    assert split_sentences("Hi there. How are you? Fine!") == ["Hi there.", "How are you?", "Fine!"]
    assert split_sentences("你好。我很好！谢谢") == ["你好。", "我很好！", "谢谢"]
    long = " ".join(["word"] * 100)
    parts = split_sentences(long, max_chars=50)
    assert len(parts) > 1 and all(len(p) <= 50 for p in parts) and " ".join(parts) == long


def test_aligner_gives_word_times_within_300s_pieces(tiny_checkpoints, monkeypatch):
    eng = make_engine(tiny_checkpoints["asr"], aligner=tiny_checkpoints["aligner"], **FAST)
    assert eng.aligner is not None
    assert eng.describe()["aligner_path"] == str(tiny_checkpoints["aligner"])
    aligner_calls = Spy(eng.aligner_processor, "prepare_forced_aligner_inputs", monkeypatch)
    audio = speechlike(400, seed=7)
    opts = {"tokens_per_second": 0.05, "token_margin": 2}
    (result,) = eng.transcribe([audio], DecodeRequest(language="en", options=opts))

    pieces = split_at_quiet_points(audio, SAMPLE_RATE, 300.0)
    assert len(pieces) == 2
    lengths = [len(a) / SAMPLE_RATE for a in aligner_calls.calls[0][1]["audio"]]
    assert len(lengths) == 2 and max(lengths) <= 300.0
    words = [w for s in result.segments for w in s.words]
    assert words and all(s.words for s in result.segments)
    for w in words:
        assert 0.0 <= w.start <= w.end <= 400.0 + 1e-6
    cut = pieces[0][1] / SAMPLE_RATE
    second = [s for s in result.segments if s.start >= cut - 1e-6]
    assert second, "the second piece's words are offset by its start"
    for seg in result.segments:
        assert seg.start == seg.words[0].start and seg.end == seg.words[-1].end


def test_word_timestamps_off_skips_the_aligner(tiny_checkpoints, monkeypatch):
    eng = make_engine(tiny_checkpoints["asr"], aligner=tiny_checkpoints["aligner"], **FAST)
    calls = Spy(eng.aligner_processor, "prepare_forced_aligner_inputs", monkeypatch)
    (result,) = eng.transcribe([speechlike(3.0)], DecodeRequest(word_timestamps=False))
    assert calls.calls == [] and result.segments and all(s.words == [] for s in result.segments)


# --------------------------------------------------------------------------- errors & checkpoints


def test_missing_checkpoint_is_a_clear_model_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelError) as info:
        Qwen3AsrEngine(EngineSpec(engine="qwen3-asr", model=str(missing), device="cpu"))
    message = str(info.value)
    assert str(missing) in message
    assert "hushdrop models pull" in message and "model: /path" in message


def test_incomplete_checkpoint_dir_is_a_model_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="not a complete checkpoint"):
        Qwen3AsrEngine(EngineSpec(engine="qwen3-asr", model=str(tmp_path), device="cpu"))


def test_known_name_not_pulled_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HUSHDROP_CACHE", str(tmp_path))
    with pytest.raises(ModelError) as info:
        Qwen3AsrEngine(EngineSpec(engine="qwen3-asr", model="qwen3-asr-1.7b", device="cpu"))
    assert "model qwen3-asr-1.7b is not pulled: run `hushdrop models pull qwen3-asr-1.7b`" in str(info.value)


def test_missing_aligner_is_a_model_error(tiny_checkpoints, tmp_path):
    spec = EngineSpec(engine="qwen3-asr", model=str(tiny_checkpoints["asr"]), aligner=str(tmp_path / "x"))
    with pytest.raises(ModelError, match="aligner"):
        Qwen3AsrEngine(spec)


def test_too_old_transformers_is_a_model_error(tiny_checkpoints, monkeypatch):
    import transformers

    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    with pytest.raises(ModelError, match=r"transformers>=5\.13, found 4\.57\.1"):
        Qwen3AsrEngine(EngineSpec(engine="qwen3-asr", model=str(tiny_checkpoints["asr"]), device="cpu"))


def test_transformers_without_qwen3_asr_classes_is_a_model_error(tiny_checkpoints, monkeypatch):
    fake = types.ModuleType("transformers")
    fake.__version__ = "5.20.0"
    monkeypatch.setitem(sys.modules, "transformers", fake)
    with pytest.raises(ModelError, match="no Qwen3-ASR classes"):
        Qwen3AsrEngine(EngineSpec(engine="qwen3-asr", model=str(tiny_checkpoints["asr"]), device="cpu"))


def test_pull_offline_fails_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HUSHDROP_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cat = catalogue.Catalogue(lock_path=tmp_path / "models.lock")
    with pytest.raises(ModelError) as info:
        hub.pull(cat.find("qwen3-asr-0.6b"), cat)
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "model: /path/to/that/folder" in message
    assert not (tmp_path / "models").exists() and not (tmp_path / "models.lock").exists()


def test_pull_from_a_hub_then_load_by_name_and_alias(tiny_checkpoints, tmp_path, monkeypatch):
    """The catalogue's own entry, pulled from a local hub serving a tiny checkpoint under its name."""
    files = {p.name: p for p in tiny_checkpoints["asr"].iterdir() if p.is_file()}
    with LocalHub({"Qwen/Qwen3-ASR-0.6B-hf": files}) as local:
        for key, value in local.environ(tmp_path / "hf-home").items():
            if key.startswith("HF_"):
                monkeypatch.setenv(key, value)
        monkeypatch.setenv("HUSHDROP_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        cat = catalogue.Catalogue(lock_path=tmp_path / "models.lock")
        catalogue.use(cat)
        try:
            before = {s.name: s for s in model_statuses()}
            assert set(before) == {"qwen3-asr-0.6b", "qwen3-asr-1.7b", "qwen3-forcedaligner-0.6b"}
            assert not any(s.ready for s in before.values())
            pulled = hub.pull(cat.find("Qwen/Qwen3-ASR-0.6B-hf"), cat, say=lambda line: None)
            assert pulled.folder.name == f"qwen3-asr-0.6b@{local.commit('Qwen/Qwen3-ASR-0.6B-hf')}"
            assert set(json.loads((tmp_path / "models.lock").read_text())["models"]) == {"qwen3-asr-0.6b"}
            after = {s.name: s for s in model_statuses()}
            assert after["qwen3-asr-0.6b"].ready and after["qwen3-asr-0.6b"].where == str(pulled.folder)
            assert not after["qwen3-asr-1.7b"].ready
            for name in ("qwen3-asr-0.6b", "Qwen/Qwen3-ASR-0.6B-hf"):
                eng = make_engine(Path(name), **FAST)  # a catalogue name resolves into the verified cache
                assert eng.model_path == pulled.folder
            (result,) = eng.transcribe([speechlike(2.0)], DecodeRequest())
            assert result.segments
        finally:
            catalogue.use(catalogue.Catalogue())


def test_engine_is_registered_under_its_name():
    from hushdrop.pipeline.engines import engine_for

    entry = engine_for("qwen3-asr")
    assert entry is qwen3.ENTRY and entry.load is qwen3.Qwen3AsrEngine
    assert qwen3.Qwen3AsrEngine.name == "qwen3-asr" and entry.Options is Qwen3Options
    assert entry.languages == frozenset(LANGUAGES)
    assert entry.is_catalogue_model("qwen3-asr-1.7b") and not entry.is_catalogue_model("small")
