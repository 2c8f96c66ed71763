"""The page's writes (upload, "send again", delete) as a security boundary: nothing they do
lands outside the inbox, even while a folder above the inbox is swapped for a symbolic link
over and over (``renameat2(RENAME_EXCHANGE)``), and a refusal is a 4xx with the recording
still in quarantine and the ledger unchanged — never a 500.

Real app (through its HTTP interface), real files, a real ledger; the swapping is a real
thread calling the real system call.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import threading
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from hushdrop.pipeline.config import Settings, parse_config
from hushdrop.pipeline.watch.finish import quarantine_job
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.retention import Action, Disposal
from hushdrop.pipeline.web.quarantine import retry_quarantined
from hushdrop.pipeline.web.uploads import UploadError
from tests.web.conftest import BASE, csrf_of, unsafe_headers

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: Path, b: Path) -> None:
    """Swap the two names ``a`` and ``b`` atomically (both exist; either may be a link)."""
    if _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


if not hasattr(_libc, "renameat2"):  # pragma: no cover - every Linux libc since 2.28 has it
    pytestmark = pytest.mark.skip("this libc has no renameat2")


class AncestorSwapper(threading.Thread):
    """Swaps the real folder ``real`` with ``decoy`` (a symbolic link to a folder outside) in a
    loop, the way an attacker with write access above the inbox would race the page."""

    def __init__(self, real: Path, decoy: Path):
        super().__init__(daemon=True)
        self.real, self.decoy = real, decoy
        self.halt = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        while not self.halt.is_set():
            exchange(self.real, self.decoy)
            self.swaps += 1

    def stop(self) -> None:
        """Stop, leaving the real folder under its own name again."""
        self.halt.set()
        self.join(10)
        if self.real.is_symlink():
            exchange(self.real, self.decoy)
        assert self.real.is_dir() and not self.real.is_symlink() and self.decoy.is_symlink()


def site(tmp_path: Path, extra_profiles: dict | None = None) -> tuple[Settings, Path, Path]:
    """A config whose inbox is ``box/inbox``; ``outside`` mirrors that layout (so a link in
    place of ``box`` would lead ``box/inbox`` there) and ``decoy`` is a link to it.
    Returns (settings, outside, decoy)."""
    box = tmp_path / "box"
    (box / "inbox").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "inbox").mkdir(parents=True)
    (outside / "keep.wav").write_bytes(b"a file that is not hushdrop's")
    decoy = tmp_path / "decoy"
    decoy.symlink_to(outside)
    raw = {
        "inbox": str(box / "inbox"), "outbox": str(tmp_path / "outbox"), "workdir": str(tmp_path / "work"),
        "profiles": {"default": {"originals": "shred"}, **(extra_profiles or {})},
        "web": {"listen": "127.0.0.1:8765"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    return parse_config(raw, tmp_path / "config.yaml"), outside, decoy


def page(settings: Settings) -> TestClient:
    """The real app, asked from this machine; a server error comes back as a 500 response, so a
    test can say it never does."""
    from hushdrop.pipeline.web.app import create_app

    return TestClient(create_app(settings), base_url=BASE, follow_redirects=False, raise_server_exceptions=False,
                      client=("127.0.0.1", 50000))


def quarantined(settings: Settings, ledger: Ledger, name: str, data: bytes, profile: str = "default") -> int:
    """A job the watcher set aside: its original and ``.error.txt`` in the quarantine folder."""
    spool = settings.spool_dir / profile / f"q-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    spool.mkdir(parents=True)
    (spool / name).write_bytes(data)
    job_id = ledger.add(profile=profile, name=name, inbox_path=settings.inbox / name, spool_path=spool / name,
                        size=len(data), mtime_ns=1, state=State.CLAIMED)
    quarantine_job(settings, ledger, ledger.get(job_id), "decode", "not audio", "recording")
    return job_id


def tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (never following a link) with its content's checksum."""
    found = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(top) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                found[rel] = "link -> " + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = "folder"
    return found


