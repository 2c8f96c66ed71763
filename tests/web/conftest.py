"""Shared pieces of the web page's tests: a real app on a temp config, jobs in a real ledger
with real outputs, and a real ``hushdrop web`` / ``hushdrop watch`` process on a free port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from hushdrop.pipeline.config import Settings, parse_config
from hushdrop.pipeline.audio import AudioFacts
from hushdrop.pipeline.job import Event, Job, Segment, StageRecord, Transcript, Word
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.watch.finish import commit_job
from tests.harness import REPO, WatchRun, base_config, cheap_wav, wait_for  # noqa: F401 (re-exported for these tests)

BASE = "http://127.0.0.1:8765"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web_settings(root: Path, web: dict | None = None, **profile: Any) -> Settings:
    raw = {"profiles": {"default": {"originals": "shred", **profile}}, "web": {"listen": "127.0.0.1:8765", **(web or {})}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    return parse_config(raw, root / "config.yaml")


def client_for(settings: Settings, base_url: str = BASE, peer: str | None = None, **kwargs) -> TestClient:
    """A test client for the app; its requests come from ``peer``, by default from where a real
    connection to ``base_url`` would: 127.0.0.1 for a loopback URL, a LAN address otherwise."""
    from urllib.parse import urlsplit

    from hushdrop.pipeline.web.address import is_loopback
    from hushdrop.pipeline.web.app import create_app

    if peer is None:
        peer = "127.0.0.1" if is_loopback(urlsplit(base_url).hostname or "") else "192.0.2.99"
    return TestClient(create_app(settings, **kwargs), base_url=base_url, follow_redirects=False, client=(peer, 50000))


def csrf_of(client: TestClient, path: str = "/") -> str:
    html = client.get(path).text
    found = re.search(r'data-csrf="([^"]+)"', html) or re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def unsafe_headers(client: TestClient, token: str, base_url: str = BASE) -> dict[str, str]:
    return {"Origin": base_url, "X-CSRF-Token": token}


def sample_job(name: str = "meeting.wav", texts: tuple[str, ...] = ("Good morning everyone.", "The beans need more water."),
               language: str = "en") -> Job:
    segments = []
    start = 0.5
    for text in texts:
        words = []
        t = start
        for word in text.split():
            words.append(Word(start=round(t, 2), end=round(t + 0.4, 2), text=" " + word, probability=0.9))
            t += 0.5
        segments.append(Segment(start=start, end=round(t, 2), text=text, words=words, language=language, raw_text=text.lower()))
        start = round(t + 1.0, 2)
    job = Job(
        source=Path(name), profile="default",
        facts=AudioFacts(path=name, size_bytes=1_021_484, container="wav", codec="pcm_s16le", duration_s=31.923,
                         sample_rate=16000, channels=1, decoded_s=31.923),
        transcript=Transcript(language=language, language_probability=0.97, segments=segments,
                              events=[Event(start=start, end=start + 4, kind="silence", source="vad")]),
        stages=[StageRecord("decode", {}, 0.12), StageRecord("transcribe", {"engine": "whisper"}, 4.5),
                StageRecord("tag", {"timestamps": True}, 0.01)],
        engine_info={"engine": "whisper", "model": "base", "device": "cpu"},
    )
    job.waveform = {"encoding": "u8-base64", "count": 4, "seconds": 31.923, "peaks": "AEB/gA=="}
    return job


def add_done_job(settings: Settings, ledger: Ledger, job: Job | None = None, *, language: str | None = None,
                 original: bytes = b"RIFF-audio-bytes") -> int:
    """A job that went all the way: a claimed original (``original``) in the spool, committed by
    the coordinator's own commit (real outputs in the outbox; the original disposed of by the
    profile's ``originals``), its row in state done."""
    job = job or sample_job()
    spool = settings.spool_dir / "default" / f"t{time.monotonic_ns()}" / job.source.name
    spool.parent.mkdir(parents=True)
    spool.write_bytes(original)
    st = os.lstat(spool)
    job_id = ledger.add(
        profile="default", name=job.source.name, inbox_path=settings.inbox / job.source.name, spool_path=spool,
        size=st.st_size, mtime_ns=st.st_mtime_ns, state="claimed", content_hash=os.urandom(8).hex(), language=language,
        device=st.st_dev, inode=st.st_ino,
    )
    row = commit_job(settings, ledger, ledger.start(job_id, "worker-test"), job)
    assert row.state == State.DONE, row
    return job_id


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return web_settings(tmp_path / "site")


@pytest.fixture
def client(settings: Settings):
    with client_for(settings) as c:
        yield c


@pytest.fixture
def ledger(settings: Settings, client):
    """A second connection to the app's ledger (the app made it), as the watcher would have."""
    led = Ledger(settings.ledger_path)
    yield led
    led.close()


class WebProcess:
    """``hushdrop web`` in its own process, on a free loopback port."""

    def __init__(self, root: Path, config: dict):
        self.root = root
        self.port = free_port()
        config.setdefault("web", {})["listen"] = f"127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "web.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WebProcess":
        with open(self.log, "wb") as stream:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(self.config_path), "web"],
                cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_for(lambda: "web page at" in self.log.read_text() or self.proc.poll() is not None, 60, "the web server")
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def keep_for_review(name: str, *, source: Path | None = None, text: str | None = None) -> None:
    """Copy a screenshot or a measured figure to $HUSHDROP_REVIEW_DIR, where a person looks at
    them; without that variable the test leaves nothing outside its tmp folder."""
    folder = os.environ.get("HUSHDROP_REVIEW_DIR")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    target = Path(folder) / name
    if source is not None:
        target.write_bytes(source.read_bytes())
    else:
        target.write_text(text or "")

