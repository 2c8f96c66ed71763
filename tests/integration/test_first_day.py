"""What a new user meets on the first day: the CLI and `watch` with an ffmpeg that cannot run the chain."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import fake_ffmpeg
from tests.harness import REPO, cheap_wav, hushdrop, make_config


def test_watch_refuses_to_start_with_an_ffmpeg_that_lacks_an_option(watch_run, tmp_path):
    fake = fake_ffmpeg(
        tmp_path,
        'case "$*" in *framelog*) echo "[Parsed_ebur128_0 @ 0x55] Option \'framelog\' not found" >&2; exit 1;; esac\n'
        'exec "$REAL" "$@"',
    )
    run = watch_run(ffmpeg=fake)
    run.inbox.mkdir(parents=True)
    (run.inbox / "talk.wav").write_bytes(cheap_wav(1))
    run.start(wait_ready=False)
    assert run.proc.wait(60) == 2
    log = run.log_text()
    assert "framelog" in log and "ffmpeg: bundled" in log and "not starting" in log
    assert (run.inbox / "talk.wav").read_bytes() == cheap_wav(1), "nothing is taken, nothing is quarantined"
    assert not (run.workdir / "quarantine").exists() or not any((run.workdir / "quarantine").rglob("*.wav"))


def test_once_exits_non_zero_when_it_quarantined_something(watch_run):
    run = watch_run()
    run.drop("fine.wav", cheap_wav(2))
    run.drop("broken.wav", b"RIFF" + b"\x00" * 10)
    run.start("--once", wait_ready=False)
    assert run.proc.wait(120) == 1, run.log_text()
    assert sorted(j["state"] for j in run.jobs()) == ["done", "quarantined"]


def test_config_goes_before_or_after_the_command_and_version_is_known(tmp_path):
    config = make_config(tmp_path)
    after = subprocess.run(
        [sys.executable, "-m", "hushdrop.pipeline.cli", "status", "--config", str(config), "--json"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert after.returncode == 3 and "no ledger yet" in json.loads(after.stdout)["note"]
    check = hushdrop(config, "config", "check")
    assert check.returncode == 0 and str(config) in check.stdout
    wide = [line for line in check.stdout.splitlines() if "profile default" in line]
    assert wide and "originals shred" in wide[0], "a piped `config check` keeps each profile on one line"
    version = subprocess.run([sys.executable, "-m", "hushdrop.pipeline.cli", "--version"], capture_output=True, text=True, cwd=REPO)
    assert version.returncode == 0 and version.stdout.startswith("hushdrop ")


def test_run_help_says_what_happens_to_the_files(tmp_path):
    config = make_config(tmp_path)
    text = hushdrop(config, "run", "--help").stdout
    assert "KEPT unless" in text and "--shred" in text and "--delete" in text and "profiles in" in text


def test_run_keeps_the_files_it_was_given_and_refuses_to_shred_a_hard_link(tmp_path):
    import os
    import shutil

    from tests.helpers import SPEECH_EN

    config = make_config(tmp_path)  # the profile says shred: that is for the watcher's inbox
    mine = tmp_path / "somewhere" / "x.wav"
    mine.parent.mkdir()
    shutil.copy(SPEECH_EN, mine)
    kept = hushdrop(config, "run", str(mine))
    assert kept.returncode == 0, kept.stderr
    assert mine.read_bytes() == SPEECH_EN.read_bytes() and "kept" in kept.stdout
    other = tmp_path / "other-name.wav"
    os.link(mine, other)
    refused = hushdrop(config, "run", "--shred", str(mine))
    assert refused.returncode == 1 and "hard links" in refused.stderr and "nothing was done" in refused.stderr
    assert mine.read_bytes() == SPEECH_EN.read_bytes() == other.read_bytes()
