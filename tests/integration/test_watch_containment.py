"""The inbox as a security boundary, end to end: a real `hushdrop watch` process on real files.

Each test names the numbered finding of the containment issue it covers; the property
test at the end throws random names, links, permissions and kill -9 points at the
service and checks that no file outside the inbox ever changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import sqlite3
import time
from pathlib import Path

import pytest

from tests.harness import cheap_wav, hushdrop, wait_for
from tests.unprivileged import is_root


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_1_2_hard_links_and_a_symlinked_profile_folder_leave_outside_files_untouched(watch_run, tmp_path):
    run = watch_run(rescan_seconds=0.5, profiles={"meetings-zh": {"folder": "meetings-zh"}})
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    linked_target = outside / "a.wav"
    linked_target.write_bytes(cheap_wav(11))
    song = outside / "song.wav"
    song.write_bytes(cheap_wav(12))
    before = {p.name: digest(p) for p in outside.iterdir()}
    run.inbox.mkdir(parents=True)
    os.link(linked_target, run.inbox / "a.wav")
    (run.inbox / "meetings-zh").symlink_to(outside)
    run.start()
    run.drop("sentinel.wav", cheap_wav(13))
    wait_for(lambda: run.done_names() == ["sentinel.wav"], 60, "the sentinel")
    time.sleep(2)  # several rescans
    assert [j["name"] for j in run.jobs()] == ["sentinel.wav"]
    assert {p.name: digest(p) for p in outside.iterdir()} == before
    assert os.stat(linked_target).st_nlink == 2
    log = run.log_text()
    assert "hard links" in log and "meetings-zh is a symbolic link" in log
    status = json.loads(hushdrop(run.config_path, "status", "--json").stdout)
    reasons = {p["path"]: p["reason"] for p in status["intake_problems"]}
    assert "hard links" in reasons[str(run.inbox / "a.wav")]
    assert "symbolic link" in reasons[str(run.inbox / "meetings-zh")]
    assert run.stop() == 0


def test_7_8_odd_names_are_transcribed_named_safely_and_never_stall_the_queue(watch_run):
    run = watch_run()
    run.inbox.mkdir(parents=True)
    odd = os.fsdecode(b"\xe9t\xe9 r\xe9union.wav")
    long = "x" * 251 + ".wav"
    (run.inbox / odd).write_bytes(cheap_wav(21))
    (run.inbox / long).write_bytes(cheap_wav(22))
    run.start()
    run.drop("after.wav", cheap_wav(23))
    wait_for(lambda: len(run.done_names()) == 3, 90, "all three files")
    assert sorted(run.done_names()) == sorted([odd, long, "after.wav"])
    outputs = [p.name for p in run.outputs()]
    for name in outputs:
        name.encode("utf-8")  # every output name is valid UTF-8 …
        assert len(name.encode()) <= 255  # … and fits
    records = [json.loads(p.read_text()) for p in run.outputs() if p.suffix == ".json"]
    by_bytes = {bytes.fromhex(r["source"]["name_bytes_hex"]) for r in records if "name_bytes_hex" in r["source"]}
    assert by_bytes == {os.fsencode(odd)}, "the exact original name is kept in the JSON"
    assert long in {r["source"]["name"] for r in records}
    assert "Traceback" not in run.log_text()
    assert run.stop() == 0


def _wav_header(data_bytes: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes)


def test_a_profile_folder_renamed_away_and_back_in_a_loop_does_not_stall_intake(watch_run, tmp_path):
    # Someone who can write to the inbox churns a profile folder until inotify loses its events
    # (queue overflow, a watch dropped mid-rename); the rescan is an hour away, so only noticing
    # the lost events gets the next recording taken.
    run = watch_run(rescan_seconds=3600, profiles={"meetings": {"folder": "meetings"}})
    run.start()
    folder, away = run.inbox / "meetings", tmp_path / "away"
    renames, ends = 0, time.monotonic() + 15
    while time.monotonic() < ends and renames < 40000:
        os.rename(folder, away)
        os.rename(away, folder)
        renames += 1
    run.drop("after-the-churn.wav", cheap_wav(31))
    wait_for(lambda: any(j["name"] == "after-the-churn.wav" and j["state"] == "done" for j in run.jobs()), 60,
             "the recording dropped after the churn to be transcribed")


def test_6_a_slow_writer_is_not_taken_before_the_header_is_satisfied(watch_run):
    run = watch_run(profile={"settle_seconds": 1, "incomplete_grace_seconds": 60}).start()
    body = cheap_wav(31)[44:]
    path = run.inbox / "slow.wav"
    with open(path, "wb") as f:
        f.write(_wav_header(len(body)) + body[:1000])
        f.flush()
        time.sleep(4)  # far longer than the settle period
        assert run.jobs() == [], "taken while its header declared more bytes than it had"
        f.write(body[1000:])
    wait_for(lambda: run.done_names() == ["slow.wav"], 60, "the completed file")
    record = json.loads((run.outbox / "default" / "slow.json").read_text())
    assert not any("truncated" in note for note in record["notes"])
    assert run.stop() == 0


def test_10_a_worker_that_cannot_start_stops_watch_after_bounded_backoff(watch_run):
    run = watch_run(worker_memory_limit_mb=64, worker_start_attempts=3)
    started = time.monotonic()
    run.start(wait_ready=False)
    code = run.proc.wait(120)
    log = run.log_text()
    assert code == 1, log
    assert "worker cannot start" in log and "worker_memory_limit_mb is 64" in log
    assert log.count("could not start") == 2 and "trying again in 1 s" in log and "trying again in 2 s" in log
    assert time.monotonic() - started < 120


def test_13_a_corrupt_ledger_stops_watch_with_the_way_out_and_doctor_rebuilds_it(watch_run):
    run = watch_run(profile={"originals": "keep"})
    run.start()
    run.drop("one.wav", cheap_wav(41))
    wait_for(lambda: run.done_names() == ["one.wav"], 60, "the first file")
    assert run.stop() == 0
    # a claimed original waits in the spool when the ledger is damaged
    waiting = run.workdir / "spool" / "default" / "0123abcd" / "two.wav"
    waiting.parent.mkdir(parents=True)
    waiting.write_bytes(cheap_wav(42))
    with open(run.workdir / "ledger.sqlite3", "r+b") as f:
        f.write(b"overwritten header....")
    run.start(wait_ready=False)
    assert run.proc.wait(60) == 2
    log = run.log_text()
    assert "is damaged" in log and "hushdrop doctor --rebuild-ledger" in log and "Traceback" not in log
    doctor = hushdrop(run.config_path, "doctor")
    assert doctor.returncode == 1 and "is damaged" in doctor.stdout
    rebuilt = hushdrop(run.config_path, "doctor", "--rebuild-ledger")
    assert rebuilt.returncode == 0 and "1 job(s) found in the spool" in rebuilt.stdout
    assert any(p.name.startswith("ledger.sqlite3.damaged-") for p in run.workdir.iterdir())
    run.start("--once", wait_ready=False)
    assert run.proc.wait(120) == 0, run.log_text()
    assert run.done_names() == ["two.wav"]


def _random_name(rng: random.Random) -> bytes:
    alphabet = [b for b in range(1, 256) if b != ord("/")]
    length = rng.choice([1, 3, 12, 60, 200, 250])
    body = bytes(rng.choice(alphabet) for _ in range(length))
    name = body.lstrip(b".")[: 251] or b"x"
    return name + b".wav"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_property_nothing_outside_the_inbox_ever_changes(watch_run, tmp_path, seed):
    """Random names, hard links, symlinks (file and folder), unreadable files and a kill -9 at a
    random moment: afterwards every file outside the inbox has its checksum, every regular
    single-name file that was dropped is transcribed or quarantined, and nothing is lost."""
    rng = random.Random(seed)
    run = watch_run(rescan_seconds=0.5, profiles={"meetings": {"folder": "meetings"}})
    outside = tmp_path / f"outside-{seed}"
    outside.mkdir()
    for i in range(6):
        (outside / f"keep-{i}.wav").write_bytes(cheap_wav(1000 + i))
    run.inbox.mkdir(parents=True)
    dropped: list[Path] = []
    unreadable: list[Path] = []
    for i in range(6):
        kind = rng.choice(["regular", "regular", "hardlink", "symlink", "unreadable"])
        name = os.fsdecode(_random_name(rng))
        path = run.inbox / name
        if os.path.lexists(path):
            continue
        if kind == "hardlink":
            os.link(outside / f"keep-{i}.wav", path)
        elif kind == "symlink":
            path.symlink_to(outside / f"keep-{i}.wav")
        else:
            path.write_bytes(cheap_wav(2000 + seed * 10 + i))
            if kind == "unreadable":
                os.chmod(path, 0)
                unreadable.append(path)
            dropped.append(path)
    if rng.random() < 0.5:
        (run.inbox / "meetings").symlink_to(outside)
    checksums = {p: digest(p) for p in outside.iterdir()}
    run.start(wait_ready=False)
    time.sleep(rng.uniform(0.5, 6.0))
    run.kill9()
    run.start("--once", wait_ready=False)
    code = run.proc.wait(180)
    assert code in (0, 1), run.all_logs()
    assert {p: digest(p) for p in outside.iterdir()} == checksums, "a file outside the inbox changed"
    jobs = run.jobs()
    # root reads mode-000 files; any other user leaves them in the inbox, untouched
    left = set() if is_root() else {p.name for p in unreadable}
    finished = {j["name"] for j in jobs if j["state"] in ("done", "quarantined")}
    assert finished == {p.name for p in dropped} - left, run.all_logs()
    assert all(os.path.lexists(run.inbox / name) for name in left)
    assert all(j["state"] in ("done", "quarantined", "abandoned") for j in jobs)
    assert not any(p.is_file() for p in (run.workdir / "spool").rglob("*")), "an original was left in the spool"
    db = sqlite3.connect(run.workdir / "ledger.sqlite3")
    try:
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        db.close()