def assert_retry_outcome(settings: Settings, ledger: Ledger, job_id: int, data: bytes, response) -> None:
    """Either the ledger says it moved and the recording is in the real inbox, or it is still in
    quarantine with its note and the ledger still says so; never anything in between."""
    row = ledger.get(job_id)
    assert response.status_code in (200, 409), response.text
    if response.status_code == 200:
        name = response.json()["name"]
        assert row.quarantine_path is None
        assert Disposal.from_column(row.retention) == Disposal(Action.SENT_AGAIN, settings.inbox / name, "from the web page")
        assert (settings.inbox / name).read_bytes() == data
    else:
        assert "symbolic link" in response.json()["error"]
        assert row.state == State.QUARANTINED and row.quarantine_path is not None and row.retention is None
        assert row.quarantine_path.read_bytes() == data
        assert Path(f"{row.quarantine_path}.error.txt").exists()


# -- send again ---------------------------------------------------------------------------


def test_retry_while_the_folder_above_the_inbox_is_swapped_for_a_link_never_lands_outside(tmp_path):
    settings, outside, decoy = site(tmp_path)
    before = tree(outside)
    with page(settings) as client:
        ledger = Ledger(settings.ledger_path)
        try:
            jobs = {quarantined(settings, ledger, f"rec-{i}.wav", f"recording {i} ".encode() * 50): i for i in range(60)}
            token = csrf_of(client)
            swapper = AncestorSwapper(settings.inbox.parent, decoy)
            swapper.start()
            try:
                responses = {job_id: client.post(f"/api/jobs/{job_id}/retry", headers=unsafe_headers(client, token))
                             for job_id in jobs}
            finally:
                swapper.stop()
            assert swapper.swaps > 0
            assert tree(outside) == before, "something was written outside the inbox"
            for job_id, i in jobs.items():
                assert_retry_outcome(settings, ledger, job_id, f"recording {i} ".encode() * 50, responses[job_id])
            statuses = [r.status_code for r in responses.values()]
            assert 409 in statuses, "the race never hit: every open of the inbox found the real folder"
        finally:
            ledger.close()


def test_retry_into_a_profile_folder_that_is_a_link_is_refused_and_changes_nothing(tmp_path):
    settings, outside, _ = site(tmp_path, {"meetings": {"folder": "meetings"}})
    (settings.inbox / "meetings").symlink_to(outside)
    before = tree(outside)
    with page(settings) as client:
        ledger = Ledger(settings.ledger_path)
        try:
            job_id = quarantined(settings, ledger, "talk.wav", b"talk bytes", profile="meetings")
            response = client.post(f"/api/jobs/{job_id}/retry", headers=unsafe_headers(client, csrf_of(client)))
            assert response.status_code == 409 and "symbolic link" in response.json()["error"], response.text
            assert str(tmp_path) not in response.text  # no absolute paths in an answer
            assert_retry_outcome(settings, ledger, job_id, b"talk bytes", response)
        finally:
            ledger.close()
    assert tree(outside) == before


def test_retry_makes_a_missing_profile_folder_inside_the_inbox(tmp_path):
    settings, outside, _ = site(tmp_path, {"deep": {"folder": "team/notes"}})
    with page(settings) as client:
        ledger = Ledger(settings.ledger_path)
        try:
            job_id = quarantined(settings, ledger, "notes.wav", b"note bytes", profile="deep")
            response = client.post(f"/api/jobs/{job_id}/retry", headers=unsafe_headers(client, csrf_of(client)))
            assert response.status_code == 200, response.text
            assert (settings.inbox / "team" / "notes" / "notes.wav").read_bytes() == b"note bytes"
            assert not list((settings.quarantine / "deep").iterdir())
        finally:
            ledger.close()


def test_retry_never_replaces_a_file_and_keeps_the_recordings_inode(tmp_path):
    settings, _, _ = site(tmp_path)
    ledger = Ledger(settings.ledger_path)
    try:
        job_id = quarantined(settings, ledger, "talk.wav", b"quarantined bytes")
        inode = ledger.get(job_id).quarantine_path.stat().st_ino
        (settings.inbox / "talk.wav").write_bytes(b"someone else's")
        assert retry_quarantined(settings, ledger, job_id) == {"name": "talk (2).wav", "profile": "default"}
        assert (settings.inbox / "talk.wav").read_bytes() == b"someone else's"
        moved = settings.inbox / "talk (2).wav"
        assert moved.read_bytes() == b"quarantined bytes" and moved.stat().st_ino == inode  # renamed, not copied
        assert moved.stat().st_nlink == 1
    finally:
        ledger.close()


