"""Quarantine's bound (pipeline.watch.quarantine): the recordings set aside longest ago are shredded
first, by size and by age, with a log line each and a ledger row that says the original is gone;
nothing that is not a quarantined recording with one name is ever removed, followed or changed.
Its size shows in `hushdrop status`; "left in the inbox" lists only what is still there."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from rich.console import Console

from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.watch import status as statusview
from hushdrop.pipeline.watch.finish import quarantine_job
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State
from hushdrop.pipeline.watch.protocol import Fault
from hushdrop.pipeline.watch.quarantine import Usage, prune, usage
from hushdrop.pipeline.retention import Action, Disposal
from hushdrop.pipeline.watch.scheduler import bound_quarantine
from hushdrop.pipeline.watch.watcher import Watcher
from tests.harness import sha
from tests.unprivileged import give_to_user, run_unprivileged
from tests.watch.conftest import claimed, make

DAY = 86400.0


def set_aside(settings, ledger: Ledger, name: str, size: int, days_ago: float, seed: int) -> JobRow:
    """A real recording of ``size`` bytes claimed by the real intake and quarantined, ``days_ago``."""
    row = claimed(settings, ledger, name, seed, data=os.urandom(size))
    row = quarantine_job(settings, ledger, row, "open", "not a recording", Fault.RECORDING)
    when = time.time() - days_ago * DAY
    ledger.update(row.id, finished_at=when)
    return ledger.get(row.id)


def note_of(row: JobRow) -> Path:
    return Path(f"{row.quarantine_path}.error.txt")


def test_over_the_size_limit_the_oldest_go_first_with_a_log_line_and_a_ledger_note(tmp_path, caplog):
    settings = make(tmp_path, quarantine_max_gb=0.000025, quarantine_max_days=None)  # 25 kB
    ledger = Ledger(settings.ledger_path)
    oldest = set_aside(settings, ledger, "oldest.wav", 10_000, 3, seed=1)
    middle = set_aside(settings, ledger, "middle.wav", 10_000, 2, seed=2)
    newest = set_aside(settings, ledger, "newest.wav", 10_000, 1, seed=3)
    kept = {row.id: row.quarantine_path.read_bytes() for row in (middle, newest)}
    before = usage(settings)
    assert before.files == 3 and before.bytes > 30_000
    with caplog.at_level(logging.INFO, logger="hushdrop"):
        removed = prune(settings, ledger)
    assert [r.name for r in removed] == ["oldest.wav"] and removed[0].reason == "size"
    assert not os.path.lexists(oldest.quarantine_path) and not os.path.lexists(note_of(oldest))
    assert {row.id: row.quarantine_path.read_bytes() for row in (middle, newest)} == kept  # untouched
    assert note_of(middle).exists() and note_of(newest).exists()
    gone = ledger.get(oldest.id)
    assert gone.state == State.QUARANTINED and gone.quarantine_path is None  # rows are never deleted
    disposal = Disposal.from_column(gone.retention)
    assert disposal.action == Action.SHREDDED and disposal.target == oldest.quarantine_path
    assert disposal.note.startswith("removed from quarantine on ") and "quarantine_max_gb" in disposal.note
    assert ledger.get(middle.id).quarantine_path == middle.quarantine_path
    [line] = [r for r in caplog.records if "removed the oldest" in r.getMessage()]
    day = time.strftime("%Y-%m-%d", time.localtime(oldest.finished_at))
    assert line.getMessage().startswith("quarantine over 2.5e-05 GB") and f"oldest.wav (10.0 KB), set aside on {day}" in line.getMessage()
    assert line.job == oldest.id
    after = usage(settings)
    assert after.files == 2 and after.bytes <= 25_000
    assert not [p for p in (settings.quarantine / "default").iterdir() if p.name.startswith(".")]  # nothing half-shredded
    assert prune(settings, ledger) == []  # within the limit now: nothing more goes
    ledger.close()


def test_past_the_age_limit_every_old_recording_goes_and_the_fresh_one_stays(tmp_path, caplog):
    settings = make(tmp_path, quarantine_max_days=30)
    ledger = Ledger(settings.ledger_path)
    ancient = set_aside(settings, ledger, "ancient.wav", 2000, 400, seed=1)
    old = set_aside(settings, ledger, "old.wav", 2000, 31, seed=2)
    fresh = set_aside(settings, ledger, "fresh.wav", 2000, 29, seed=3)
    with caplog.at_level(logging.INFO, logger="hushdrop"):
        assert bound_quarantine(settings, ledger) == 2  # the scheduler's job
    assert not os.path.lexists(ancient.quarantine_path) and not os.path.lexists(old.quarantine_path)
    assert fresh.quarantine_path.exists() and note_of(fresh).exists()
    assert "quarantine_max_days" in ledger.get(old.id).retention
    messages = [r.getMessage() for r in caplog.records if "removed the oldest" in r.getMessage()]
    assert [m.split(", ")[1] for m in messages] == ["ancient.wav (2.0 KB)", "old.wav (2.0 KB)"]  # oldest first
    assert all(m.startswith("quarantine keeps recordings 30 days") for m in messages)
    ledger.close()


def test_a_file_without_a_ledger_row_and_a_note_without_a_recording_are_aged_by_the_disk(tmp_path):
    settings = make(tmp_path, quarantine_max_days=1)
    folder = settings.quarantine / "old-profile"
    folder.mkdir(parents=True)
    stray = folder / "from-before.wav"
    stray.write_bytes(b"x" * 100)
    lone_note = folder / "retried.wav.error.txt"
    lone_note.write_text("hushdrop could not transcribe retried.wav")
    old = time.time() - 3 * DAY
    os.utime(lone_note, (old, old))
    ledger = Ledger(settings.ledger_path)
    removed = prune(settings, ledger, now=time.time() + 2 * DAY)  # the stray file's own change time is now
    assert sorted(r.name for r in removed) == ["from-before.wav", "retried.wav.error.txt"]
    assert list(folder.iterdir()) == []
    ledger.close()


def _prune_a_read_only_recording(root: str) -> tuple[list[str], bool, list[str]]:
    settings = make(Path(root), quarantine_max_days=1)
    ledger = Ledger(settings.ledger_path)
    row = set_aside(settings, ledger, "readonly.wav", 500, 2, seed=1)
    os.chmod(row.quarantine_path, 0o400)  # the mode it was dropped with, kept by the move
    removed = [r.name for r in prune(settings, ledger)]
    ledger.close()
    return removed, os.path.lexists(row.quarantine_path), os.listdir(row.quarantine_path.parent)


def test_a_read_only_recording_is_still_shredded(shared_tree):
    """As an ordinary user (root may write any file): quarantine makes its own read-only file writable first."""
    give_to_user(shared_tree)
    removed, still_there, left = run_unprivileged(_prune_a_read_only_recording, str(shared_tree))
    assert removed == ["readonly.wav"] and not still_there and left == []


def test_pruning_never_touches_a_link_a_hard_link_a_fifo_or_anything_outside_quarantine(tmp_path):
    settings = make(tmp_path, quarantine_max_gb=1e-9, quarantine_max_days=1e-6)  # everything is over both limits
    ledger = Ledger(settings.ledger_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    precious = {outside / n: os.urandom(3000) for n in ("a.wav", "b.wav", "c.wav", "a.wav.error.txt", "d.wav")}
    for path, data in precious.items():
        path.write_bytes(data)
    folder = settings.quarantine / "default"
    folder.mkdir(parents=True)
    (folder / "link.wav").symlink_to(outside / "a.wav")
    (folder / "link.wav.error.txt").symlink_to(outside / "a.wav.error.txt")
    os.link(outside / "b.wav", folder / "hardlinked.wav")
    os.mkfifo(folder / "pipe.wav")
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.wav").write_bytes(b"in a folder")
    (settings.quarantine / "linked-profile").symlink_to(outside)  # a profile folder that is a link
    # a quarantined recording swapped for a link to a file outside, after the ledger recorded it
    row = set_aside(settings, ledger, "swapped.wav", 100, 5, seed=1)
    row.quarantine_path.unlink()
    row.quarantine_path.symlink_to(outside / "c.wav")
    real = set_aside(settings, ledger, "real.wav", 100, 5, seed=2)
    os.utime(folder / "pipe.wav", (0, 0))

    removed = prune(settings, ledger, now=time.time() + 10 * DAY)
    assert [r.name for r in removed] == ["real.wav"]  # the only recording that is hushdrop's to remove
    assert not os.path.lexists(real.quarantine_path)
    assert {path: path.read_bytes() for path in precious} == precious
    assert os.readlink(folder / "link.wav") == str(outside / "a.wav") and os.path.islink(row.quarantine_path)
    assert os.path.islink(folder / "link.wav.error.txt") and os.path.islink(settings.quarantine / "linked-profile")
    assert (folder / "hardlinked.wav").read_bytes() == precious[outside / "b.wav"]
    assert os.path.exists(folder / "pipe.wav") and (folder / "sub" / "inner.wav").read_bytes() == b"in a folder"
    assert ledger.get(row.id).quarantine_path == row.quarantine_path  # not claimed as removed
    held = usage(settings)  # links, FIFOs and folders are not counted; the hard-linked file is a regular file here
    assert held == Usage(bytes=3000 + len(note_of(row).read_bytes()), files=1)
    ledger.close()


def test_no_limits_means_nothing_is_removed(tmp_path):
    settings = make(tmp_path, quarantine_max_gb=None, quarantine_max_days=None)
    ledger = Ledger(settings.ledger_path)
    row = set_aside(settings, ledger, "kept.wav", 1000, 10_000, seed=1)
    assert prune(settings, ledger) == [] and row.quarantine_path.exists()
    ledger.close()


@pytest.mark.parametrize("key, value", [("quarantine_max_gb", 0), ("quarantine_max_gb", -1), ("quarantine_max_days", 0),
                                        ("quarantine_max_days", "forever")])
def test_the_limits_must_be_positive_numbers_or_null(tmp_path, key, value):
    with pytest.raises(ConfigError) as err:
        parse_config({"profiles": {"default": {}}, key: value}, tmp_path / "config.yaml")
    assert key in str(err.value)


def test_the_defaults_bound_quarantine_to_10_gb_and_90_days(tmp_path):
    settings = parse_config({"profiles": {"default": {}}}, tmp_path / "config.yaml")
    assert (settings.quarantine_max_gb, settings.quarantine_max_days) == (10.0, 90.0)


# -- hushdrop status ----------------------------------------------------------------------------


def rendered(status: dict) -> str:
    console = Console(record=True, width=200, color_system=None)
    statusview.render(status, console)
    return console.export_text()


def test_status_shows_what_quarantine_holds_and_its_limits(tmp_path):
    settings = make(tmp_path)
    ledger = Ledger(settings.ledger_path)
    first = set_aside(settings, ledger, "one.wav", 1_500_000, 1, seed=1)
    set_aside(settings, ledger, "two.wav", 500_000, 1, seed=2)
    ledger.close()
    found = statusview.collect(settings)
    notes = sum(len(note_of(r).read_bytes()) for r in [first]) * 2
    assert found["quarantine"]["files"] == 2
    assert 2_000_000 <= found["quarantine"]["bytes"] <= 2_000_000 + notes + 200
    text = rendered(found)
    assert "quarantine: 2 recording(s), 2.0 MB (limits: 10 GB, 90 days)" in text


def test_status_no_longer_lists_files_and_folders_that_are_gone(tmp_path):
    """The watcher writes what it left in the inbox into the ledger at each heartbeat; `status`
    reads that snapshot, which outlives files taken away since (and the watcher, once stopped)."""
    settings = parse_config({"profiles": {"default": {"settle_seconds": 0}, "linked": {"folder": "linked"}}},
                            tmp_path / "config.yaml")
    settings.inbox.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (settings.inbox / "linked").symlink_to(outside)  # refused: a linked profile folder
    (settings.inbox / "a folder.wav").mkdir()  # refused: a folder
    link = settings.inbox / "link.wav"
    link.symlink_to(outside / "x.wav")  # refused: a link
    watcher = Watcher(settings, lambda *a: "taken")
    watcher.rescan()
    ledger = Ledger(settings.ledger_path)
    ledger.facts.set(intake_problems=watcher.problems(), heartbeat_at=time.time() - 3600, stopped_at=time.time() - 3600)
    ledger.close()
    before = {p["path"] for p in statusview.collect(settings)["intake_problems"]}
    assert before == {str(settings.inbox / "linked"), str(settings.inbox / "a folder.wav"), str(link)}
    (settings.inbox / "linked").unlink()
    (settings.inbox / "a folder.wav").rmdir()
    after = statusview.collect(settings)
    assert [p["path"] for p in after["intake_problems"]] == [str(link)]
    text = rendered(after)
    assert "link.wav" in text and "a folder.wav" not in text and "linked:" not in text


def test_the_checksums_of_kept_recordings_do_not_change(tmp_path):
    """Shredding works through the removed file's own descriptor: the others' bytes stay."""
    settings = make(tmp_path, quarantine_max_gb=0.000015, quarantine_max_days=None)
    ledger = Ledger(settings.ledger_path)
    rows = [set_aside(settings, ledger, f"r{i}.wav", 5000, 10 - i, seed=i) for i in range(4)]
    sums = {row.id: sha(row.quarantine_path.read_bytes()) for row in rows}
    removed = prune(settings, ledger)
    assert [r.name for r in removed] == ["r0.wav", "r1.wav"]
    assert {row.id: sha(row.quarantine_path.read_bytes()) for row in rows[2:]} == {r.id: sums[r.id] for r in rows[2:]}
    ledger.close()


def test_status_never_promises_a_retry_for_a_recording_that_quarantine_no_longer_holds(tmp_path):
    settings = make(tmp_path, quarantine_max_gb=0.000005, quarantine_max_days=None)  # 5 kB
    ledger = Ledger(settings.ledger_path)
    pruned = set_aside(settings, ledger, "pruned.wav", 10_000, 2, seed=4)
    assert [r.name for r in prune(settings, ledger)] == ["pruned.wav"]
    assert ledger.get(pruned.id).quarantine_path is None
    ledger.close()
    text = rendered(statusview.collect(settings))
    line = next(line for line in text.splitlines() if "pruned.wav" in line)
    assert "will retry" not in line and "set aside" in line, line
