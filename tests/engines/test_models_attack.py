"""`hushdrop models pull` and the loading of a pulled model, attacked: a hub that lies or hangs, a
model folder changed after the pull, a broken lock file, two pulls at once, an interrupted pull, a
cache that cannot be written. The real CLI against the local hub (tests/modelhub.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.engines.test_models_pull import NAME, REPO_ID, base_files, hub, pull_env, pulled_folders, write_config  # noqa: F401
from tests.harness import REPO, hushdrop
from tests.helpers import SPEECH_EN
from tests.modelhub import LocalHub


def pulled(hub: LocalHub, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """Pull the test model; its config, its folder and the environment it was pulled with."""
    config = write_config(tmp_path)
    env = pull_env(hub, tmp_path)
    proc = hushdrop(config, "models", "pull", NAME, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (folder,) = pulled_folders(tmp_path)
    return config, folder, env


def run_clip(config: Path, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    original = tmp_path / "clip.wav"
    shutil.copy(SPEECH_EN, original)
    return hushdrop(config, "run", str(original), env={k: v for k, v in env.items() if k != "HF_ENDPOINT"})


def start_pull(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`hushdrop models pull` in the background, its output going to ``log`` (read while it runs).

    A shell without job control starts background commands with SIGINT ignored, and a child keeps
    an ignored signal across exec; the pull must hear Ctrl-C as it would at a terminal. A handled
    signal is reset to its default across exec, so the suite handles SIGINT while it starts the pull
    (no preexec_fn: the local hub's server thread makes that unsafe)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open(log, "wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(config), "models", "pull", NAME],
                stdout=out, stderr=subprocess.STDOUT, env={**env, "COLUMNS": "200"}, cwd=REPO,
            )
    finally:
        signal.signal(signal.SIGINT, previous)


def poll(condition, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- a hub that lies --------------------------------------------------------------------------------


@pytest.mark.parametrize("sha", ["../../../victim", "main", None])
def test_a_commit_that_is_not_forty_hex_digits_is_refused_before_anything_is_written(hub, tmp_path, sha):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    hub.state_commit(REPO_ID, sha)
    config = write_config(tmp_path)
    proc = hushdrop(config, "models", "pull", NAME, env=pull_env(hub, tmp_path), timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not a commit" in proc.stdout and "Traceback" not in proc.stderr
    assert (victim / "keep.txt").read_text() == "mine" and sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert hub.requests_for(REPO_ID, "model.bin") == []
    assert pulled_folders(tmp_path) == []
    assert not (tmp_path / "models.lock").exists()


def test_a_file_the_hub_lists_but_will_not_serve_leaves_nothing(hub, tmp_path):
    hub.list_only(REPO_ID, "vocabulary.json")
    config = write_config(tmp_path)
    proc = hushdrop(config, "models", "pull", NAME, env=pull_env(hub, tmp_path), timeout=120)
    assert proc.returncode == 1
    assert "vocabulary.json" in proc.stdout and "refused" in proc.stdout
    assert pulled_folders(tmp_path) == []


def test_a_file_named_like_the_manifest_cannot_spoil_the_pull(base_files, tmp_path):
    """A repository may hold a file of the manifest's name (here matched by the model's own `*.json`);
    the pull skips it rather than make a model that every load refuses."""
    impostor = tmp_path / "impostor.json"
    impostor.write_text(json.dumps({"name": NAME, "files": {}}))
    with LocalHub({REPO_ID: {**base_files, "hushdrop-model.json": impostor}}) as own:
        config = write_config(tmp_path)
        document = yaml.safe_load(config.read_text())
        document["models"][NAME]["files"] = ["*.json", "model.bin", "vocabulary.*"]
        config.write_text(yaml.safe_dump(document))
        env = pull_env(own, tmp_path)
        proc = hushdrop(config, "models", "pull", NAME, env=env, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert own.requests_for(REPO_ID, "hushdrop-model.json") == []
    assert "hushdrop-model.json" not in json.loads((tmp_path / "models.lock").read_text())["models"][NAME]["files"]
    run = run_clip(config, env, tmp_path)
    assert run.returncode == 0, run.stderr


def test_a_download_that_stalls_mid_file_does_not_hang_the_pull(hub, tmp_path):
    hub.stall_after(REPO_ID, "model.bin", 1 << 20)
    config = write_config(tmp_path)
    started = time.monotonic()
    proc = hushdrop(config, "models", "pull", NAME, env=pull_env(hub, tmp_path), timeout=180)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert took < 90, f"took {took:.0f} s"
    assert len(hub.requests_for(REPO_ID, "model.bin")) >= 2  # the stalled GET was given up and retried
    (folder,) = pulled_folders(tmp_path)
    assert (folder / "model.bin").stat().st_size == hub.stated(REPO_ID, "model.bin").size


# -- a model folder changed after the pull -----------------------------------------------------------


def test_bytes_changed_in_place_with_the_old_modification_time_are_caught(hub, tmp_path):
    config, folder, env = pulled(hub, tmp_path)
    model_bin = folder / "model.bin"
    before = model_bin.stat()
    with open(model_bin, "r+b") as f:
        f.seek(before.st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(model_bin, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime: only ctime tells
    proc = run_clip(config, env, tmp_path)
    assert proc.returncode != 0 and "altered or is corrupt" in proc.stderr


def test_a_file_replaced_by_a_symlink_is_refused(hub, tmp_path):
    config, folder, env = pulled(hub, tmp_path)
    elsewhere = tmp_path / "elsewhere.json"
    shutil.copy2(folder / "config.json", elsewhere)
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(elsewhere)
    proc = run_clip(config, env, tmp_path)
    assert proc.returncode != 0 and "config.json" in proc.stderr and "symbolic link" in proc.stderr


def test_a_file_added_after_the_pull_is_refused(hub, tmp_path):
    config, folder, env = pulled(hub, tmp_path)
    # faster-whisper reads this if present: it would change the model's input features
    (folder / "preprocessor_config.json").write_text(json.dumps({"feature_size": 128}))
    proc = run_clip(config, env, tmp_path)
    assert proc.returncode != 0 and "preprocessor_config.json" in proc.stderr and "was not pulled" in proc.stderr


def test_a_model_copied_into_a_read_only_cache_still_loads(hub, tmp_path):
    """The copy-it-in route: the files keep their bytes but not their times, so loading hashes them;
    a cache it cannot write to must not stop a verified model from loading."""
    config, folder, env = pulled(hub, tmp_path)
    copied = tmp_path / "other" / "models" / "pulled" / folder.name
    shutil.copytree(folder, copied)
    for path in copied.iterdir():
        os.utime(path)  # copied without its times (cp, scp): the stamps no longer match
    manifest = copied / "hushdrop-model.json"
    manifest.chmod(0o444)
    copied.chmod(0o555)
    try:
        # root may write anywhere: make the manifest's rewrite fail as on a read-only mount
        (copied / ".hushdrop-model.json.tmp").mkdir()
        env = {**env, "HUSHDROP_CACHE": str(tmp_path / "other")}
        proc = run_clip(config, env, tmp_path)
        assert proc.returncode == 0, proc.stderr
    finally:
        copied.chmod(0o755)


# -- a broken lock file --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    ["not a table", {"repository": REPO_ID, "revision": "0" * 40, "files": "model.bin"}, {"repository": REPO_ID, "revision": 7, "files": {}}],
)
def test_a_malformed_lock_entry_is_a_message_not_a_traceback(hub, tmp_path, entry):
    config, folder, env = pulled(hub, tmp_path)
    (tmp_path / "models.lock").write_text(json.dumps({"version": 1, "models": {NAME: entry}}))
    check = hushdrop(config, "config", "check", env=env)
    assert check.returncode == 1 and "Traceback" not in check.stderr, check.stderr
    assert "models.lock" in check.stdout and NAME in check.stdout
    pull = hushdrop(config, "models", "pull", NAME, env=env)
    assert pull.returncode == 1 and "Traceback" not in pull.stderr, pull.stderr
    assert "models.lock" in pull.stdout


def test_a_lock_pinning_a_revision_the_hub_lacks_says_how_to_pin_anew(hub, tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "models.lock").write_text(json.dumps({"version": 1, "models": {NAME: {
        "engine": "whisper", "repository": REPO_ID, "revision": "e" * 40, "files": {}}}}))
    env = pull_env(hub, tmp_path)
    proc = hushdrop(config, "models", "pull", NAME, env=env)
    assert proc.returncode == 1
    text = " ".join(proc.stdout.split())
    assert "models.lock" in text and "--revision main" in text
    again = hushdrop(config, "models", "pull", NAME, "--revision", "main", env=env)
    assert again.returncode == 0, again.stdout
    assert json.loads((tmp_path / "models.lock").read_text())["models"][NAME]["revision"] == hub.commit(REPO_ID)


# -- two pulls, an interrupted pull, a cache that cannot be written ------------------------------------


def test_two_pulls_of_one_model_at_once_both_end_with_the_one_verified_model(hub, tmp_path):
    config = write_config(tmp_path)
    env = pull_env(hub, tmp_path)
    hub.stall_after(REPO_ID, "model.bin", 1 << 20)
    first = start_pull(config, env, tmp_path / "first.log")
    poll(lambda: hub.requests_for(REPO_ID, "model.bin"), what="the first pull's GET of model.bin")
    second = start_pull(config, env, tmp_path / "second.log")
    poll(lambda: "another pull" in (tmp_path / "second.log").read_text() or second.poll() is not None, what="the second pull")
    hub.release()
    assert first.wait(timeout=180) == 0, (tmp_path / "first.log").read_text()
    assert second.wait(timeout=180) == 0, (tmp_path / "second.log").read_text()
    assert [p.name for p in pulled_folders(tmp_path)] == [f"{NAME}@{hub.commit(REPO_ID)}"]
    run = run_clip(config, env, tmp_path)
    assert run.returncode == 0, run.stderr


def test_an_interrupted_pull_says_so_and_a_rerun_completes_without_leftovers(hub, tmp_path):
    config = write_config(tmp_path)
    env = pull_env(hub, tmp_path)
    hub.stall_after(REPO_ID, "model.bin", 1 << 20)
    log = tmp_path / "pull.log"
    proc = start_pull(config, env, log)
    poll(lambda: hub.requests_for(REPO_ID, "model.bin"), what="the GET of model.bin")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130, log.read_text()
    assert "interrupted" in log.read_text() and "Traceback" not in log.read_text()
    hub.release()
    assert pulled_folders(tmp_path) == [] or all(p.name.startswith(".") for p in pulled_folders(tmp_path))
    again = hushdrop(config, "models", "pull", NAME, env=env, timeout=180)
    assert again.returncode == 0, again.stdout
    root = tmp_path / "cache" / "models" / "pulled"
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [f"{NAME}@{hub.commit(REPO_ID)}"]


def test_a_cache_that_cannot_be_made_is_an_environment_message(hub, tmp_path):
    config = write_config(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**pull_env(hub, tmp_path), "HUSHDROP_CACHE": str(blocker / "cache")}
    proc = hushdrop(config, "models", "pull", NAME, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(blocker) in proc.stdout and "HUSHDROP_CACHE" in proc.stdout


def test_a_half_finished_pull_is_not_a_model(tmp_path):
    config = write_config(tmp_path, model="small")
    staging = tmp_path / "cache" / "models" / "pulled" / f".partial-small@{'a' * 40}"
    staging.mkdir(parents=True)
    (staging / "model.bin").write_bytes(b"half a model")
    env = {**os.environ, "HUSHDROP_CACHE": str(tmp_path / "cache")}
    check = hushdrop(config, "config", "check", env=env)
    assert check.returncode == 1 and "model small is not pulled: run `hushdrop models pull small`" in check.stdout


# -- loading never reaches for the network ---------------------------------------------------------------


def test_a_whisper_folder_without_its_tokenizer_is_refused_before_loading(base_files, tmp_path):
    """faster-whisper fetches a tokenizer from the internet when a model folder has none: a path
    model must hold one, and a pull of a repository without it is refused."""
    folder = tmp_path / "my-model"
    folder.mkdir()
    for name in ("model.bin", "config.json", "vocabulary.txt"):
        shutil.copy(base_files[name], folder / name)
    config = write_config(tmp_path, model=str(folder))
    env = {**os.environ, "HUSHDROP_CACHE": str(tmp_path / "cache")}
    proc = run_clip(config, env, tmp_path)
    assert proc.returncode != 0 and "tokenizer.json" in proc.stderr

    files = {name: base_files[name] for name in ("model.bin", "config.json", "vocabulary.txt")}
    with LocalHub({REPO_ID: files}) as bare:
        config = write_config(tmp_path)
        pull = hushdrop(config, "models", "pull", NAME, env=pull_env(bare, tmp_path))
    assert pull.returncode == 1 and "lacks tokenizer.json" in pull.stdout


def test_a_manifest_edited_to_match_tampered_bytes_is_caught_by_the_lock(hub, tmp_path):
    config, folder, env = pulled(hub, tmp_path)
    config_json = folder / "config.json"
    config_json.write_text(config_json.read_text().replace("{", '{"tampered": true, ', 1))
    manifest_path = folder / "hushdrop-model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["config.json"]["sha256"] = hashlib.sha256(config_json.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    proc = run_clip(config, env, tmp_path)
    assert proc.returncode != 0 and "differs from" in proc.stderr and "config.json" in proc.stderr


def test_a_lock_naming_another_repository_is_pinned_anew_and_says_so(hub, tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "models.lock").write_text(json.dumps({"version": 1, "models": {NAME: {
        "engine": "whisper", "repository": "elsewhere/other-model", "revision": "e" * 40, "files": {}}}}))
    proc = hushdrop(config, "models", "pull", NAME, env=pull_env(hub, tmp_path))
    assert proc.returncode == 0, proc.stdout
    assert "elsewhere/other-model" in " ".join(proc.stdout.split())
    assert json.loads((tmp_path / "models.lock").read_text())["models"][NAME]["repository"] == REPO_ID


def test_pulls_of_different_models_at_once_keep_every_pin(tmp_path):
    """Each pull rewrites models.lock whole at its end: two at once must not drop each other's entry."""
    lock = tmp_path / "models.lock"
    go = tmp_path / "go"
    writer = (
        "import sys, time\nfrom pathlib import Path\nfrom hushdrop.pipeline.engines.hub import write_lock_entry\n"
        "while not Path(sys.argv[3]).exists():\n    time.sleep(0.001)\n"  # all start together
        "for i in range(40):\n"
        "    write_lock_entry(Path(sys.argv[1]), f'{sys.argv[2]}-{i}', "
        "{'repository': 'o/r', 'revision': 'a' * 40, 'files': {}})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(lock), who, str(go)], cwd=REPO) for who in ("one", "two", "three")]
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    names = set(json.loads(lock.read_text())["models"])
    assert names == {f"{who}-{i}" for who in ("one", "two", "three") for i in range(40)}