def test_a_retry_the_ledger_cannot_record_is_undone(tmp_path):
    """The ledger refuses the write (a real SQLite failure, raised by a trigger on this very
    connection): the recording goes back to quarantine and the ledger still says it is there."""
    settings, _, _ = site(tmp_path)
    ledger = Ledger(settings.ledger_path)
    try:
        job_id = quarantined(settings, ledger, "talk.wav", b"quarantined bytes")
        row = ledger.get(job_id)
        ledger._db.execute("CREATE TEMP TRIGGER refuse_retry BEFORE UPDATE OF retention ON main.jobs "
                           "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END")
        with pytest.raises(UploadError) as refused:
            retry_quarantined(settings, ledger, job_id)
        assert refused.value.status == 503 and "undone" in refused.value.message
        assert row.quarantine_path.read_bytes() == b"quarantined bytes"
        assert Path(f"{row.quarantine_path}.error.txt").exists()
        assert list(settings.inbox.iterdir()) == []
        after = ledger.get(job_id)
        assert (after.state, after.quarantine_path, after.retention) == (State.QUARANTINED, row.quarantine_path, None)
        assert ledger.uploads.pending() == []
        ledger._db.execute("DROP TRIGGER refuse_retry")
        assert retry_quarantined(settings, ledger, job_id)["name"] == "talk.wav"
    finally:
        ledger.close()


