"""The model catalogue: one table for `models`, `models pull`, `config check`, `workers: auto` and
the engines; its names are the ones faster-whisper itself uses, and its advice follows the machine."""

from __future__ import annotations

import pytest

from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.engines import ENGINES, EngineSpec, catalogue
from hushdrop.pipeline.engines.catalogue import BUILTIN, Catalogue, recommend
from hushdrop.pipeline.errors import ConfigError, ModelError
from hushdrop.pipeline.watch.sizing import WATCHER_RESERVE_BYTES, Machine, resolve_workers

GB = 10**9


def test_every_whisper_name_is_faster_whispers_own_repository():
    from faster_whisper.utils import _MODELS

    whisper = [e for e in BUILTIN if e.engine == "whisper"]
    assert {"tiny", "base", "small", "medium", "large-v3", "large-v3-turbo", "distil-large-v3"} <= {e.name for e in whisper}
    for entry in whisper:
        for name in entry.names():
            assert _MODELS[name] == entry.repository, name


def test_names_and_aliases_are_unique_and_resolve_in_any_case():
    names = [name.lower() for entry in BUILTIN for name in entry.names()]
    assert len(names) == len(set(names))
    cat = Catalogue()
    assert cat.find("TURBO").name == "large-v3-turbo"
    assert cat.find("Qwen/Qwen3-ASR-1.7B-hf").name == "qwen3-asr-1.7b"
    assert cat.find("small", engine="qwen3-asr") is None
    assert cat.find("/srv/models/small") is None


def test_english_only_models_do_not_translate_and_only_base_is_bundled():
    for entry in BUILTIN:
        if entry.languages == "en":
            assert not entry.can_translate, entry.name
    assert [e.name for e in BUILTIN if e.bundled] == ["base"]
    assert not Catalogue().find("turbo").can_translate  # OpenAI: not trained for translation


@pytest.mark.parametrize(
    ("cores", "memory_gb", "gpu_gb", "qwen3", "expected"),
    [
        (2, 24, None, True, "base"),
        (8, 16, None, False, "small"),
        (8, 2, None, False, "base"),  # the cores, but not the memory for small
        (8, 32, 24, True, "qwen3-asr-1.7b"),
        (8, 32, 24, False, "large-v3-turbo"),
        (8, 32, 4, True, "large-v3-turbo"),  # too small for qwen3-asr-1.7b at float16
        (8, 32, 1, True, "small"),
        (8, 32, 0, False, "large-v3-turbo"),  # a GPU whose memory is unknown
    ],
)
def test_the_recommendation_follows_the_machine(cores, memory_gb, gpu_gb, qwen3, expected):
    advice = recommend(cores, int(memory_gb * GB), None if gpu_gb is None else int(gpu_gb * GB), qwen3)
    assert advice.model == expected
    assert f"{cores} cores" in advice.why or "GPU" in advice.why
    assert Catalogue().find(advice.model) is not None


def test_workers_auto_uses_the_profiles_models_memory(tmp_path):
    settings = parse_config(
        {"workers": "auto", "profiles": {"default": {"chain": ["resample", {"transcribe": {"model": "small"}}]}}},
        tmp_path / "config.yaml",
    )
    small = Catalogue().find("small").memory_int8
    assert ENGINES["whisper"].worker_memory("small") == small
    memory = WATCHER_RESERVE_BYTES + int(2.5 * small)
    plan = resolve_workers(settings, Machine(cores=8, available_memory=memory, cuda=False))
    assert plan.count == 2 and f"~{small / GB:.2f} GB per worker" in plan.describe()
    base = parse_config({"workers": "auto", "profiles": {"default": {}}}, tmp_path / "config.yaml")
    base_bytes = Catalogue().find("base").memory_int8
    assert resolve_workers(base, Machine(cores=8, available_memory=memory, cuda=False)).count == int(2.5 * small) // base_bytes == 6


def test_a_configs_own_models_join_the_catalogue(tmp_path):
    settings = parse_config(
        {"models": {"my-whisper": {"repository": "me/my-whisper-ct2", "language": "de"}},
         "profiles": {"default": {"chain": ["resample", {"transcribe": {"model": "my-whisper"}}]}}},
        tmp_path / "config.yaml",
    )
    cat = catalogue.for_settings(settings)
    own = cat.find("my-whisper", "whisper")
    assert own.repository == "me/my-whisper-ct2" and own.languages == "de" and "model.bin" in own.files
    assert cat.lock_path == tmp_path / "models.lock" == settings.models_lock
    assert catalogue.current().find("my-whisper") == own  # loading the config made its catalogue current
    with pytest.raises(ModelError, match="model my-whisper is not pulled: run `hushdrop models pull my-whisper`"):
        ENGINES["whisper"].load(EngineSpec(model="my-whisper"))


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({"small": {"repository": "me/x"}}, "is a built-in model's"),
        ({"Bad Name": {"repository": "me/x"}}, "use lower-case letters"),
        ({"mine": {"repository": "not a repo"}}, "repository"),
        ({"mine": {"engine": "vosk", "repository": "me/x"}}, "unknown engine 'vosk'"),
    ],
)
def test_a_bad_own_model_is_a_config_error(tmp_path, models, message):
    with pytest.raises(ConfigError) as info:
        parse_config({"models": models, "profiles": {"default": {}}}, tmp_path / "config.yaml")
    assert message in " ".join(info.value.problems)


def test_an_unknown_model_name_lists_the_catalogue(tmp_path):
    with pytest.raises(ModelError) as info:
        ENGINES["whisper"].load(EngineSpec(model="large-v9"))
    assert "large-v3-turbo" in str(info.value) and "hushdrop models" in str(info.value)


def test_translate_on_an_own_model_that_cannot_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"models": {"mine": {"repository": "me/x", "can_translate": False}},
             "profiles": {"default": {"task": "translate", "chain": ["resample", {"transcribe": {"model": "mine"}}]}}},
            tmp_path / "config.yaml",
        )
    assert "model mine cannot translate" in " ".join(info.value.problems)
