"""The inbox as a security boundary (issue: "shred nothing it was not given, stall on nothing").

Each test names the numbered finding it covers. They run on real files, a real ledger
and, where permissions matter, as an unprivileged user (tests/unprivileged.py).
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from pathlib import Path

import pytest

from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.audio.containers import declared_size, is_incomplete
from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.watch.dispatch import MAX_CHANGES_AFTER_CLAIM, SpoolWatch, prepare_for_run
from hushdrop.pipeline.watch.finish import fail_job
from hushdrop.pipeline.watch.intake import ClaimRefused, InboxBlocked, InboxUnsafe, claim, classify, inbox_link_problem
from hushdrop.pipeline.watch.ledger import Ledger, LedgerCorrupt, State
from hushdrop.pipeline.watch.protocol import Fault
from hushdrop.pipeline.names import NAME_MAX, display_name, safe_name, safe_stem
from hushdrop.pipeline.watch.recovery import remove_strays
from hushdrop.pipeline.watch.watcher import BLOCKED, REFUSED, TAKEN, Watcher
from tests.harness import cheap_wav, wait_for
from tests.unprivileged import give_to_user, run_unprivileged


def make(root: Path, **top):
    raw = {"profiles": {"default": {"settle_seconds": 0}, "meetings": {"folder": "meetings"}}, **top}
    settings = parse_config(raw, root / "config.yaml")
    (settings.inbox / "meetings").mkdir(parents=True, exist_ok=True)
    return settings


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _claimed(settings, ledger, name: str, seed: int):
    """A small real recording dropped into the default profile's folder and claimed."""
    path = settings.inbox / name
    path.write_bytes(cheap_wav(seed))
    return claim(settings, ledger, path, settings.profiles["default"], os.lstat(path))


# 1. a hard link in the inbox to a file elsewhere


def test_1_a_hard_linked_file_is_never_claimed(tmp_path):
    settings = make(tmp_path)
    elsewhere = tmp_path / "elsewhere.wav"
    elsewhere.write_bytes(cheap_wav(1))
    before = digest(elsewhere)
    linked = settings.inbox / "a.wav"
    os.link(elsewhere, linked)
    verdict = classify(settings, linked)
    assert not verdict.take and "hard links" in verdict.reason
    ledger = Ledger(settings.ledger_path)
    try:
        with pytest.raises(ClaimRefused, match="hard links"):
            claim(settings, ledger, linked, settings.profiles["default"], os.lstat(linked))
        assert list(ledger.all()) == []
    finally:
        ledger.close()
    assert digest(elsewhere) == before and os.stat(elsewhere).st_nlink == 2


# 2. a profile folder that is a symbolic link


