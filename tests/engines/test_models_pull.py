"""`hushdrop models pull` against a local model hub (tests/modelhub.py): the real CLI, the real
huggingface_hub, real files; then the pulled model transcribes, and every way a download can go
wrong leaves nothing a loader would take."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
import yaml

from hushdrop.pipeline.models import bundled_whisper_base
from tests.harness import hushdrop, hushdrop_offline
from tests.helpers import SPEECH_EN, SPEECH_EN_TEXT, wer
from tests.modelhub import HubFile, LocalHub

REPO_ID = "test-org/whisper-base-test"
NAME = "base-test"  # the config's own catalogue entry for it


@pytest.fixture(scope="module")
def base_files() -> dict[str, Path]:
    folder = bundled_whisper_base()
    return {name: folder / name for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")}


@pytest.fixture
def hub(base_files):
    with LocalHub({REPO_ID: base_files}) as running:
        yield running


def write_config(root: Path, model: str = NAME, **extra) -> Path:
    config = root / "config.yaml"
    document = {
        "models": {NAME: {"engine": "whisper", "repository": REPO_ID}},
        "profiles": {"default": {"originals": "keep", "chain": ["resample", {"transcribe": {"model": model}}]}},
        **extra,
    }
    config.write_text(yaml.safe_dump(document))
    return config


def pull_env(hub: LocalHub, root: Path) -> dict[str, str]:
    return {**hub.environ(root / "hf-home"), "HUSHDROP_CACHE": str(root / "cache")}


def pulled_folders(root: Path) -> list[Path]:
    folder = root / "cache" / "models" / "pulled"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_pull_then_transcribe_with_the_pulled_model(hub, tmp_path):
    config = write_config(tmp_path)
    env = pull_env(hub, tmp_path)
    started = time.monotonic()
    proc = hushdrop(config, "models", "pull", NAME, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commit = hub.commit(REPO_ID)
    (folder,) = pulled_folders(tmp_path)
    assert folder.name == f"{NAME}@{commit}"
    assert (folder / "model.bin").read_bytes() == bundled_whisper_base().joinpath("model.bin").read_bytes()
    lock = json.loads((tmp_path / "models.lock").read_text())["models"][NAME]
    assert lock["repository"] == REPO_ID and lock["revision"] == commit
    assert lock["files"]["model.bin"] == hub.stated(REPO_ID, "model.bin").sha256
    assert set(lock["files"]) == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    print(f"pull took {time.monotonic() - started:.1f} s")

    # a second pull finds it and downloads nothing
    gets = len(hub.requests_for(REPO_ID, "model.bin"))
    again = hushdrop(config, "models", "pull", NAME, env=env)
    assert again.returncode == 0 and "already pulled" in again.stdout
    assert len(hub.requests_for(REPO_ID, "model.bin")) == gets

    original = tmp_path / "clip.wav"
    shutil.copy(SPEECH_EN, original)
    offline = {k: v for k, v in env.items() if k != "HF_ENDPOINT"}
    run = hushdrop(config, "run", str(original), env=offline)
    assert run.returncode == 0, run.stderr
    record = json.loads((tmp_path / "outbox" / "default" / "clip.json").read_text())
    assert record["engine"]["model_path"] == str(folder)
    assert record["engine"]["model_sha256"] == lock["files"]["model.bin"]
    assert wer(SPEECH_EN_TEXT, record["text"]) <= 0.15

    listing = hushdrop(config, "models", env=offline)
    assert f"{NAME}: {folder}" in listing.stdout


def test_a_download_cut_off_halfway_resumes_and_verifies(hub, tmp_path):
    config = write_config(tmp_path)
    size = hub.stated(REPO_ID, "model.bin").size
    hub.cut_after(REPO_ID, "model.bin", size // 2)
    proc = hushdrop(config, "models", "pull", NAME, env=pull_env(hub, tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resum" in (proc.stdout + proc.stderr).lower()  # huggingface_hub's own resume, or hushdrop's
    gets = hub.requests_for(REPO_ID, "model.bin")
    assert len(gets) == 2 and gets[0].range is None
    assert gets[1].range is not None and gets[1].range.startswith("bytes=") and gets[1].range != "bytes=0-"
    (folder,) = pulled_folders(tmp_path)
    assert (folder / "model.bin").stat().st_size == size
    assert json.loads((tmp_path / "models.lock").read_text())["models"][NAME]["files"]["model.bin"] == hub.stated(REPO_ID, "model.bin").sha256


def test_bytes_that_differ_from_the_hubs_hash_are_refused(hub, tmp_path):
    config = write_config(tmp_path)
    hub.tamper(REPO_ID, "model.bin")
    proc = hushdrop(config, "models", "pull", NAME, env=pull_env(hub, tmp_path))
    assert proc.returncode == 1
    assert "model.bin" in proc.stdout and "altered" in proc.stdout and "nothing was installed" in proc.stdout
    assert pulled_folders(tmp_path) == []  # no model, and no staging folder left to resume from
    assert not (tmp_path / "models.lock").exists()
    check = hushdrop(config, "config", "check", env=pull_env(hub, tmp_path))
    assert check.returncode == 1 and f"run `hushdrop models pull {NAME}`" in check.stdout


def test_bytes_that_differ_from_the_lock_file_are_refused(hub, tmp_path):
    config = write_config(tmp_path)
    commit = hub.commit(REPO_ID)
    # models.lock from "another machine" pins other bytes for this very revision
    (tmp_path / "models.lock").write_text(json.dumps({"version": 1, "models": {NAME: {
        "engine": "whisper", "repository": REPO_ID, "revision": commit,
        "files": {"model.bin": "0" * 64, "config.json": "1" * 64, "tokenizer.json": "2" * 64, "vocabulary.txt": "3" * 64},
    }}}))
    proc = hushdrop(config, "models", "pull", NAME, env=pull_env(hub, tmp_path))
    assert proc.returncode == 1
    assert "pins" in proc.stdout and "nothing was installed" in proc.stdout
    assert pulled_folders(tmp_path) == []


def test_loading_checks_the_lock_and_the_bytes(hub, tmp_path):
    config = write_config(tmp_path)
    env = pull_env(hub, tmp_path)
    assert hushdrop(config, "models", "pull", NAME, env=env).returncode == 0
    (folder,) = pulled_folders(tmp_path)
    original = tmp_path / "clip.wav"
    shutil.copy(SPEECH_EN, original)

    lock_path = tmp_path / "models.lock"
    good_lock = lock_path.read_text()
    lock = json.loads(good_lock)
    lock["models"][NAME]["files"]["config.json"] = "f" * 64
    lock_path.write_text(json.dumps(lock))
    refused = hushdrop(config, "run", str(original), env=env)
    assert refused.returncode != 0 and "differs from" in refused.stderr and "config.json" in refused.stderr

    lock_path.write_text(good_lock)
    model_bin = folder / "model.bin"
    with open(model_bin, "r+b") as f:  # one byte changed, same size: the stamp no longer matches
        f.seek(model_bin.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    refused = hushdrop(config, "run", str(original), env=env)
    assert refused.returncode != 0 and "altered or is corrupt" in refused.stderr
    assert not (tmp_path / "outbox" / "default" / "clip.txt").exists()
    assert original.exists()


def test_not_enough_free_space_is_refused_before_downloading(base_files, tmp_path):
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate(shutil.disk_usage(tmp_path).free + 10**9)  # sparse: takes no space itself
    files = {**base_files, "model.bin": HubFile(huge, sha256="a" * 64)}
    with LocalHub({REPO_ID: files}) as hub:
        config = write_config(tmp_path)
        proc = hushdrop(config, "models", "pull", NAME, env=pull_env(hub, tmp_path))
        assert proc.returncode == 1
        assert "not enough free space" in proc.stdout and "nothing was downloaded" in proc.stdout
        assert hub.requests_for(REPO_ID, "model.bin") == []
    assert pulled_folders(tmp_path) == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


def test_an_unreachable_hub_fails_fast_with_how_to_copy_a_model_in(tmp_path):
    config = write_config(tmp_path)
    with LocalHub({}) as hub:
        env = pull_env(hub, tmp_path)
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    proc = hushdrop(config, "models", "pull", "small", env=env, timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 1
    assert took < 10, f"took {took:.1f} s"
    text = " ".join(proc.stdout.split())
    assert "cannot reach the model hub" in text and "copy its folder" in text and "model.bin" in text
    assert pulled_folders(tmp_path) == []


def test_watch_refuses_to_start_with_a_model_not_pulled_and_makes_no_connection(tmp_path):
    config = write_config(tmp_path, model="small")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HUSHDROP_CACHE=str(tmp_path / "cache"), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    proc = hushdrop_offline(config, "watch", "--once", env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "model small is not pulled: run `hushdrop models pull small`" in proc.stderr
    assert "NETWORK_ATTEMPTS 0" in proc.stderr
    check = hushdrop(config, "config", "check", env=env)
    assert check.returncode == 1 and "hushdrop models pull small" in check.stdout
    doctor = hushdrop(config, "doctor", env=env)
    assert doctor.returncode == 1 and "✗ profile models: profile default: model small is not pulled" in doctor.stdout


def test_a_bundled_or_unknown_name_is_refused_without_the_network(tmp_path):
    config = write_config(tmp_path)
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HUSHDROP_CACHE": str(tmp_path / "cache")}
    bundled = hushdrop(config, "models", "pull", "base", env=env)
    assert bundled.returncode == 1 and "bundled" in bundled.stdout
    unknown = hushdrop(config, "models", "pull", "large-v9", env=env)
    assert unknown.returncode == 2 and "unknown model" in unknown.stdout and "large-v3-turbo" in unknown.stdout
