"""`hushdrop run` end to end: a real process, real ffmpeg, the real model, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import SPEECH_EN, SPEECH_EN_TEXT, ffmpeg, wer, words, write_wav
from tests.harness import hushdrop, hushdrop_offline, make_config


def prefix_wer(hypothesis: str) -> float:
    """WER against as much of the clip's text as the hypothesis covers (for excerpts)."""
    return wer(" ".join(words(SPEECH_EN_TEXT)[: len(words(hypothesis))]), hypothesis)


FORMATS = ["txt", "srt", "vtt", "json", "md"]


def test_run_transcribes_writes_five_outputs_and_shreds(tmp_path):
    config = make_config(tmp_path)
    original = tmp_path / "drop" / "speech_en.wav"
    original.parent.mkdir()
    shutil.copy(SPEECH_EN, original)
    proc = hushdrop(config, "run", "--shred", str(original))
    assert proc.returncode == 0, proc.stderr
    outbox = tmp_path / "outbox" / "default"
    outputs = sorted(p.name for p in outbox.iterdir())
    assert outputs == sorted(f"speech_en.{f}" for f in FORMATS)
    record = json.loads((outbox / "speech_en.json").read_text())
    assert wer(SPEECH_EN_TEXT, record["text"]) <= 0.15, record["text"]
    assert not original.exists(), "the original must be shredded after the outputs are committed"
    assert list(original.parent.iterdir()) == []
    assert "shredded" in proc.stdout and str(outbox / "speech_en.txt") in proc.stdout
    assert not list((tmp_path / ".hushdrop" / "tmp").iterdir()), "temporary audio left behind"


@pytest.fixture(scope="module")
def formats_dir(tmp_path_factory) -> Path:
    """The first 9 s of the clip in every container people drop, made by real ffmpeg."""
    d = tmp_path_factory.mktemp("formats")
    src = ["-t", "9", "-i", str(SPEECH_EN)]
    ffmpeg(*src, "-c:a", "libmp3lame", "-b:a", "64k", str(d / "voice memo.mp3"))
    ffmpeg(*src, "-c:a", "flac", str(d / "lecture.flac"))
    ffmpeg(*src, "-c:a", "aac", "-b:a", "64k", str(d / "phone.m4a"))
    ffmpeg(*src, "-c:a", "libopus", "-b:a", "32k", str(d / "whatsapp.ogg"))
    ffmpeg(*src, "-c:a", "libopus", "-b:a", "32k", str(d / "browser.webm"))
    video = ["-f", "lavfi", "-t", "9", "-i", "color=c=gray:s=64x48:r=5"]
    ffmpeg(*video, *src, "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(d / "zoom.mp4"))
    ffmpeg(*video, *src, "-c:v", "mpeg4", "-c:a", "libvorbis", "-shortest", str(d / "screen.mkv"))
    ffmpeg(*video, *src, "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(d / "iphone.mov"))
    ffmpeg(*src, "-ar", "44100", "-ac", "2", str(d / "ünïcødé name – 会议 #1.wav"))
    return d


def test_every_container_is_decoded(tmp_path, formats_dir):
    config = make_config(tmp_path, originals="keep")
    files = sorted(formats_dir.iterdir())
    before = {f.name: f.read_bytes() for f in files}
    proc = hushdrop(config, "run", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    outbox = tmp_path / "outbox" / "default"
    for f in files:
        record = json.loads((outbox / f"{f.stem}.json").read_text())
        assert len(words(record["text"])) >= 15 and prefix_wer(record["text"]) <= 0.25, (f.name, record["text"])
        assert record["audio"]["duration_s"] == pytest.approx(9.0, abs=0.2)
    assert {f.name: f.read_bytes() for f in files} == before, "keep means keep, byte for byte"


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.wav").write_bytes(b"")
    (d / "random.wav").write_bytes(np.random.default_rng(0).bytes(200_000))
    ffmpeg("-i", str(SPEECH_EN), "-c:a", "libmp3lame", "-b:a", "64k", str(d / "whole.mp3"))
    data = (d / "whole.mp3").read_bytes()
    (d / "truncated.mp3").write_bytes(data[: len(data) // 3])
    (d / "whole.mp3").unlink()
    ffmpeg("-f", "lavfi", "-t", "3", "-i", "color=c=blue:s=64x48:r=5", "-c:v", "mpeg4", str(d / "no audio.mp4"))
    write_wav(d / "silence.wav", np.zeros(48000 * 30, dtype=np.float32), 48000)
    (d / "notes.wav").write_text("meeting notes, not a recording\n")
    return d


def test_bad_inputs_have_clear_outcomes_and_lose_nothing(tmp_path, bad_dir):
    config = make_config(tmp_path)  # shred: only what succeeded may disappear
    work = tmp_path / "in"
    shutil.copytree(bad_dir, work)
    before = {f.name: f.read_bytes() for f in work.iterdir()}
    proc = hushdrop(config, "run", "--originals", "profile", *sorted(map(str, work.iterdir())))
    assert proc.returncode == 1
    err = proc.stderr
    assert "empty.wav" in err and "empty (0 bytes)" in err
    assert "random.wav" in err and "not a recording ffmpeg can read" in err
    assert "notes.wav" in err and "not a recording ffmpeg can read" in err
    assert "no audio.mp4" in err and "video with no audio track" in err
    assert "4 of 6 file(s) failed" in err
    for failed in ("empty.wav", "random.wav", "notes.wav", "no audio.mp4"):
        assert (work / failed).read_bytes() == before[failed], f"{failed} must be left exactly as it was"
    outbox = tmp_path / "outbox" / "default"
    silence = json.loads((outbox / "silence.json").read_text())
    assert silence["no_speech"] is True and silence["text"] == "" and silence["segments"] == []
    assert (outbox / "silence.txt").read_text() == "(no speech detected)\n"
    truncated = json.loads((outbox / "truncated.json").read_text())
    assert 8 < truncated["audio"]["decoded_s"] < 13  # the readable third is transcribed…
    assert any("truncated" in note for note in truncated["notes"])  # …and the file is called truncated
    assert len(words(truncated["text"])) >= 15 and prefix_wer(truncated["text"]) <= 0.25
    assert not (work / "silence.wav").exists() and not (work / "truncated.mp3").exists()


def test_symlink_given_to_run_is_refused_and_target_untouched(tmp_path):
    config = make_config(tmp_path)
    target = tmp_path / "real.wav"
    shutil.copy(SPEECH_EN, target)
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    proc = hushdrop(config, "run", str(link))
    assert proc.returncode == 1 and "symbolic link" in proc.stderr
    assert target.read_bytes() == SPEECH_EN.read_bytes() and link.is_symlink()


def test_no_network_connection_is_attempted(tmp_path):
    config = make_config(tmp_path)
    original = tmp_path / "clip.wav"
    shutil.copy(SPEECH_EN, original)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    proc = hushdrop_offline(config, "run", str(original), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "NETWORK_ATTEMPTS 0" in proc.stderr


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-n", "true"]).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs permission to create a network namespace (root)")
def test_runs_in_a_namespace_without_network(tmp_path):
    config = make_config(tmp_path)
    original = tmp_path / "clip.wav"
    shutil.copy(SPEECH_EN, original)
    proc = hushdrop(config, "run", str(original), prefix=("unshare", "-n"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "outbox" / "default" / "clip.txt").exists()