def test_2_a_symlinked_profile_folder_is_never_taken_from(tmp_path):
    settings = make(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    song = outside / "song.wav"
    song.write_bytes(cheap_wav(2))
    (settings.inbox / "meetings").rmdir()
    (settings.inbox / "meetings").symlink_to(outside)
    ledger = Ledger(settings.ledger_path)
    try:
        with pytest.raises(InboxUnsafe, match="symbolic link"):
            claim(settings, ledger, settings.inbox / "meetings" / "song.wav", settings.profiles["meetings"], os.lstat(song))
    finally:
        ledger.close()
    seen = []
    watcher = Watcher(settings, lambda path, profile, st: seen.append(path) or TAKEN, once=True)
    watcher.rescan()
    assert watcher.pending() == 0 and seen == []
    assert "symbolic link" in watcher.problems()[0]["reason"]
    assert song.read_bytes() == cheap_wav(2)


def test_2_an_inbox_reached_through_a_link_is_refused_unless_named_by_its_real_path(tmp_path):
    real = tmp_path / "real-inbox"
    real.mkdir()
    (tmp_path / "inbox").symlink_to(real)
    settings = parse_config({"profiles": {"default": {}}}, tmp_path / "config.yaml")
    assert "symbolic link" in inbox_link_problem(settings) and str(real) in inbox_link_problem(settings)
    named = parse_config({"inbox": str(real), "profiles": {"default": {}}}, tmp_path / "config.yaml")
    assert inbox_link_problem(named) is None


# 4. / 11. / 17. folders that overlap, and a profile folder "."


@pytest.mark.parametrize(
    "top, profile, expected",
    [
        ({"inbox": "box", "outbox": "box"}, {}, "inbox .* and outbox .* overlap"),
        ({"outbox": "inbox/out"}, {}, "inbox .* and outbox .* overlap"),
        ({"workdir": "inbox/.work"}, {}, "inbox .* and workdir .* overlap"),
        ({}, {"originals": {"move": "inbox"}}, "inbox .* and profiles.default.originals.move .* overlap"),
        ({}, {"originals": {"move": "outbox/archive"}}, "outbox .* and profiles.default.originals.move .* overlap"),
        ({}, {"folder": "."}, "must name a subfolder"),
    ],
)
def test_4_11_17_overlapping_folders_are_rejected(tmp_path, top, profile, expected):
    profiles = {"default": {}, "x": profile} if "folder" in profile else {"default": profile}
    with pytest.raises(ConfigError, match=expected):
        parse_config({**top, "profiles": profiles}, tmp_path / "config.yaml")


def test_4_recovery_removes_only_hushdrops_own_temp_files(tmp_path):
    settings = make(tmp_path)
    folder = settings.outbox / "default"
    folder.mkdir(parents=True)
    theirs = [folder / ".rec.wav.partial", folder / ".x.tmp", folder / "talk.partial"]
    for path in theirs:
        path.write_bytes(b"another program's file")
    ours = [folder / ".hushdrop-0123abcd.tmp", folder / ".hushdrop-0123abcd.partial"]
    for path in ours:
        path.write_bytes(b"ours")
    ledger = Ledger(settings.ledger_path)
    try:
        remove_strays(settings, ledger)
    finally:
        ledger.close()
    assert all(p.read_bytes() == b"another program's file" for p in theirs)
    assert not any(p.exists() for p in ours)


# 6. a file shorter than its header declares


def _wav_header(data_bytes: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes)


def test_6_declared_sizes_of_wav_aiff_and_mp4(tmp_path):
    partial = tmp_path / "slow.wav"
    partial.write_bytes(_wav_header(11_000) + b"\0" * 1000)
    complete = tmp_path / "done.wav"
    complete.write_bytes(cheap_wav(3))
    mp4_partial = tmp_path / "phone.m4a"
    mp4_partial.write_bytes(struct.pack(">I", 24) + b"ftypM4A " + b"\0" * 12 + struct.pack(">I", 5000) + b"mdat" + b"\0" * 100)
    for path, incomplete in ((partial, True), (complete, False), (mp4_partial, True)):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert is_incomplete(fd) is incomplete, path.name
        finally:
            os.close(fd)
    fd = os.open(partial, os.O_RDONLY)
    try:
        assert declared_size(fd) == 44 + 11_000
    finally:
        os.close(fd)


def test_6_the_settle_check_waits_for_a_file_its_header_says_is_incomplete(tmp_path):
    settings = make(tmp_path)
    settings.profiles["default"].incomplete_grace_seconds = 3.0
    path = settings.inbox / "slow.wav"
    path.write_bytes(_wav_header(11_000) + b"\0" * 1000)
    taken = []
    watcher = Watcher(settings, lambda p, profile, st: taken.append(time.monotonic()) or TAKEN)
    started = time.monotonic()
    watcher.rescan()
    while time.monotonic() - started < 1.0:  # settle ticks well past settle_seconds, inside the grace
        watcher._settle_once()
        assert taken == [], "taken while its header still declares 10 KB more"
        time.sleep(0.05)
    wait_for(lambda: watcher._settle_once() or taken, 10, "the grace period to end")
    assert taken[0] - started >= 3.0


# 7. / 8. names that are not UTF-8, or 255 bytes long


def test_7_a_name_that_is_not_utf8_is_stored_losslessly(tmp_path):
    settings = make(tmp_path)
    name = os.fsdecode(b"\xe9t\xe9 \x01.wav")
    path = settings.inbox / name
    path.write_bytes(cheap_wav(4))
    ledger = Ledger(settings.ledger_path)
    try:
        row = claim(settings, ledger, path, settings.profiles["default"], os.lstat(path))
        again = ledger.get(row.id)
        assert os.fsencode(again.name) == b"\xe9t\xe9 \x01.wav"
        assert again.spool_path.read_bytes() == cheap_wav(4)
    finally:
        ledger.close()
    assert display_name(name) == "\\xe9t\\xe9 \x01.wav"
    stem = safe_stem(name)
    stem.encode("utf-8")  # a name hushdrop makes is always valid UTF-8
    assert "\x01" not in stem and "~" in stem


@pytest.mark.parametrize("name", ["a" * 251 + ".wav", "日本語" * 27 + ".mp3", os.fsdecode(b"\xff" * 250 + b".wav")])
def test_8_names_made_from_a_long_name_fit_with_every_suffix(name):
    assert len(os.fsencode(name)) <= NAME_MAX
    for made in (safe_stem(name) + " (99999).json", safe_name(name) + ".error.txt", safe_stem(name) + " (2).srt"):
        assert len(made.encode("utf-8")) <= NAME_MAX, made
    assert safe_stem(name) != safe_stem(name[:-5] + "x.wav")  # long names sharing a beginning stay apart


# 9. / 12. an unreadable file, a read-only inbox


def _claim_as_user(inbox_root: str, name: str):
    settings = make(Path(inbox_root))
    path = settings.inbox / name
    ledger = Ledger(settings.ledger_path)
    try:
        try:
            claim(settings, ledger, path, settings.profiles["default"], os.lstat(path))
            outcome = "claimed"
        except (ClaimRefused, InboxBlocked) as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        return outcome, [(r.state, r.name) for r in ledger.all()]
    finally:
        ledger.close()


def test_9_an_unreadable_file_is_left_in_the_inbox_without_a_ledger_row(shared_tree):
    make(shared_tree)
    path = shared_tree / "inbox" / "locked.wav"
    path.write_bytes(cheap_wav(5))
    give_to_user(shared_tree)
    os.chmod(path, 0o000)
    outcome, rows = run_unprivileged(_claim_as_user, str(shared_tree), "locked.wav")
    assert outcome.startswith("ClaimRefused: cannot read it") and "chmod" in outcome
    assert rows == [] and path.exists()
    os.chmod(path, 0o644)
    assert path.read_bytes() == cheap_wav(5)


def test_12_a_read_only_inbox_blocks_intake_without_a_ledger_row(shared_tree):
    make(shared_tree)
    path = shared_tree / "inbox" / "talk.wav"
    path.write_bytes(cheap_wav(6))
    give_to_user(shared_tree)
    os.chmod(shared_tree / "inbox", 0o555)
    try:
        outcome, rows = run_unprivileged(_claim_as_user, str(shared_tree), "talk.wav")
    finally:
        os.chmod(shared_tree / "inbox", 0o755)
    assert outcome.startswith("InboxBlocked") and "not writable" in outcome
    assert rows == [] and path.read_bytes() == cheap_wav(6)


def test_9_12_the_watcher_asks_again_only_after_a_change_and_backs_off_when_blocked(tmp_path):
    settings = make(tmp_path)
    refused = settings.inbox / "locked.wav"
    refused.write_bytes(cheap_wav(7))
    calls: list[Path] = []
    watcher = Watcher(settings, lambda p, profile, st: calls.append(p) or REFUSED, once=True)
    for _ in range(5):
        watcher.rescan()
        watcher._settle_once()
    assert calls == [refused], "a refused file must not be retried every tick"
    time.sleep(0.01)
    os.chmod(refused, 0o640)  # ctime changes: worth another look
    watcher.rescan()
    watcher._settle_once()
    assert calls == [refused, refused]

    asked_at: list[float] = []  # when each claim was tried, and the pause it announced
    announced: list[float] = []

    def blocked_claim(path, profile, st):
        asked_at.append(time.monotonic())
        blocked.block(profile, "read-only")
        announced.append(blocked._block_delay[profile.name])
        return BLOCKED

    blocked = Watcher(settings, blocked_claim, once=True)

    def asked(times: int) -> bool:
        blocked.rescan()
        blocked._settle_once()
        return len(asked_at) >= times

    wait_for(lambda: asked(3), 30, "three claim attempts")
    assert announced == [1.0, 2.0, 4.0], "the pause doubles with each blocked attempt"
    assert asked_at[1] - asked_at[0] >= announced[0] and asked_at[2] - asked_at[1] >= announced[1], (
        "the folder is not asked again before its pause is over"
    )
    assert "intake paused" in blocked.problems()[0]["reason"]


# 13. a corrupt ledger


@pytest.mark.parametrize("damage", ["header", "page"])
def test_13_a_damaged_ledger_is_reported_with_the_way_out(tmp_path, damage):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    for i in range(300):
        ledger.add(profile="default", name=f"{i}.wav" * 20, inbox_path=tmp_path / "x", spool_path=tmp_path / "y", size=1, mtime_ns=0)
    ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()
    with open(path, "r+b") as f:
        if damage == "header":
            f.write(b"this is not sqlite")
        else:
            f.seek(4096 * 3)
            f.write(os.urandom(4096))
    with pytest.raises(LedgerCorrupt, match="doctor --rebuild-ledger"):
        Ledger(path)


# 14. the spool deleted under a queued job


def test_14_a_claimed_job_whose_original_vanished_is_abandoned_not_held_forever(tmp_path):
    settings = make(tmp_path)
    ledger = Ledger(settings.ledger_path)
    try:
        row = _claimed(settings, ledger, "talk.wav", seed=8)
        assert oct(os.stat(settings.spool_dir / "default").st_mode & 0o777) == "0o700"
        row.spool_path.unlink()
        spool = SpoolWatch()
        for _ in range(3):
            spool.hold.clear()  # skip the 10 s wait between checks
            assert prepare_for_run(settings, ledger, ledger.get(row.id), spool) is False
        assert ledger.get(row.id).state == State.ABANDONED
        assert "removed from the spool" in ledger.get(row.id).error
    finally:
        ledger.close()


# 16. environment faults wait; only the recording's own faults quarantine


def _processing(settings, ledger, name="talk.wav"):
    return ledger.start(_claimed(settings, ledger, name, seed=9).id, "worker-1:1")


def test_16_an_environment_fault_is_retried_without_using_attempts_then_set_aside_with_a_fair_note(tmp_path):
    settings = make(tmp_path, max_attempts=1, environment_retry_hours=0.001)
    ledger = Ledger(settings.ledger_path)
    try:
        row = _processing(settings, ledger)
        row = fail_job(settings, ledger, row, "decode", "No space left on device", Fault.ENVIRONMENT)
        assert row.state == State.FAILED and row.attempts == 0 and row.env_failures == 1
        ledger.transition(row.id, State.CLAIMED, expect=State.FAILED)
        row = ledger.start(row.id, "worker-1:1")
        ledger.update(row.id, env_since=time.time() - 10)  # longer ago than environment_retry_hours
        row = fail_job(settings, ledger, ledger.get(row.id), "decode", "No space left on device", Fault.ENVIRONMENT)
        assert row.state == State.QUARANTINED
        note = Path(f"{row.quarantine_path}.error.txt").read_text()
        assert "recording itself is probably fine" in note and "No space left" in note
    finally:
        ledger.close()


def test_16_a_recording_fault_quarantines_at_once_and_a_transient_one_is_bounded(tmp_path):
    settings = make(tmp_path, max_attempts=2)
    ledger = Ledger(settings.ledger_path)
    try:
        bad = fail_job(settings, ledger, _processing(settings, ledger, "a.wav"), "decode", "not audio", Fault.RECORDING)
        assert bad.state == State.QUARANTINED and "Trying again will not help" in Path(f"{bad.quarantine_path}.error.txt").read_text()
        row = _processing(settings, ledger, "b.wav")
        states = []
        for _ in range(5):
            row = fail_job(settings, ledger, row, "worker", "crashed", Fault.TRANSIENT)
            states.append(row.state)
            if row.state == State.QUARANTINED:
                break
            ledger.transition(row.id, State.CLAIMED, expect=State.FAILED)
            row = ledger.start(row.id, "worker-1:1")
        assert states == [State.FAILED, State.QUARANTINED]
    finally:
        ledger.close()


def test_a_job_interrupted_by_every_restart_is_set_aside(tmp_path):
    from hushdrop.pipeline.watch.finish import MAX_INTERRUPTIONS
    from hushdrop.pipeline.watch.recovery import recover

    settings = make(tmp_path)
    ledger = Ledger(settings.ledger_path)
    try:
        row = _processing(settings, ledger)
        for _ in range(MAX_INTERRUPTIONS):
            recover(settings, ledger)
            row = ledger.get(row.id)
            if row.state != State.CLAIMED:
                break
            row = ledger.start(row.id, "worker-1:1")
        assert row.state == State.QUARANTINED and "stopped or crashed" in row.error
        assert row.state != State.PROCESSING
    finally:
        ledger.close()


def test_6_a_file_shorter_than_its_header_is_always_called_truncated(tmp_path, processor_session):
    body = cheap_wav(10, seconds=0.35)[44:]  # 11 KB of samples declared …
    path = tmp_path / "cut.wav"
    path.write_bytes(_wav_header(len(body)) + body[:1000])  # … 1 KB present
    job = processor_session.run_chain(path, processor_session.settings.profiles["default"])
    assert any("truncated" in w and f"1044 of {44 + len(body)} bytes" in w for w in job.warnings), job.notes


# found by an attacker's review after the first round


def test_a_folder_above_the_inbox_swapped_for_a_link_while_running_is_refused(tmp_path):
    box = tmp_path / "box"
    (box / "inbox").mkdir(parents=True)
    settings = parse_config({"inbox": str(box / "inbox"), "profiles": {"default": {}}}, tmp_path / "config.yaml")
    victim_tree = tmp_path / "victimtree" / "inbox"
    victim_tree.mkdir(parents=True)
    precious = victim_tree / "precious.wav"
    precious.write_bytes(cheap_wav(60))
    box.rename(tmp_path / "box.real")
    box.symlink_to(tmp_path / "victimtree")  # the configured inbox path now leads elsewhere
    ledger = Ledger(settings.ledger_path)
    try:
        with pytest.raises(InboxUnsafe, match="symbolic link"):
            claim(settings, ledger, settings.inbox / "precious.wav", settings.profiles["default"], os.lstat(precious))
        assert list(ledger.all()) == []
    finally:
        ledger.close()
    assert precious.read_bytes() == cheap_wav(60)


def test_a_move_target_that_is_a_link_to_the_inbox_is_rejected(tmp_path):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "archlink").symlink_to(tmp_path / "inbox")
    with pytest.raises(ConfigError, match="inbox .* and profiles.default.originals.move .* overlap"):
        parse_config({"profiles": {"default": {"originals": {"move": "archlink"}}}}, tmp_path / "config.yaml")


