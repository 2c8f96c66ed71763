"""Shared fixtures: real audio made with real ffmpeg, real configs in temp folders."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from hushdrop.pipeline.audio import bundled_ffmpeg, ffmpeg_exe
from hushdrop.pipeline.config import Settings, parse_config
from tests.unprivileged import make_shared_tree

DATA = Path(__file__).parent / "data"
SPEECH_EN = DATA / "speech_en.wav"
SPEECH_EN_TEXT = (DATA / "speech_en.txt").read_text()


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after lower-casing and dropping punctuation."""
    import jiwer

    return jiwer.wer(" ".join(words(reference)), " ".join(words(hypothesis)))


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


def ffmpeg(*args: str) -> None:
    """Run the same ffmpeg hushdrop uses; fail the test with its message if it fails."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    soundfile.write(path, np.asarray(samples, dtype=np.float32), rate, subtype="FLOAT")
    return path


def tone(freq: float, seconds: float, rate: int = 48000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def load_speech(rate: int = 16000) -> np.ndarray:
    samples, sr = soundfile.read(SPEECH_EN, dtype="float32")
    assert sr == rate, "speech_en.wav is 16 kHz; resample in the test if you need another rate"
    return samples


def make_settings(root: Path, **profile_overrides) -> Settings:
    """A real config rooted in ``root`` (inbox/, outbox/, .hushdrop/), parsed like config.yaml."""
    profile = {"originals": "shred", **profile_overrides}
    return parse_config({"profiles": {"default": profile}}, root / "config.yaml")


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


def fake_ffmpeg(tmp_path: Path, body: str, name: str = "fake-ffmpeg") -> str:
    """A shell script standing in for a broken or limited ffmpeg; ``$REAL`` runs the real one."""
    import stat

    script = tmp_path / name
    script.write_text(f"#!/bin/sh\nREAL='{ffmpeg_exe()}'\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def run_chain(path: Path, rate: int, stages, tmp_path: Path):
    """Run ``stages`` on ``path`` with real ffmpeg; returns (samples, rate, job)."""
    from hushdrop.pipeline.audio import Audio
    from hushdrop.pipeline.job import Job
    from hushdrop.pipeline.chain import Chain

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    job = Job(source=path)
    job.audio = Audio(source=path, workdir=work, source_rate=rate)
    Chain(stages).run(job)
    samples, out_rate = job.audio.samples()
    return np.array(samples), out_rate, job


def snr_against(clean: np.ndarray, processed: np.ndarray) -> float:
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((processed - clean).astype(np.float64) ** 2))


@pytest.fixture
def shared_tree():
    """A temp folder the unprivileged user of tests/unprivileged.py can enter and write."""
    yield from make_shared_tree()
