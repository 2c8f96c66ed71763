"""Shared fixtures: real audio made with real ffmpeg, real configs in temp folders (helpers: tests/helpers.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hushdrop.pipeline.audio import bundled_ffmpeg
from hushdrop.pipeline.config import Settings
from tests.helpers import SPEECH_EN, make_settings
from tests.unprivileged import make_shared_tree


@pytest.fixture(params=["bundled", "system"])
def each_ffmpeg(request, monkeypatch) -> str:
    """Runs a test with every ffmpeg present: the bundled one always, the system's when there is one.

    Chosen through ``HUSHDROP_FFMPEG``, so the stages and the ``ffmpeg()`` helper both use it.
    """
    path = bundled_ffmpeg() if request.param == "bundled" else shutil.which("ffmpeg")
    if path is None:
        pytest.skip("no ffmpeg on PATH: only the bundled one is tested (`make test` installs Debian's where apt can)")
    monkeypatch.setenv("HUSHDROP_FFMPEG", path)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def speech_copy(tmp_path: Path) -> Path:
    """A private copy of the English test clip that a test may shred."""
    target = tmp_path / "dropped" / "speech_en.wav"
    target.parent.mkdir()
    target.write_bytes(SPEECH_EN.read_bytes())
    return target


@pytest.fixture(scope="session")
def processor_session(tmp_path_factory):
    """One Processor (one loaded model) shared by the tests that only transcribe."""
    from hushdrop.pipeline.process import Processor

    root = tmp_path_factory.mktemp("shared")
    processor = Processor(make_settings(root))
    yield processor
    processor.close()


@pytest.fixture
def shared_tree():
    """A temp folder the unprivileged user of tests/unprivileged.py can enter and write."""
    yield from make_shared_tree()
