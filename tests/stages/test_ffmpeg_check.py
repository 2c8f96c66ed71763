"""One known ffmpeg: which binary the setting picks, and whether a binary can run the chain."""

from __future__ import annotations

import shutil

import pytest

from hushdrop.pipeline.audio import bundled_ffmpeg, resolve_ffmpeg
from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.errors import ConfigError, EnvironmentFault
from tests.helpers import fake_ffmpeg
from hushdrop.pipeline.ffmpeg_check import check_ffmpeg, chain_expressions, describe_ffmpeg, version_numbers

SYSTEM = shutil.which("ffmpeg")


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("HUSHDROP_FFMPEG", raising=False)


def test_the_bundled_ffmpeg_is_the_default_even_with_one_on_path(tmp_path):
    settings = parse_config({"profiles": {"default": {}}}, tmp_path / "config.yaml")
    assert settings.ffmpeg == "bundled"
    assert resolve_ffmpeg(settings.ffmpeg) == bundled_ffmpeg()
    assert "imageio_ffmpeg" in bundled_ffmpeg()


def test_the_setting_opts_into_another_ffmpeg_and_the_environment_overrides_it(tmp_path, monkeypatch):
    settings = parse_config({"ffmpeg": "tools/ffmpeg", "max_temp_gb": 2, "profiles": {"default": {}}}, tmp_path / "config.yaml")
    assert settings.max_temp_gb == 2
    assert resolve_ffmpeg(settings.ffmpeg, tmp_path) == str(tmp_path / "tools" / "ffmpeg")
    assert resolve_ffmpeg("/opt/ffmpeg/bin/ffmpeg") == "/opt/ffmpeg/bin/ffmpeg"
    if SYSTEM:
        assert resolve_ffmpeg("system") == SYSTEM
    else:
        with pytest.raises(EnvironmentFault, match="no ffmpeg on PATH"):
            resolve_ffmpeg("system")
    monkeypatch.setenv("HUSHDROP_FFMPEG", "/elsewhere/ffmpeg")
    assert resolve_ffmpeg("bundled") == "/elsewhere/ffmpeg"
    with pytest.raises(ConfigError):
        parse_config({"ffmpeg": "", "profiles": {"default": {}}}, tmp_path / "config.yaml")


def test_the_bundled_ffmpeg_passes_the_check():
    assert check_ffmpeg(bundled_ffmpeg()) == []


@pytest.mark.skipif(SYSTEM is None, reason="no ffmpeg on PATH")
def test_the_system_ffmpeg_passes_the_check():
    assert check_ffmpeg(SYSTEM) == []


def test_the_check_runs_every_filter_the_filter_stages_produce():
    expressions = {(stage, name) for stage, (name, _) in chain_expressions()}
    assert {("normalize", "ebur128"), ("normalize", "volume"), ("highpass", "highpass"), ("resample", "aresample")} <= expressions


def test_an_old_ffmpeg_that_refuses_an_ebur128_option_is_reported_with_the_fix(tmp_path):
    old = fake_ffmpeg(
        tmp_path,
        'case "$*" in\n'
        '  *-version*) echo "ffmpeg version 4.1.11-0+deb10u1 Copyright (c) 2000-2023 the FFmpeg developers"; exit 0;;\n'
        '  *framelog*) echo "[Parsed_ebur128_0 @ 0x55d0c0e4f] Option \'framelog\' not found" >&2; exit 1;;\n'
        "esac\n"
        'exec "$REAL" "$@"',
    )
    problems = check_ffmpeg(old)
    assert any("4.1.11" in p and "older than 4.4" in p for p in problems), problems
    ebur128 = [p for p in problems if "ebur128" in p]
    assert len(ebur128) == 1 and "framelog" in ebur128[0] and "normalize" in ebur128[0], problems
    assert all("set `ffmpeg: bundled` in config.yaml" in p for p in problems)


def test_an_ffmpeg_that_is_not_there_or_does_not_run(tmp_path):
    [problem] = check_ffmpeg(str(tmp_path / "missing"))
    assert "no runnable ffmpeg" in problem and "ffmpeg: bundled" in problem
    broken = fake_ffmpeg(tmp_path, 'echo "ffmpeg: error while loading shared libraries: libavdevice.so.58" >&2; exit 127')
    [problem] = check_ffmpeg(broken)
    assert "libavdevice.so.58" in problem


def test_describe_names_the_path_version_and_origin(monkeypatch):
    info = describe_ffmpeg()
    assert (info.path, info.origin) == (bundled_ffmpeg(), "bundled")
    assert version_numbers(info.version) is not None or info.version.startswith("N-")
    if SYSTEM:
        system = describe_ffmpeg("system")
        assert system.path == SYSTEM and system.origin == "system" and system.version
    monkeypatch.setenv("HUSHDROP_FFMPEG", bundled_ffmpeg())
    assert describe_ffmpeg("system").origin == "HUSHDROP_FFMPEG"


def test_version_numbers():
    assert version_numbers("5.1.9-0+deb12u1") == (5, 1)
    assert version_numbers("n9.0.2-17-g2a571b6068-20260930") == (9, 0)
    assert version_numbers("4.4.2-0ubuntu0.22.04.1") == (4, 4)
    assert version_numbers("N-112233-gdeadbeef") is None
