"""Intake, finishing and recovery on real files and a real ledger (no filesystem mocks)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

from hushdrop.pipeline.config import Settings, parse_config
from hushdrop.pipeline.job import Job
from hushdrop.pipeline.outputs import plan_outputs
from hushdrop.pipeline.fsutil import identity_of, move_file
from hushdrop.pipeline.watch.intake import ClaimLost, claim, classify, finish_seen, is_ignored
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.watch.recovery import recover


def make(root: Path, **top) -> Settings:
    raw = {"profiles": {"default": {"settle_seconds": 0}, "meetings": {"folder": "meetings"}}, **top}
    settings = parse_config(raw, root / "config.yaml")
    settings.inbox.mkdir(parents=True, exist_ok=True)
    (settings.inbox / "meetings").mkdir(exist_ok=True)
    return settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make(tmp_path)


@pytest.fixture
def ledger(settings: Settings):
    ledger = Ledger(settings.ledger_path)
    yield ledger
    ledger.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "name",
    [".syncthing.talk.wav.tmp", "~syncthing~talk.wav.tmp", "talk.wav.part", "talk.wav.crdownload", ".DS_Store",
     "._talk.wav", ".~lock.talk.wav#", "@eaDir", ".stfolder", ".stversions", "talk.wav.error.txt"],
)
def test_builtin_ignore_patterns(name: str):
    assert is_ignored(name)


def test_classify_takes_only_regular_audio_files_in_profile_folders(settings: Settings, tmp_path: Path):
    inbox = settings.inbox
    (inbox / "talk.wav").write_bytes(b"x")
    (inbox / "meetings" / "m.mp3").write_bytes(b"x")
    (inbox / "notes.txt").write_bytes(b"x")
    (inbox / "x.wav").mkdir()
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"secret")
    (inbox / "link.wav").symlink_to(outside)
    os.mkfifo(inbox / "fifo.wav")
    (inbox / "other").mkdir()
    (inbox / "other" / "deep.wav").write_bytes(b"x")

    assert classify(settings, inbox / "talk.wav").take
    verdict = classify(settings, inbox / "meetings" / "m.mp3")
    assert verdict.take and verdict.profile.name == "meetings"
    for name, why in [("notes.txt", "extension"), ("x.wav", "directory"), ("link.wav", "symbolic link"), ("fifo.wav", "FIFO")]:
        verdict = classify(settings, inbox / name)
        assert not verdict.take and why in verdict.reason, name
    assert classify(settings, inbox / "other" / "deep.wav").profile is None  # not a profile folder
    assert not classify(settings, inbox / "meetings").take and classify(settings, inbox / "meetings").reason is None


def test_claim_moves_atomically_and_records_the_hash(settings: Settings, ledger: Ledger):
    path = settings.inbox / "talk.wav"
    path.write_bytes(b"RIFF" + os.urandom(1000))
    digest = sha(path)
    row = claim(settings, ledger, path, settings.profiles["default"], os.lstat(path))
    assert row.state == State.CLAIMED and row.content_hash == digest
    assert not path.exists() and sha(row.spool_path) == digest
    assert row.spool_path.is_relative_to(settings.spool_dir / "default")


def test_claim_refuses_a_file_that_changed_after_settling(settings: Settings, ledger: Ledger):
    path = settings.inbox / "talk.wav"
    path.write_bytes(b"one")
    settled = os.lstat(path)
    with open(path, "ab") as f:
        f.write(b" more")
    with pytest.raises(ClaimLost):
        claim(settings, ledger, path, settings.profiles["default"], settled)
    assert path.read_bytes() == b"one more" and list(ledger.all()) == []


def test_claim_of_a_vanished_file_abandons_the_row(settings: Settings, ledger: Ledger):
    path = settings.inbox / "talk.wav"
    path.write_bytes(b"data")
    settled = os.lstat(path)
    # the file vanishes between the settle check and the rename: simulate by a stale stat
    os.unlink(path)
    with pytest.raises(ClaimLost):
        claim(settings, ledger, path, settings.profiles["default"], settled)
    assert all(r.state == State.ABANDONED for r in ledger.all())


@pytest.fixture
def spool_elsewhere(tmp_path: Path):
    """Settings whose spool is on another filesystem than the inbox (tmpfs at /dev/shm): a claim
    copies instead of renaming."""
    import shutil

    if not Path("/dev/shm").is_dir():
        pytest.skip("needs a second filesystem (tmpfs at /dev/shm)")
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        settings = make(tmp_path, spool=str(shm / "spool"))
        if os.stat(shm).st_dev == os.stat(settings.inbox).st_dev:
            pytest.skip("/dev/shm is on the same filesystem here")
        yield settings
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def test_claim_across_filesystems_copies_verifies_then_removes(spool_elsewhere: Settings):
    settings = spool_elsewhere
    ledger = Ledger(settings.ledger_path)
    path = settings.inbox / "talk.wav"
    path.write_bytes(os.urandom(3 << 20))
    digest = sha(path)
    row = claim(settings, ledger, path, settings.profiles["default"], os.lstat(path))
    assert row.state == State.CLAIMED and row.content_hash == digest and sha(row.spool_path) == digest
    assert not path.exists()
    assert not list(row.spool_path.parent.glob(".*"))  # no partial copy left
    ledger.close()


def test_a_long_copy_across_filesystems_is_not_taken_for_a_stalled_claim(spool_elsewhere: Settings, monkeypatch):
    """The sweep for stalled claims runs while a large recording is still being copied to a spool
    on another filesystem (a NAS inbox, a local spool): it leaves that claim, and its partial copy,
    alone, and the claim completes."""
    import threading

    from hushdrop.pipeline.watch import intake
    from hushdrop.pipeline.watch.scheduler import finish_stale_seen

    settings = spool_elsewhere
    ledger = Ledger(settings.ledger_path)
    path = settings.inbox / "long interview.wav"
    path.write_bytes(os.urandom(3 << 20))
    digest = sha(path)
    copying, go_on = threading.Event(), threading.Event()
    real_copy = intake.copy_verified

    def slow_copy(fd, dest, before_rename):
        def still_copying():
            copying.set()
            go_on.wait(30)
            before_rename()

        return real_copy(fd, dest, before_rename=still_copying)

    monkeypatch.setattr(intake, "copy_verified", slow_copy)
    claimed = {}
    worker = threading.Thread(target=lambda: claimed.update(row=claim(settings, ledger, path, settings.profiles["default"], os.lstat(path))))
    worker.start()
    assert copying.wait(30)
    (row,) = ledger.in_state(State.SEEN)
    partial = list(row.spool_path.parent.glob(".hushdrop-*.partial"))
    assert finish_stale_seen(settings, ledger, older_than=-1) == 0  # as if it had taken over a minute
    assert ledger.get(row.id).state == State.SEEN and all(p.exists() for p in partial) and partial
    go_on.set()
    worker.join(30)
    done = claimed["row"]
    assert done.state == State.CLAIMED and done.content_hash == digest and sha(done.spool_path) == digest
    assert not path.exists()
    assert finish_stale_seen(settings, ledger, older_than=-1) == 0
    ledger.close()


def seen_row(settings: Settings, ledger: Ledger, name: str = "talk.wav", data: bytes = b"audio") -> tuple[int, Path, Path]:
    inbox_path = settings.inbox / name
    inbox_path.write_bytes(data)
    spool = settings.spool_dir / "default" / "tok" / name
    spool.parent.mkdir(parents=True)
    st = inbox_path.stat()
    job = ledger.add(
        profile="default", name=name, inbox_path=inbox_path, spool_path=spool, size=len(data), mtime_ns=0,
        device=st.st_dev, inode=st.st_ino,
    )
    return job, inbox_path, spool


def test_finish_seen_leaves_a_new_file_with_the_same_name_and_content_alone(settings: Settings, ledger: Ledger):
    job, inbox_path, spool = seen_row(settings, ledger)
    spool.write_bytes(inbox_path.read_bytes())  # the copy finished …
    held = os.open(inbox_path, os.O_RDONLY)  # (keeps the old inode number from being reused)
    try:
        inbox_path.unlink()  # … then the user replaced the inbox file with another one, same bytes
        inbox_path.write_bytes(b"audio")
        row = finish_seen(settings, ledger, ledger.get(job))
    finally:
        os.close(held)
    assert row.state == State.CLAIMED and inbox_path.read_bytes() == b"audio" and spool.exists()


def test_finish_seen_after_a_crash_before_the_rename(settings: Settings, ledger: Ledger):
    job, inbox_path, spool = seen_row(settings, ledger)
    row = finish_seen(settings, ledger, ledger.get(job))
    assert row.state == State.ABANDONED and inbox_path.exists()


def test_finish_seen_after_a_crash_after_the_rename(settings: Settings, ledger: Ledger):
    job, inbox_path, spool = seen_row(settings, ledger)
    os.rename(inbox_path, spool)
    row = finish_seen(settings, ledger, ledger.get(job))
    assert row.state == State.CLAIMED and row.content_hash == sha(spool)


def test_finish_seen_after_a_crash_mid_cross_filesystem_copy(settings: Settings, ledger: Ledger):
    job, inbox_path, spool = seen_row(settings, ledger)
    spool.write_bytes(inbox_path.read_bytes())  # copy finished and renamed; the inbox original not yet removed
    row = finish_seen(settings, ledger, ledger.get(job))
    assert row.state == State.CLAIMED and not inbox_path.exists() and spool.exists()


def processing_row(settings: Settings, ledger: Ledger, name: str = "talk.wav") -> tuple[int, Path, list[Path]]:
    job, inbox_path, spool = seen_row(settings, ledger, name, os.urandom(100))
    os.rename(inbox_path, spool)
    ledger.transition(job, State.CLAIMED, content_hash=sha(spool))
    ledger.start(job, "worker-1:123")
    folder = settings.outbox / "default"
    folder.mkdir(parents=True, exist_ok=True)
    planned = plan_outputs(Job(source=Path(name)), folder, settings.profiles["default"].outputs).paths
    ledger.plan_outputs(job, planned)
    return job, spool, planned


def linked(ledger: Ledger, job: int, planned: list[Path], paths: list[Path], text: str) -> None:
    """``paths`` written as the commit of ``job`` writes them: their identities recorded with the
    planned names before they take them."""
    for path in paths:
        path.write_text(text)
    ledger.plan_outputs(job, planned, [identity_of(os.lstat(p)) for p in paths])


def test_recovery_removes_a_partial_output_set_and_runs_the_job_again(settings: Settings, ledger: Ledger):
    job, spool, planned = processing_row(settings, ledger)
    linked(ledger, job, planned, planned[:2], "half of it")
    (planned[0].parent / ".hushdrop-abc.tmp").write_text("temp")
    recover(settings, ledger)
    row = ledger.get(job)
    assert row.state == State.CLAIMED and row.attempts == 0 and row.outputs == []
    assert not any(p.exists() for p in planned)
    assert list(planned[0].parent.iterdir()) == []  # temp file gone too
    assert spool.exists()


def test_recovery_keeps_a_complete_output_set_and_shreds_the_original(settings: Settings, ledger: Ledger):
    job, spool, planned = processing_row(settings, ledger)
    linked(ledger, job, planned, planned, "complete")
    recover(settings, ledger)
    row = ledger.get(job)
    assert row.state == State.DONE and row.outputs == planned
    assert all(p.read_text() == "complete" for p in planned)
    assert not spool.exists() and not spool.parent.exists()


def test_recovery_shreds_a_committed_but_unshredded_original(settings: Settings, ledger: Ledger):
    job, spool, planned = processing_row(settings, ledger)
    for path in planned:
        path.write_text("complete")
    ledger.transition(job, State.COMMITTED, outputs=planned)
    recover(settings, ledger)
    assert ledger.get(job).state == State.DONE and not spool.exists()


def test_recovery_finishes_an_interrupted_quarantine(settings: Settings, ledger: Ledger):
    job, spool, _ = processing_row(settings, ledger)
    original = spool.read_bytes()
    target = settings.quarantine / "default" / "talk.wav"
    ledger.transition(job, State.QUARANTINED, quarantine_path=target, error_stage="decode", error="not audio", outputs=[])
    recover(settings, ledger)
    assert target.read_bytes() == original and not spool.exists()
    assert "not audio" in Path(f"{target}.error.txt").read_text()


def test_recovery_removes_stray_temp_audio(settings: Settings, ledger: Ledger):
    stray = settings.tmp_root / "job-123"
    stray.mkdir(parents=True)
    (stray / "audio.f32").write_bytes(b"0" * 10)
    recover(settings, ledger)
    assert list(settings.tmp_root.iterdir()) == []


def test_recovery_abandons_a_seen_job_whose_file_never_left_the_inbox(settings: Settings, ledger: Ledger):
    job, inbox_path, spool = seen_row(settings, ledger)
    before = inbox_path.read_bytes()
    recover(settings, ledger)
    row = ledger.get(job)
    assert row.state == State.ABANDONED and "claim interrupted" in row.error
    assert inbox_path.read_bytes() == before  # the file is seen again, untouched
    assert not spool.exists() and not spool.parent.exists()


def test_recovery_completes_the_claim_of_a_seen_job_whose_file_reached_the_spool(settings: Settings, ledger: Ledger):
    job, inbox_path, spool = seen_row(settings, ledger)
    os.rename(inbox_path, spool)
    recover(settings, ledger)
    row = ledger.get(job)
    assert row.state == State.CLAIMED and row.content_hash == sha(spool) and row.claimed_at is not None
    assert (row.device, row.inode) == (os.stat(spool).st_dev, os.stat(spool).st_ino)
    assert not inbox_path.exists()


def test_move_file_is_safe_to_repeat(tmp_path: Path):
    src = tmp_path / "a" / "x.wav"
    src.parent.mkdir()
    src.write_bytes(b"data")
    dest = tmp_path / "b" / "x.wav"
    dest.parent.mkdir()
    os.link(src, dest)  # a crash after the link, before the unlink
    move_file(src, dest)
    assert not src.exists() and dest.read_bytes() == b"data"
    move_file(src, dest)  # again: nothing to do
    assert dest.read_bytes() == b"data"


def test_a_copy_never_replaces_a_file_that_appeared_under_its_name_meanwhile(tmp_path: Path):
    """A verified copy into a folder others write to (``originals: move`` to a user's archive
    across filesystems): a file put under the target name during the copy stays as it is, the
    copy gives up with a clear error and leaves no partial file."""
    from hushdrop.pipeline.fsutil import copy_verified

    src = tmp_path / "recording.wav"
    src.write_bytes(os.urandom(1 << 16))
    dest = tmp_path / "archive" / "recording.wav"
    dest.parent.mkdir()

    def someone_saves_there():
        dest.write_text("someone else's file")

    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(FileExistsError, match="appeared while it was being copied"):
            copy_verified(fd, dest, before_rename=someone_saves_there)
    finally:
        os.close(fd)
    assert dest.read_text() == "someone else's file" and sorted(p.name for p in dest.parent.iterdir()) == ["recording.wav"]


def test_without_hard_links_an_output_name_is_taken_only_where_nothing_holds_it(tmp_path: Path, monkeypatch):
    """On a share without hard links (some SMB mounts) the no-clobber link falls back to a rename
    that never replaces: not a file, not a dangling symbolic link someone left there."""
    import errno

    from hushdrop.pipeline import fsutil

    def no_hard_links(src, dst, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(fsutil.os, "link", no_hard_links)
    temp = tmp_path / ".hushdrop-1.tmp"
    temp.write_text("transcript")
    taken, dangling, free = tmp_path / "talk.txt", tmp_path / "talk.srt", tmp_path / "talk.vtt"
    taken.write_text("theirs")
    dangling.symlink_to(tmp_path / "nowhere")
    assert not fsutil.link_no_clobber(temp, taken) and taken.read_text() == "theirs"
    assert not fsutil.link_no_clobber(temp, dangling) and dangling.is_symlink()
    assert fsutil.link_no_clobber(temp, free) and free.read_text() == "transcript" and not temp.exists()


def test_finish_seen_removes_the_copied_inbox_original_but_not_a_file_dropped_under_its_name_meanwhile(
    settings: Settings, ledger: Ledger, monkeypatch
):
    """A copy across filesystems finished before a restart; the inbox original is removed only
    as the very file that was copied: hashed through its descriptor, then taken aside by its
    identity. A new recording a sync tool puts under the same name while that hash runs (written
    beside it, renamed over it) stays in the inbox, and nothing is left hidden there."""
    from hushdrop.pipeline.watch import intake

    job, inbox_path, spool = seen_row(settings, ledger, data=os.urandom(1 << 16))
    spool.write_bytes(inbox_path.read_bytes())
    real_hash = intake.sha256_fd

    def hash_while_a_new_file_arrives(fd):
        incoming = inbox_path.with_name(".syncthing.talk.wav.tmp")
        incoming.write_bytes(b"a new recording with the same name")
        os.replace(incoming, inbox_path)
        return real_hash(fd)

    monkeypatch.setattr(intake, "sha256_fd", hash_while_a_new_file_arrives)
    row = finish_seen(settings, ledger, ledger.get(job))
    assert row.state == State.CLAIMED and row.content_hash == sha(spool)
    assert inbox_path.read_bytes() == b"a new recording with the same name"
    assert sorted(p.name for p in inbox_path.parent.iterdir() if p.is_file()) == [inbox_path.name]  # nothing hidden left
