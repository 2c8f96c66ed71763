"""Uploads: streamed to disk in chunks, capped, sanitised, renamed into the inbox without
replacing anything, and their language handed to the job through the ledger."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest

from hushdrop.pipeline.watch.intake import claim
from hushdrop.pipeline.watch.ledger import Ledger
from hushdrop.pipeline.web.uploads import TEMP_PREFIX, sanitize_name, sweep_stale
from tests.helpers import SPEECH_EN
from tests.web.conftest import WebProcess, client_for, csrf_of, keep_for_review, rss_kib, unsafe_headers, web_settings


def upload(client, token, data, name="talk.wav", **params):
    return client.post(
        "/api/uploads", params={"name": name, **params}, content=data, headers=unsafe_headers(client, token),
    )


def inbox_files(settings, folder="") -> list[Path]:
    base = settings.inbox / folder
    return sorted(p for p in base.iterdir() if p.is_file()) if base.is_dir() else []


def test_an_upload_is_streamed_into_the_profile_folder_under_its_name(client, settings):
    token = csrf_of(client)
    data = SPEECH_EN.read_bytes()
    response = upload(client, token, data, name="Weekly meeting.wav", language="en")
    assert response.status_code == 201, response.text
    assert response.json() == {"name": "Weekly meeting.wav", "profile": "default", "language": "en", "size": len(data)}
    [placed] = inbox_files(settings)
    assert placed.name == "Weekly meeting.wav" and placed.read_bytes() == data
    assert stat.S_IMODE(placed.stat().st_mode) == 0o600  # a private recording stays private
    assert not [p for p in settings.inbox.iterdir() if p.name.startswith(".")], "no temp file is left behind"
    ledger = Ledger(settings.ledger_path)
    try:
        [row] = ledger.uploads.pending()
        assert (row["inbox_path"], row["profile"], row["language"]) == (placed, "default", "en")
    finally:
        ledger.close()


@pytest.mark.parametrize("raw, expected", [
    ("../../etc/passwd.wav", "passwd.wav"),
    ("/abs/path/x.wav", "x.wav"),
    ("C:\\Users\\me\\Desktop\\memo.m4a", "memo.m4a"),
    (".hidden.wav", "hidden.wav"),
    ("-rf.wav", "rf.wav"),
    ("--help.mp3", "help.mp3"),
    ("a\x00b\x1f\x7fc.wav", "abc.wav"),
    ("evil\u202egnp.wav", "evilgnp.wav"),  # a right-to-left override cannot disguise the name
    ("line\nbreak.wav", "linebreak.wav"),
    ("  spaced   out .wav ", "spaced out.wav"),
    ("..", "recording"),
    ("what?:*<>|.wav", "what______.wav"),
    ("会议 记录.wav", "会议 记录.wav"),
    ("x" * 400 + ".wav", "x" * 196 + ".wav"),  # 200 bytes in all
])
def test_names_are_sanitised(raw, expected):
    assert sanitize_name(raw) == expected


def test_a_hostile_name_lands_in_the_profile_folder_and_nowhere_else(client, settings, tmp_path):
    token = csrf_of(client)
    for raw in ("../../../outside.wav", "/tmp/abs.wav", "..\\..\\win.wav", ".hushdrop-upload-x.wav", "~$lock.wav"):
        assert upload(client, token, b"RIFF0000WAVE", name=raw).status_code == 201, raw
    names = sorted(p.name for p in inbox_files(settings))
    assert names == ["abs.wav", "hushdrop-upload-x.wav", "outside.wav", "upload ~$lock.wav", "win.wav"]
    assert not (tmp_path / "outside.wav").exists() and not Path("/tmp/abs.wav").exists()


def test_an_upload_never_replaces_a_file_already_in_the_inbox(client, settings):
    token = csrf_of(client)
    settings.inbox.mkdir(parents=True, exist_ok=True)
    (settings.inbox / "talk.wav").write_bytes(b"someone else's")
    assert upload(client, token, b"first", name="talk.wav").json()["name"] == "talk (2).wav"
    assert upload(client, token, b"second", name="talk.wav").json()["name"] == "talk (3).wav"
    assert (settings.inbox / "talk.wav").read_bytes() == b"someone else's"


def test_unknown_profiles_extensions_and_languages_are_refused(client, settings):
    token = csrf_of(client)
    assert upload(client, token, b"x", profile="../default").status_code == 400
    assert upload(client, token, b"x", profile="nope").status_code == 400
    refused = upload(client, token, b"x", name="notes.txt")
    assert refused.status_code == 415 and "accepted" in refused.json()["error"]
    assert upload(client, token, b"x", language="klingon").status_code == 400
    assert upload(client, token, b"", name="empty.wav").status_code == 400
    assert inbox_files(settings) == []


def test_the_size_cap_holds_by_declared_length_and_by_counting(tmp_path):
    settings = web_settings(tmp_path / "site", {"max_upload_mb": 1})
    with client_for(settings) as client:
        token = csrf_of(client)
        declared = upload(client, token, b"\0" * (1024 * 1024 + 1))
        assert declared.status_code == 413, declared.text

        def chunks():  # no Content-Length: the server counts as it goes
            for _ in range(40):
                yield b"\0" * 65536

        counted = client.post("/api/uploads", params={"name": "big.wav"}, content=chunks(), headers=unsafe_headers(client, token))
        assert counted.status_code == 413, counted.text
        assert upload(client, token, b"\0" * (1024 * 1024)).status_code == 201  # exactly the limit is fine
    assert [p.name for p in inbox_files(settings)] == ["talk.wav"]
    assert not [p for p in settings.inbox.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_the_chosen_language_reaches_the_job_through_the_ledger(client, settings, ledger):
    token = csrf_of(client)
    assert upload(client, token, SPEECH_EN.read_bytes(), name="cantonese.wav", language="yue").status_code == 201
    assert upload(client, token, SPEECH_EN.read_bytes()[:-2], name="plain.wav").status_code == 201
    claimed = {}
    for name in ("cantonese.wav", "plain.wav"):
        path = settings.inbox / name
        claimed[name] = claim(settings, ledger, path, settings.profile("default"), os.lstat(path))
    assert claimed["cantonese.wav"].language == "yue"
    assert claimed["plain.wav"].language is None  # the profile's own language applies
    assert ledger.uploads.pending() == []  # consumed at the claim


def test_a_file_put_where_an_upload_was_does_not_inherit_its_language(client, settings, ledger):
    token = csrf_of(client)
    assert upload(client, token, b"RIFF", name="a.wav", language="de").status_code == 201
    path = settings.inbox / "a.wav"
    uploaded = os.stat(path)
    path.unlink()
    path.write_bytes(b"RIFF")  # another file under the same name: same size, here even the same inode
    # written later than the upload, as a real replacement is (set, not slept for: a coarse clock ticks slowly)
    os.utime(path, ns=(uploaded.st_atime_ns, uploaded.st_mtime_ns + 10_000_000))
    row = claim(settings, ledger, path, settings.profile("default"), os.lstat(path))
    assert row.language is None


def test_stale_upload_temp_files_are_swept_and_fresh_ones_kept(settings):
    settings.inbox.mkdir(parents=True)
    old = settings.inbox / f"{TEMP_PREFIX}old.partial"
    fresh = settings.inbox / f"{TEMP_PREFIX}fresh.partial"
    other = settings.inbox / ".syncthing.x.tmp"
    for path in (old, fresh, other):
        path.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert sweep_stale(settings) == 1
    assert not old.exists() and fresh.exists() and other.exists()


def test_a_1_gb_upload_does_not_raise_the_servers_memory(tmp_path):
    """A real `hushdrop web` process; a 1 GB sparse file streamed to it; its RSS sampled throughout."""
    root = tmp_path / "site"
    server = WebProcess(root, {"profiles": {"default": {"originals": "shred"}}, "web": {"max_upload_mb": 2048}}).start()
    sparse = tmp_path / "sparse.wav"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
    try:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            token = csrf_of(http)
            headers = {"Origin": server.url, "X-CSRF-Token": token}
            assert http.post("/api/uploads", params={"name": "warm.wav"}, content=b"\0" * 4096, headers=headers).status_code == 201
            time.sleep(0.5)
            before = rss_kib(server.proc.pid)
            peak = [before]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_kib(server.proc.pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            started = time.monotonic()
            try:
                with open(sparse, "rb") as body:
                    response = http.post("/api/uploads", params={"name": "big.wav"}, content=body,
                                         headers={**headers, "Content-Length": str(1 << 30)})
            finally:
                stop.set()
                sampler.join()
            seconds = time.monotonic() - started
            after = rss_kib(server.proc.pid)
        assert response.status_code == 201, response.text
        placed = root / "inbox" / "big.wav"
        assert placed.stat().st_size == 1 << 30
        rise_mib = (peak[0] - before) / 1024
        report = (f"1 GiB upload in {seconds:.1f} s: server RSS {before / 1024:.1f} MiB before, peak {peak[0] / 1024:.1f} MiB, "
                  f"{after / 1024:.1f} MiB after: rise {rise_mib:.1f} MiB")
        print(report)
        (tmp_path / "rss.txt").write_text(report + "\n")
        keep_for_review("upload-rss.txt", text=report + "\n")
        assert rise_mib < 50, report
    finally:
        server.stop()
        (root / "inbox" / "big.wav").unlink(missing_ok=True)


def test_uploads_are_refused_while_nobody_is_logged_in_off_loopback(tmp_path):
    from hushdrop.pipeline.web.security import hash_password

    settings = web_settings(tmp_path / "site", {"listen": "0.0.0.0:8765", "password_hash": hash_password("correct horse", n=2**10)})
    with client_for(settings, base_url="http://192.0.2.10:8765") as client:
        token = csrf_of(client, "/login")
        response = client.post("/api/uploads", params={"name": "x.wav"}, content=b"RIFF",
                               headers={"Origin": "http://192.0.2.10:8765", "X-CSRF-Token": token})
        assert response.status_code == 401
    assert not settings.inbox.exists() or inbox_files(settings) == []


def _site_with_profile_folder(tmp_path: Path, folder: str):
    raw = {"inbox": str(tmp_path / "box" / "inbox"), "outbox": str(tmp_path / "outbox"), "workdir": str(tmp_path / "work"),
           "profiles": {"default": {}, "meetings": {"folder": folder}}, "web": {"listen": "127.0.0.1:8765"}}
    from hushdrop.pipeline.config import parse_config

    return parse_config(raw, tmp_path / "config.yaml")


@pytest.mark.parametrize("where", ["the folder above the inbox", "a folder inside the inbox"])
def test_an_upload_to_a_missing_profile_folder_makes_no_folder_through_a_link(tmp_path, where):
    outside = tmp_path / "outside"
    (outside / "inbox").mkdir(parents=True)
    if where == "the folder above the inbox":
        (tmp_path / "box").symlink_to(outside)  # box/inbox/meetings would be outside/inbox/meetings
        settings = _site_with_profile_folder(tmp_path, "meetings")
    else:
        (tmp_path / "box" / "inbox").mkdir(parents=True)
        (tmp_path / "box" / "inbox" / "team").symlink_to(outside)  # team/notes would be outside/notes
        settings = _site_with_profile_folder(tmp_path, "team/notes")
    with client_for(settings) as client:
        response = upload(client, csrf_of(client), b"RIFF0000WAVE", profile="meetings")
    assert sorted(str(p.relative_to(outside)) for p in outside.rglob("*")) == ["inbox"], "a folder was made outside"
    assert response.status_code == 409, response.text
    assert "symbolic link" in response.json()["error"] and str(tmp_path) not in response.text


def test_an_upload_makes_missing_inbox_and_profile_folders_inside_the_inbox(tmp_path):
    settings = _site_with_profile_folder(tmp_path, "team/notes")
    (tmp_path / "box").mkdir()  # the inbox itself does not exist yet
    with client_for(settings) as client:
        response = upload(client, csrf_of(client), b"RIFF0000WAVE", profile="meetings")
    assert response.status_code == 201, response.text
    assert (settings.inbox / "team" / "notes" / "talk.wav").read_bytes() == b"RIFF0000WAVE"
