"""``hushdrop watch`` as a real process on real files: the durability invariants of design.md.

Every test starts the watcher as a subprocess on a temp config and polls for a
condition with a timeout. The chain is always the real one with the real model;
tests about intake mechanics drop short quiet clips that the chain finishes in a
fraction of a second, the end-to-end ones drop the 32 s English clip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import SPEECH_EN, ffmpeg
from tests.harness import FORMATS, REPO, cheap_wav, sha, wait_for

ALL = set(FORMATS)


def complete_sets(run, profile: str = "default") -> dict[str, set[str]]:
    sets = run.output_sets(profile)
    assert all(formats == ALL for formats in sets.values()), f"partial output set: {sets}"
    return sets


SLOW_COPY_SETTLE_S = 5.0  # the writer pauses a fiftieth of this between chunks


def test_slow_copy_is_processed_once_after_it_is_complete(watch_run):
    run = watch_run(profile={"settle_seconds": SLOW_COPY_SETTLE_S}).start()
    data = SPEECH_EN.read_bytes()
    target = run.inbox / "meeting.wav"
    chunks = 24
    size = len(data) // chunks + 1
    with open(target, "wb") as f:
        for i in range(chunks):
            before_write = time.time()
            f.write(data[i * size:(i + 1) * size])
            f.flush()
            time.sleep(SLOW_COPY_SETTLE_S / 50)
            assert not run.jobs(), "a file still being written was claimed"
    wait_for(lambda: run.done_names() == ["meeting.wav"], 120, "the recording to be transcribed")
    (job,) = run.jobs()
    # claimed once, whole, and only after it had stayed unchanged for the settle period
    assert job["claimed_at"] >= before_write + SLOW_COPY_SETTLE_S, job["claimed_at"] - before_write
    assert job["size"] == len(data) and job["content_hash"] == sha(data)
    assert complete_sets(run) == {"meeting": ALL}
    text = (run.outbox / "default" / "meeting.txt").read_text().lower()
    assert "planning meeting" in text and "saturday" in text
    assert not target.exists() and run.spool_files() == []
    assert run.stop() == 0
    assert run.temp_files() == []


def test_syncthing_temp_file_renamed_into_place_is_processed_once(watch_run):
    run = watch_run().start()
    temps = {
        "note.wav": run.inbox / ".syncthing.note.wav.tmp",
        "memo.wav": run.inbox / "~syncthing~memo.wav.tmp",
    }
    for n, temp in enumerate(temps.values()):
        data = cheap_wav(n)
        temp.write_bytes(data[:1000])
    # a file dropped after them settles after them: once it is done, they would have been taken
    run.drop("first.wav", cheap_wav(10))
    wait_for(lambda: run.done_names() == ["first.wav"], 60, "the file dropped after the temp files")
    assert [j["name"] for j in run.jobs()] == ["first.wav"]  # only the ignore patterns kept them out
    for n, (final, temp) in enumerate(temps.items()):
        with open(temp, "ab") as f:
            f.write(cheap_wav(n)[1000:])
        os.rename(temp, run.inbox / final)
    wait_for(lambda: sorted(run.done_names()) == ["first.wav", "memo.wav", "note.wav"], 60, "both renamed files")
    run.drop("last.wav", cheap_wav(11))  # settles after any second claim of a renamed file would have been made
    wait_for(lambda: "last.wav" in run.done_names(), 60, "the file dropped after the renames")
    assert sorted(j["name"] for j in run.jobs()) == ["first.wav", "last.wav", "memo.wav", "note.wav"]
    assert complete_sets(run) == {"first": ALL, "last": ALL, "note": ALL, "memo": ALL}
    assert run.stop() == 0


def test_fifty_files_dropped_at_once_are_each_processed_once(watch_run):
    run = watch_run(queue_limit=10).start()  # a small queue: intake must wait, not overflow
    originals = {f"clip-{i:02d}.wav": cheap_wav(i) for i in range(50)}
    for name, data in originals.items():
        run.drop(name, data)
    held_back = wait_for(lambda: run.service().get("intake_paused"), 60, "intake to pause on a full queue")
    assert held_back
    wait_for(lambda: len(run.done_names()) == 50, 240, "all 50 files")
    jobs = run.jobs()
    assert len(jobs) == 50 and sorted(j["name"] for j in jobs) == sorted(originals)
    assert {j["content_hash"] for j in jobs} == {sha(d) for d in originals.values()}
    assert all(j["attempts"] == 1 for j in jobs)
    assert complete_sets(run) == {Path(n).stem: ALL for n in originals}
    assert list(run.inbox.iterdir()) == [] and run.spool_files() == []
    assert run.service()["watch_mode"] == "events"
    assert run.stop() == 0
    assert run.temp_files() == []


def test_links_fifos_and_directories_are_left_alone(watch_run, tmp_path: Path):
    run = watch_run(rescan_seconds=0.5)
    run.inbox.mkdir(parents=True)
    secret = tmp_path / "outside" / "secret.wav"
    secret.parent.mkdir()
    secret_bytes = cheap_wav(7)
    secret.write_bytes(secret_bytes)
    (run.inbox / "link.wav").symlink_to(secret)
    os.mkfifo(run.inbox / "pipe.wav")
    (run.inbox / "x.wav").mkdir()
    (run.inbox / "x.wav" / "inside.wav").write_bytes(b"not for us")
    (run.inbox / "notes.txt").write_text("shopping list")
    run.start()
    (run.inbox / "late-link.wav").symlink_to(secret)  # arrives while watching: an event, not the start scan
    run.drop("sentinel.wav", cheap_wav(1))
    wait_for(lambda: run.done_names() == ["sentinel.wav"], 60, "the sentinel file")
    time.sleep(3)  # several rescans
    assert [j["name"] for j in run.jobs()] == ["sentinel.wav"]
    for link in ("link.wav", "late-link.wav"):
        assert (run.inbox / link).is_symlink() and os.readlink(run.inbox / link) == str(secret)
    assert secret.read_bytes() == secret_bytes
    assert (run.inbox / "pipe.wav").is_fifo()
    assert (run.inbox / "x.wav" / "inside.wav").read_bytes() == b"not for us"
    assert (run.inbox / "notes.txt").read_text() == "shopping list"
    log = run.log_text()
    for name in ("link.wav", "late-link.wav", "pipe.wav", "x.wav", "notes.txt"):
        assert log.count(f"leaving {run.inbox / name} alone") == 1, (name, log)
    assert run.stop() == 0


def _uses_inotify(pid: int) -> bool:
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            if "inotify" in os.readlink(fd):
                return True
        except OSError:
            continue
    return False


def test_polling_mode_processes_files_without_inotify(watch_run):
    run = watch_run(watch="polling", poll_seconds=0.5).start()
    assert not _uses_inotify(run.proc.pid)
    run.drop("polled.wav", cheap_wav(3))
    wait_for(lambda: run.done_names() == ["polled.wav"], 60, "the file, by polling")
    assert complete_sets(run) == {"polled": ALL}
    assert run.service()["watch_mode"] == "polling"
    assert not _uses_inotify(run.proc.pid)
    assert run.stop() == 0


def test_bad_inputs_end_in_quarantine_byte_identical(watch_run, tmp_path: Path):
    made = tmp_path / "made"
    made.mkdir()
    ffmpeg("-i", str(SPEECH_EN), "-t", "12", "-b:a", "64k", str(made / "full.mp3"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-t", "2", "-an", "-pix_fmt", "yuv420p", str(made / "v.mp4"))
    mp3 = (made / "full.mp3").read_bytes()
    bad = {
        "empty.wav": b"",
        "noise.wav": os.urandom(40_000),
        "stub.mp3": mp3[:600],  # a header and nothing after it: nothing decodable
        "silent-film.mp4": (made / "v.mp4").read_bytes(),
    }
    truncated = mp3[: len(mp3) * 2 // 5]  # the first ~5 s of 12: its readable part is transcribed
    run = watch_run().start()
    for name, data in bad.items():
        run.drop(name, data)
    run.drop("cut-off.mp3", truncated)
    quarantine = run.workdir / "quarantine" / "default"
    wait_for(lambda: len([j for j in run.jobs() if j["state"] in ("quarantined", "done")]) == 5, 90, "every bad input")
    # the ledger says "quarantined" first (crash safety), then the file moves and its note is written
    wait_for(lambda: all((quarantine / f"{name}.error.txt").exists() for name in bad), 30, "the quarantine notes")
    states = {j["name"]: j for j in run.jobs()}
    for name, data in bad.items():
        job = states[name]
        assert job["state"] == "quarantined" and job["attempts"] == 1, job  # not retried: retrying cannot help
        assert (quarantine / name).read_bytes() == data
        note = (quarantine / f"{name}.error.txt").read_text()
        assert "stage:    decode" in note and job["error"] in note and "drop it into" in note
    assert "empty" in states["empty.wav"]["error"] and "no audio track" in states["silent-film.mp4"]["error"]
    assert states["cut-off.mp3"]["state"] == "done"
    record = json.loads((run.outbox / "default" / "cut-off.json").read_text())
    assert any("truncated" in note for note in record["notes"])
    assert "good morning" in record["text"].lower()
    assert complete_sets(run) == {"cut-off": ALL}
    assert run.stop() == 0


def test_a_failing_job_is_retried_with_backoff_then_quarantined(watch_run):
    broken = {"folder": "broken", "chain": ["resample", {"transcribe": {"model": "/nonexistent/model"}}]}
    run = watch_run(max_attempts=2, profiles={"broken": broken}).start()
    data = cheap_wav(11)
    run.drop("take.wav", data, folder="broken")
    target = run.workdir / "quarantine" / "broken" / "take.wav"
    wait_for(lambda: any(j["state"] == "quarantined" for j in run.jobs()), 60, "quarantine after the retries")
    # the ledger says "quarantined" first (crash safety), then the file moves and its note is written
    wait_for(lambda: target.with_name("take.wav.error.txt").exists(), 30, "the quarantine note")
    (job,) = run.jobs()
    assert job["attempts"] == 2 and job["error_stage"] == "transcribe"
    assert target.read_bytes() == data
    note = (run.workdir / "quarantine" / "broken" / "take.wav.error.txt").read_text()
    assert "stage:    transcribe" in note and "not found" in note and "attempts: 2" in note
    assert "attempt 1 of 2 failed" in run.log_text()
    assert run.output_sets("broken") == {}
    assert run.stop() == 0


def test_duplicates_are_skipped_or_reprocessed_per_profile(watch_run):
    run = watch_run(profiles={"again": {"folder": "again", "duplicates": "reprocess"}}).start()
    data = cheap_wav(5)
    run.drop("first.wav", data)
    wait_for(lambda: run.done_names() == ["first.wav"], 60, "the first copy")
    run.drop("second.wav", data)
    wait_for(lambda: sorted(run.done_names()) == ["first.wav", "second.wav"], 60, "the duplicate")
    first, second = run.jobs()
    assert second["duplicate_of"] == first["id"] and second["outputs"] == first["outputs"]
    assert complete_sets(run) == {"first": ALL}  # no second set
    assert not (run.inbox / "second.wav").exists() and run.spool_files() == []
    for _ in range(2):
        before = len(run.done_names("again"))
        run.drop("take.wav", data, folder="again")
        wait_for(lambda: len(run.done_names("again")) == before + 1, 60, "the reprocessed copy")
    assert complete_sets(run, "again") == {"take": ALL, "take (2)": ALL}
    assert run.stop() == 0


def _status(run) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(run.config_path), "status", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    return json.loads(proc.stdout)


def test_sigterm_releases_a_running_job_and_a_restart_finishes_it(watch_run):
    run = watch_run(shutdown_grace_seconds=0).start()
    data = SPEECH_EN.read_bytes()
    run.drop("talk.wav", data)
    wait_for(lambda: [j["state"] for j in run.jobs()] == ["processing"], 60, "the job to start")
    status = wait_for(lambda: (s := _status(run))["in_flight"] and s["in_flight"][0]["stage"] and s, 30, "a stage in status")
    assert status["running"] and status["workers"][0]["model"] == "base" and status["workers"][0]["device"] == "cpu"
    assert status["in_flight"][0]["name"] == "talk.wav"
    assert run.stop() == 0
    (job,) = run.jobs()
    assert job["state"] == "claimed" and job["attempts"] == 0
    assert run.output_sets() == {} and run.temp_files() == []
    (spooled,) = run.spool_files()
    assert sha(spooled.read_bytes()) == sha(data)
    assert "released at shutdown" in run.log_text()
    assert _status(run)["running"] is False

    run.start()
    wait_for(lambda: run.done_names() == ["talk.wav"], 120, "the released job after the restart")
    assert complete_sets(run) == {"talk": ALL} and run.spool_files() == []
    assert run.stop() == 0


def test_sigterm_lets_a_running_job_finish_within_the_grace_period(watch_run):
    run = watch_run(shutdown_grace_seconds=120).start()
    run.drop("talk.wav", SPEECH_EN.read_bytes())
    wait_for(lambda: [j["state"] for j in run.jobs()] == ["processing"], 60, "the job to start")
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(120) == 0
    assert run.done_names() == ["talk.wav"] and complete_sets(run) == {"talk": ALL}
    assert run.spool_files() == [] and run.temp_files() == []


def test_kill9_while_transcribing_then_restart(watch_run):
    run = watch_run().start()
    data = SPEECH_EN.read_bytes()
    run.drop("talk.wav", data)
    wait_for(lambda: [(j["state"], j["stage"]) for j in run.jobs()] == [("processing", "transcribe")], 60,
             "the job to reach the transcribe stage")
    run.kill9()  # also waits for the worker to die with it
    (spooled,) = run.spool_files()
    assert sha(spooled.read_bytes()) == sha(data)
    assert run.output_sets() == {}
    run.start()
    wait_for(lambda: run.done_names() == ["talk.wav"], 120, "the job after the restart")
    (job,) = run.jobs()
    assert job["attempts"] == 1  # the crash was not the recording's fault
    assert complete_sets(run) == {"talk": ALL} and run.spool_files() == []
    assert run.stop() == 0
    assert run.temp_files() == [] and list((run.workdir / "tmp").iterdir()) == []


def test_json_logs_carry_the_job_id(watch_run):
    run = watch_run(log_format="json").start()
    run.drop("j.wav", cheap_wav(9))
    wait_for(lambda: run.done_names() == ["j.wav"], 60, "the file")
    assert run.stop() == 0
    records = [json.loads(line) for line in run.log_text().splitlines() if line.startswith("{")]
    job_id = run.jobs()[0]["id"]
    mine = [r for r in records if r["job"] == job_id]
    assert any("claimed" in r["msg"] for r in mine) and any("done" in r["msg"] for r in mine)
    assert any(r["process"].startswith("worker") for r in mine)


def test_once_processes_what_is_there_and_exits(watch_run):
    run = watch_run()
    for i in range(3):
        run.drop(f"batch-{i}.wav", cheap_wav(40 + i))
    run.start("--once", wait_ready=False)
    assert run.proc.wait(120) == 0, run.log_text()
    assert sorted(run.done_names()) == ["batch-0.wav", "batch-1.wav", "batch-2.wav"]
    assert complete_sets(run) == {f"batch-{i}": ALL for i in range(3)}
    assert list(run.inbox.iterdir()) == [] and run.spool_files() == []
