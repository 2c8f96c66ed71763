"""What a restart does (pipeline.watch.recovery), in process, on a real ledger and real files."""

from __future__ import annotations

import os
from pathlib import Path

from hushdrop.pipeline.watch.ledger import State
from hushdrop.pipeline.watch.recovery import recover, remove_strays, remove_temp_audio
from tests.harness import cheap_wav
from tests.watch.conftest import claimed, committed, processing


def test_recovery_brings_every_unfinished_state_to_a_consistent_one(settings, ledger):
    waiting = claimed(settings, ledger, "waiting.wav", seed=1)
    running = processing(settings, ledger, "running.wav", seed=2)
    stopped = committed(settings, ledger, "committed.wav", seed=3)
    counts = recover(settings, ledger)
    assert ledger.get(waiting.id).state == State.CLAIMED  # nothing to do: it runs when workers start
    assert ledger.get(running.id).state == State.CLAIMED and ledger.get(running.id).interruptions == 1
    assert ledger.get(stopped.id).state == State.DONE and not stopped.spool_path.exists()
    assert counts["rerun"] == 1 and counts["retired"] == 1
    assert recover(settings, ledger)["retired"] == 0  # a second run finds nothing more to do


def test_recovery_finishes_a_quarantine_whose_move_was_interrupted(settings, ledger):
    row = processing(settings, ledger, "bad.wav")
    target = settings.quarantine / "default" / "bad.wav"
    ledger.transition(row.id, State.QUARANTINED, quarantine_path=target, error_stage="open", error="not audio", outputs=[])
    recover(settings, ledger)
    assert target.read_bytes() == cheap_wav(1) and not row.spool_path.exists()
    assert "not audio" in Path(f"{target}.error.txt").read_text()


def test_strays_are_only_hushdrops_own(settings, ledger):
    out = settings.outbox / "default"
    out.mkdir(parents=True)
    (out / ".hushdrop-1.tmp").write_text("ours")
    (out / "their.tmp").write_text("theirs")
    (out / ".hushdrop-2.partial").write_text("ours")
    temp = settings.tmp_root / "job-1"
    temp.mkdir(parents=True)
    (temp / "audio.f32").write_bytes(b"0")
    active = claimed(settings, ledger)
    empty_job_dir = settings.spool_dir / "default" / "finished-job"
    empty_job_dir.mkdir(parents=True)
    (empty_job_dir / ".hushdrop-3.partial").write_text("interrupted copy")
    assert remove_strays(settings, ledger) == 4
    assert sorted(p.name for p in out.iterdir()) == ["their.tmp"]
    assert list(settings.tmp_root.iterdir()) == [] and not empty_job_dir.exists()
    assert active.spool_path.exists()


def test_remove_temp_audio_empties_only_the_temp_root(settings):
    (settings.tmp_root / "job-1").mkdir(parents=True)
    (settings.tmp_root / "stray.f32").write_bytes(b"0")
    outside = settings.tmp_root.parent / "keep.txt"
    outside.write_text("not temp audio")
    os.symlink(outside, settings.tmp_root / "link")
    assert remove_temp_audio(settings) == 3
    assert list(settings.tmp_root.iterdir()) == [] and outside.read_text() == "not temp audio"


def test_a_remote_job_whose_commit_was_cut_short_is_settled_instead_of_committed_again_beside_its_remains(settings, ledger):
    from tests.watch.conftest import cut_short

    def remote(name: str, seed: int):
        return ledger.start(claimed(settings, ledger, name, seed).id, f"celery:hushdrop-{seed}-task")

    whole, cut, waiting = remote("whole.wav", 1), remote("cut.wav", 2), remote("waiting.wav", 3)
    whole_paths = cut_short(settings, ledger, whole, linked=5)
    cut_paths = cut_short(settings, ledger, cut, linked=1)  # sent, answered, killed while linking
    recover(settings, ledger, keep_remote=True)  # ``waiting``: sent, no result yet, nothing planned
    assert ledger.get(whole.id).state == State.DONE and all(p.exists() for p in whole_paths)
    after = ledger.get(cut.id)
    assert after.state == State.PROCESSING and after.worker == cut.worker and after.outputs == []
    assert not any(p.exists() for p in cut_paths)  # the result's commit takes "cut.*" again, not "cut (2).*"
    assert ledger.get(waiting.id).state == State.PROCESSING and ledger.get(waiting.id).worker == waiting.worker
