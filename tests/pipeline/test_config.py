"""config.yaml loading: every error named with file, profile, stage and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from hushdrop.pipeline.config import load_config, parse_config
from hushdrop.pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_shipped_config_is_valid_with_three_profiles():
    settings = load_config(REPO / "config.yaml")
    assert set(settings.profiles) == {"default", "meetings-zh", "podcast-en"}
    assert settings.profile("meetings-zh").language == "zh"
    assert settings.profile("podcast-en").originals.action == "move"
    assert [s.name for s in settings.profile("meetings-zh").chain] == [s.name for s in settings.profile("default").chain]


def test_relative_paths_follow_the_config_file(tmp_path):
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(REPO / "config.yaml", moved / "config.yaml")
    settings = load_config(moved / "config.yaml")
    assert settings.inbox == moved / "inbox"
    assert settings.outbox == moved / "outbox"
    assert settings.profile("podcast-en").originals.move_to == moved / "archive" / "podcast-en"


def test_every_problem_reported_at_once_with_its_path(tmp_path):
    path = write(
        tmp_path,
        {
            "workers": 0,
            "profiles": {
                "default": {"language": "klingon"},
                "meetings": {
                    "chain": [
                        "normalize",
                        {"highpass": {"cutoff_hz": 5}},
                        "resample",
                        {"denoise": {"mode": "sometimes", "prop_decrease": 3}},
                        "transcribe",
                        "polish",
                    ]
                },
            },
        },
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "profiles.default.language: unknown language 'klingon'" in message
    assert "profiles.meetings.chain[1] (highpass).cutoff_hz" in message
    assert "profiles.meetings.chain[3] (denoise).mode" in message
    assert "profiles.meetings.chain[3] (denoise).prop_decrease" in message
    assert "profiles.meetings.chain[5]: unknown stage 'polish'" in message
    assert "workers" in message


@pytest.mark.parametrize(
    "chain,expected",
    [
        (["normalize", "resample"], "must contain a 'transcribe'"),
        (["transcribe", "resample"], "needs 'resample' before 'transcribe'"),
        (["resample", "grammar", "transcribe"], "'grammar' works on the transcript"),
        ([{"denoise": {"no_such": 1}}, "resample", "transcribe"], "chain[0] (denoise).no_such: unknown key 'no_such'"),
    ],
)
def test_chain_shape_errors(tmp_path, chain, expected):
    with pytest.raises(ConfigError, match=None) as info:
        parse_config({"profiles": {"default": {"chain": chain}}}, tmp_path / "c.yaml")
    assert expected in str(info.value)


def test_profiles_inherit_from_default_and_folders_are_unique(tmp_path):
    settings = parse_config(
        {"profiles": {"default": {"glossary": ["Acme"], "originals": "keep"}, "calls": {"language": "de"}}},
        tmp_path / "c.yaml",
    )
    calls = settings.profile("calls")
    assert calls.glossary == ["Acme"] and calls.originals.action == "keep" and calls.folder == "calls"
    assert settings.profile("default").folder == ""
    with pytest.raises(ConfigError, match="already the folder"):
        parse_config({"profiles": {"a": {"folder": "x"}, "b": {"folder": "x"}}}, tmp_path / "c.yaml")


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "profiles:\n  default:\n    language: [en\n")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(path)


def test_missing_file_and_move_without_folder(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="'move' needs a folder"):
        parse_config({"profiles": {"default": {"originals": {"action": "move"}}}}, tmp_path / "c.yaml")


def test_config_check_cli(tmp_path):
    import subprocess
    import sys

    bad = write(tmp_path, {"profiles": {"default": {"chain": ["resample", {"transcribe": {"beam_size": 0}}]}}})
    proc = subprocess.run(
        [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(bad), "config", "check"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "profiles.default.chain[1] (transcribe).beam_size" in proc.stderr
    good = subprocess.run(
        [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(REPO / "config.yaml"), "config", "check"],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0 and "is valid" in good.stdout


def test_engine_options_and_language_checked_against_the_engine(tmp_path):
    chain = ["resample", {"transcribe": {"engine": "qwen3-asr", "model": "/nowhere", "engine_options": {"bogus": 1}}}]
    with pytest.raises(ConfigError) as info:
        parse_config({"profiles": {"default": {"chain": chain, "language": "sw"}}}, tmp_path / "c.yaml")
    assert info.value.problems[0].startswith(
        "profiles.default.chain[1] (transcribe).engine_options.bogus: unknown key 'bogus'; known keys: batch_size, "
    )
    chain[1]["transcribe"]["engine_options"] = {}
    with pytest.raises(ConfigError, match="not one the qwen3-asr engine can be forced to"):
        parse_config({"profiles": {"default": {"chain": chain, "language": "sw"}}}, tmp_path / "c.yaml")
    settings = parse_config({"profiles": {"default": {"chain": chain, "language": "yue"}}}, tmp_path / "c.yaml")
    assert settings.profile("default").language == "yue"
    assert settings.profile("default").transcribe_options().engine == "qwen3-asr"


def test_whisper_engine_options_are_checked_at_load_time(tmp_path):
    """A typo in whisper's engine_options fails `config check`, not every job later."""
    import subprocess
    import sys

    chain = ["resample", {"transcribe": {"engine_options": {"bogus_option": 1, "beam_sise": 2}}}]
    path = write(tmp_path, {"profiles": {"default": {"chain": chain}}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    typo, bogus = info.value.problems  # in key order, as yaml.safe_dump wrote them
    assert bogus.startswith("profiles.default.chain[1] (transcribe).engine_options.bogus_option: unknown key 'bogus_option'; known keys: ")
    assert typo == "profiles.default.chain[1] (transcribe).engine_options.beam_sise: unknown key 'beam_sise'; did you mean 'beam_size'?"
    proc = subprocess.run(
        [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(path), "config", "check"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "did you mean 'beam_size'?" in proc.stderr
    chain[1]["transcribe"]["engine_options"] = {"beam_size": 3, "initial_prompt": "Hello."}
    options = load_config(write(tmp_path, {"profiles": {"default": {"chain": chain}}})).profile("default").transcribe_options()
    assert options.engine_options == {"beam_size": 3, "initial_prompt": "Hello."}


def test_language_is_checked_against_whispers_languages(tmp_path):
    with pytest.raises(ConfigError, match="not one the whisper engine can be forced to"):
        parse_config({"profiles": {"default": {"language": "fil"}}}, tmp_path / "c.yaml")  # qwen3-asr knows it
    default = parse_config({"profiles": {"default": {"language": "yue"}}}, tmp_path / "c.yaml").profile("default")
    assert (default.language, default.transcribe_options().engine) == ("yue", "whisper")


def test_one_problem_is_reported_once_with_a_suggestion(tmp_path):
    raw = {
        "max_atempts": 3,
        "profiles": {
            "default": {"settle_secs": 3, "chain": ["normalize", "resample", {"transcribe": {"beam_size": 0}}]},
            "calls": {"language": "de"},
            "other": {},
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, tmp_path / "c.yaml")
    problems = info.value.problems
    assert problems == [
        "profiles.default.chain[2] (transcribe).beam_size: Input should be greater than or equal to 1",
        "profiles.default.settle_secs: unknown key 'settle_secs'; did you mean 'settle_seconds'?",
        "max_atempts: unknown key 'max_atempts'; did you mean 'max_attempts'?",
    ], "no follow-on 'must contain a transcribe stage', nothing repeated under the profiles that inherit it"


def test_a_profiles_own_mistake_is_still_reported(tmp_path):
    raw = {"profiles": {"default": {}, "calls": {"langauge": "de", "chain": ["resample", {"transcribe": {"beam_size": 0}}]}}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, tmp_path / "c.yaml")
    assert info.value.problems == [
        "profiles.calls.chain[1] (transcribe).beam_size: Input should be greater than or equal to 1",
        "profiles.calls.langauge: unknown key 'langauge'; did you mean 'language'?",
    ]


def _readme_stage_defaults() -> dict[str, dict[str, str]]:
    """stage → {option: default as written} from the README's stage table."""
    import re

    table = {}
    text = (REPO / "README.md").read_text()
    rows = text.split("| stage | does | options (defaults) |", 1)[1].split("\n\n", 1)[0]
    for line in rows.splitlines():
        match = re.match(r"\| `(\w+)`(?: \(not in the default chain\))? \| .* \| (.*) \|$", line)
        if match:
            table[match.group(1)] = dict(re.findall(r"`(\w+): ([^`]+)`", match.group(2)))
    return table


def test_readme_stage_defaults_are_the_codes():
    import yaml as _yaml

    from hushdrop.stages import REGISTRY

    documented = _readme_stage_defaults()
    assert set(documented) == set(REGISTRY), "every stage has a row in the README's stage table"
    for stage, options in documented.items():
        fields = REGISTRY[stage].Options.model_fields
        for key, written in options.items():
            assert key in fields, f"README names {stage}.{key}, which the stage does not have"
            default = fields[key].get_default(call_default_factory=True)
            assert _yaml.safe_load(written) == default, f"README says {stage}.{key}: {written}, the code says {default!r}"


# -- workers: a number or auto (what auto resolves to: tests/watch/test_sizing.py) -------------


@pytest.mark.parametrize("value", ["auto", "AUTO", " auto "])
def test_workers_may_be_auto(tmp_path, value):
    assert parse_config({"workers": value}, tmp_path / "c.yaml").workers == "auto"
    assert parse_config({"workers": 3}, tmp_path / "c.yaml").workers == 3
    assert parse_config({}, tmp_path / "c.yaml").workers == 1  # the default is unchanged


@pytest.mark.parametrize("value", [0, 65, "many", True, 1.5, None])
def test_workers_is_a_number_or_auto(tmp_path, value):
    with pytest.raises(ConfigError, match=r"workers: must be a whole number from 1 to 64, or auto"):
        parse_config({"workers": value}, tmp_path / "c.yaml")