def test_recovery_survives_an_original_that_cannot_be_retired(tmp_path):
    from hushdrop.pipeline.watch.recovery import recover

    settings = make(tmp_path)
    ledger = Ledger(settings.ledger_path)
    try:
        row = _processing(settings, ledger)
        ledger.transition(row.id, State.COMMITTED, expect=State.PROCESSING, outputs=[])
        spool = row.spool_path
        os.link(spool, spool.with_name("second-name"))  # shredding it now would be refused
        recover(settings, ledger)  # must not raise: the outputs are safe, the original waits
        assert ledger.get(row.id).state == State.COMMITTED and spool.exists()
    finally:
        ledger.close()


def test_only_hushdrops_own_probe_markers_are_removed(tmp_path):
    from hushdrop.pipeline.watch.watcher import PROBE_TEXT, remove_probe_markers

    (tmp_path / ".hushdrop-probe-dir").mkdir()
    (tmp_path / ".hushdrop-probe-theirs").write_bytes(b"someone's notes")
    ours = tmp_path / ".hushdrop-probe-0123abcd"
    ours.write_bytes(PROBE_TEXT)
    assert remove_probe_markers(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hushdrop-probe-dir", ".hushdrop-probe-theirs"]


def test_cleanup_never_reaches_through_a_linked_outbox_folder(tmp_path):
    settings = make(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    theirs = outside / ".hushdrop-notes.tmp"
    theirs.write_text("not hushdrop's")
    settings.outbox.mkdir(parents=True)
    (settings.outbox / "default").symlink_to(outside)
    ledger = Ledger(settings.ledger_path)
    try:
        remove_strays(settings, ledger)
    finally:
        ledger.close()
    assert theirs.read_text() == "not hushdrop's"


def test_a_claimed_file_that_keeps_changing_is_set_aside_not_held_forever(tmp_path):
    settings = make(tmp_path)
    ledger = Ledger(settings.ledger_path)
    try:
        row = _claimed(settings, ledger, "growing.wav", seed=61)
        spool = SpoolWatch()
        for i in range(MAX_CHANGES_AFTER_CLAIM + 1):
            with open(row.spool_path, "ab") as writer:  # the writer still has it open
                writer.write(b"\0" * 32)
            spool.hold.clear()
            assert prepare_for_run(settings, ledger, ledger.get(row.id), spool) is False
        final = ledger.get(row.id)
        assert final.state == State.QUARANTINED and "kept changing" in final.error
    finally:
        ledger.close()


def test_opened_folder_makes_folders_only_from_create_from_down_and_never_through_a_link(tmp_path):
    from hushdrop.pipeline.fsutil import FolderUnsafe, opened_folder

    inbox = tmp_path / "site" / "inbox"
    with pytest.raises(FileNotFoundError):  # "site" is above create_from: it is not made
        with opened_folder(inbox / "team" / "notes", create_from=inbox):
            pass
    assert not (tmp_path / "site").exists()
    (tmp_path / "site").mkdir()
    with opened_folder(inbox / "team" / "notes", create_from=inbox) as fd:
        os.close(os.open("made-here", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
    assert (inbox / "team" / "notes" / "made-here").is_file()
    outside = tmp_path / "outside"
    outside.mkdir()
    (inbox / "linked").symlink_to(outside)
    with pytest.raises(FolderUnsafe) as refused:
        with opened_folder(inbox / "linked" / "sub", create_from=inbox):
            pass
    assert refused.value.filename == str(inbox / "linked") and list(outside.iterdir()) == []
