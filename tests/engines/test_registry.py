"""The contract every registered engine keeps: what the config loader, `hushdrop models`, the
`transcribe` stage and `workers: auto` ask of its registry entry, without loading a model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hushdrop.pipeline.engines import ENGINES, engine_for
from hushdrop.pipeline.engines.base import EngineOptions
from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.models import ModelStatus

ENTRIES = pytest.mark.parametrize("name", sorted(ENGINES))


@ENTRIES
def test_options_have_defaults_and_forbid_unknown_keys(name):
    entry = engine_for(name)
    assert entry.name == name
    assert issubclass(entry.Options, EngineOptions) and entry.Options.engine == name
    assert entry.Options().model_dump(exclude_unset=True) == {}  # every key has a default
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        entry.Options.model_validate({"no_such_option": 1})


@ENTRIES
def test_languages_are_codes_the_profile_may_force(name):
    entry = engine_for(name)
    assert entry.languages and all(code == code.strip().lower() for code in entry.languages)
    for code in entry.languages:
        entry.check_language(code)
    with pytest.raises(ValueError, match=f"not one the {name} engine can be forced to"):
        entry.check_language("xx")


@ENTRIES
def test_models_are_listed_as_this_engines(name):
    statuses = engine_for(name).model_statuses()
    assert statuses and all(isinstance(s, ModelStatus) and s.engine == name for s in statuses)


@ENTRIES
def test_loading_is_deferred_and_a_path_is_never_a_catalogue_model(name, tmp_path):
    entry = engine_for(name)
    assert callable(entry.load)
    assert entry.is_catalogue_model(str(tmp_path / "my-model")) is False


@ENTRIES
def test_a_worker_holding_its_model_needs_at_least_the_runtime(name, tmp_path):
    entry = engine_for(name)
    for model in (str(tmp_path / "no-such-model"), *(s.name for s in entry.model_statuses())):
        needed = entry.worker_memory(model)
        assert isinstance(needed, int) and needed >= 100 * 10**6, (model, needed)


def test_an_unknown_engine_names_every_registered_one():
    with pytest.raises(ModelError, match="unknown engine 'nope'; choose one of: ") as info:
        engine_for("nope")
    assert all(name in str(info.value) for name in ENGINES)
