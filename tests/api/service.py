"""A real ``hushdrop watch`` serving the page and the API on a free loopback port, with the
bundled model and a token made by the real ``hushdrop api add-token``: what the API's client
tests (tests/api/test_openai_client.py, tests/api/test_bazarr.py) talk to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import soundfile

from tests.harness import WatchRun, base_config, hushdrop, wait_for
from tests.web.conftest import free_port

TOKEN = re.compile(r"hd-[A-Za-z0-9_-]{20,}")


@dataclass
class ApiService:
    run: WatchRun
    url: str  # http://127.0.0.1:PORT
    token: str

    def stop(self) -> None:
        code = self.run.stop()
        assert code == 0, self.run.log_text()

    def kept_recordings(self) -> list[Path]:
        """Files left in the inbox or the spool (a request's recording, once answered, is not)."""
        inbox = [p for p in self.run.inbox.rglob("*") if p.is_file()] if self.run.inbox.is_dir() else []
        return inbox + self.run.spool_files()

    def quarantined(self) -> list[Path]:
        folder = self.run.workdir / "quarantine"
        return [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".error.txt")] if folder.is_dir() else []


def start_api_service(root: Path, **api) -> ApiService:
    """``hushdrop watch`` with ``web`` and ``api`` enabled (``api``: more ``api:`` settings) and
    one token, called ``tests``, added through the CLI before the service starts."""
    port = free_port()
    run = WatchRun(root, base_config(web={"enabled": True, "listen": f"127.0.0.1:{port}"}, api={"enabled": True, **api}))
    added = hushdrop(run.config_path, "api", "add-token", "tests")
    assert added.returncode == 0, added.stderr
    found = TOKEN.search(added.stdout)
    assert found, added.stdout
    run.start()
    wait_for(lambda: "web page at" in run.log_text(), 30, "the web page")
    return ApiService(run, f"http://127.0.0.1:{port}", found.group())


def duration_of(path: Path) -> float:
    return soundfile.info(str(path)).duration