def test_retry_across_filesystems_copies_verified_then_removes_the_quarantined_file(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second filesystem (/dev/shm) beside the temp folder")
    other = Path(os.path.realpath(shm)) / f"hushdrop-test-{os.getpid()}-{random.randrange(1 << 30)}"
    other.mkdir()
    try:
        raw = {"inbox": str(other / "inbox"), "outbox": str(tmp_path / "outbox"), "workdir": str(tmp_path / "work"),
               "profiles": {"default": {}}}
        settings = parse_config(raw, tmp_path / "config.yaml")
        ledger = Ledger(settings.ledger_path)
        try:
            job_id = quarantined(settings, ledger, "talk.wav", b"bytes on another disk" * 1000)
            source = ledger.get(job_id).quarantine_path
            assert retry_quarantined(settings, ledger, job_id)["name"] == "talk.wav"
            assert (settings.inbox / "talk.wav").read_bytes() == b"bytes on another disk" * 1000
            assert not source.exists() and not Path(f"{source}.error.txt").exists()
            assert [p.name for p in settings.inbox.iterdir()] == ["talk.wav"]  # no hidden copy left
        finally:
            ledger.close()
    finally:
        for path in sorted(other.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        other.rmdir()


# -- delete ----------------------------------------------------------------------------------


def test_delete_acts_on_the_quarantine_folder_itself_never_through_a_link(tmp_path):
    settings, outside, _ = site(tmp_path)
    with page(settings) as client:
        ledger = Ledger(settings.ledger_path)
        try:
            job_id = quarantined(settings, ledger, "keep.wav", b"quarantined bytes")
            folder = ledger.get(job_id).quarantine_path.parent
            folder.rename(folder.with_name("default.real"))
            folder.symlink_to(outside)  # outside/keep.wav now answers to the quarantined path
            before = tree(outside)
            response = client.post(f"/api/jobs/{job_id}/delete", headers=unsafe_headers(client, csrf_of(client)))
            assert response.status_code == 409 and "symbolic link" in response.json()["error"], response.text
            assert tree(outside) == before
            assert ledger.get(job_id).retention is None
        finally:
            ledger.close()


# -- the property: whatever the page is asked, nothing outside the inbox changes ------------------


def _random_upload_name(rng: random.Random) -> str:
    pieces = ["../", "..", "/", "\\", ".", "-", "~$", "x", "talk", "\u202e", "\n", " ", "会议", ".hushdrop-upload-"]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) + rng.choice([".wav", ".mp3", ".txt", ""])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_property_nothing_outside_the_inbox_ever_changes_through_the_page(tmp_path, seed):
    """Random uploads (hostile names, missing folders), retries and deletes, while a folder
    above the inbox is swapped for a link in a loop, with a profile folder (or the folder above
    one) that is a link for two of the seeds: afterwards every file outside the inbox is as it
    was, no answer was a 500, and every recording is exactly where the ledger and the answers say."""
    rng = random.Random(seed)
    profiles = {"meetings": {"folder": "meetings"}, "deep": {"folder": "team/notes"}}
    settings, outside, decoy = site(tmp_path, profiles)
    for i in range(4):
        (outside / f"keep-{i}.wav").write_bytes(f"outside {i}".encode())
    (outside / "inbox" / "meetings").mkdir()
    (outside / "inbox" / "meetings" / "theirs.wav").write_bytes(b"not hushdrop's either")
    linked = [None, "meetings", "team"][seed % 3]
    if linked:
        (settings.inbox / linked).symlink_to(outside)
    before = tree(outside)
    swapper = AncestorSwapper(settings.inbox.parent, decoy)
    recordings: dict[int, bytes] = {}
    uploaded: dict[tuple[str, str], bytes] = {}
    outcomes: dict[int, str] = {}
    with page(settings) as client:
        ledger = Ledger(settings.ledger_path)
        try:
            for i in range(8):
                data = f"quarantined {seed}-{i} ".encode() * rng.randint(1, 40)
                recordings[quarantined(settings, ledger, f"q{i}.wav", data, rng.choice(["default", *profiles]))] = data
            token = csrf_of(client)
            headers = unsafe_headers(client, token)
            swapper.start()
            try:
                for _ in range(30):
                    action = rng.choice(["upload", "upload", "retry", "retry", "delete"])
                    if action == "upload":
                        profile = rng.choice(["default", *profiles])
                        data = os.urandom(rng.randint(1, 3000))
                        response = client.post("/api/uploads", params={"profile": profile, "name": _random_upload_name(rng)},
                                               content=data, headers=headers)
                        assert response.status_code in (201, 400, 409, 415), response.text
                        if response.status_code == 201:
                            uploaded[(profile, response.json()["name"])] = data
                    else:
                        job_id = rng.choice(list(recordings))
                        response = client.post(f"/api/jobs/{job_id}/{action}", headers=headers)
                        assert response.status_code in (200, 409), response.text
                        if response.status_code == 200:
                            outcomes[job_id] = response.json().get("name", "deleted")
            finally:
                swapper.stop()
            assert tree(outside) == before, "something outside the inbox changed"
            for job_id, data in recordings.items():
                row = ledger.get(job_id)
                if job_id not in outcomes:
                    assert row.quarantine_path is not None and row.quarantine_path.read_bytes() == data
                elif outcomes[job_id] == "deleted":
                    assert row.quarantine_path is None
                    assert Disposal.from_column(row.retention).action == Action.SHREDDED
                else:
                    folder = settings.inbox / (settings.profiles[row.profile].folder or "")
                    assert row.quarantine_path is None
                    assert Disposal.from_column(row.retention) == Disposal(
                        Action.SENT_AGAIN, folder / outcomes[job_id], "from the web page")
                    assert (folder / outcomes[job_id]).read_bytes() == data
            for (profile, name), data in uploaded.items():
                folder = settings.inbox / (settings.profiles[profile].folder or "")
                assert (folder / name).read_bytes() == data
        finally:
            ledger.close()


def test_retry_of_a_quarantined_recording_swapped_for_a_link_is_a_409_and_moves_nothing(tmp_path):
    settings, outside, _ = site(tmp_path)
    with page(settings) as client:
        ledger = Ledger(settings.ledger_path)
        try:
            job_id = quarantined(settings, ledger, "talk.wav", b"talk bytes")
            kept = ledger.get(job_id).quarantine_path
            kept.unlink()
            kept.symlink_to(outside / "keep.wav")
            before = tree(outside)
            response = client.post(f"/api/jobs/{job_id}/retry", headers=unsafe_headers(client, csrf_of(client)))
            assert response.status_code == 409 and "symbolic link" in response.json()["error"], response.text
            assert kept.is_symlink() and ledger.get(job_id).state == State.QUARANTINED
            assert not [p for p in settings.inbox.rglob("*") if p.is_file()]
            assert tree(outside) == before
        finally:
            ledger.close()
