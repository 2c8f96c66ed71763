"""The shared test harness: real ``hushdrop`` processes on temp configs, and cheap real audio.

Tests and benchmarks both import it from here (never from a conftest or from each other):
``WatchRun`` runs a real ``hushdrop watch`` subprocess on a temp config and reads its
ledger and folders; ``hushdrop()`` runs any other command; ``wait_for`` polls a condition
instead of sleeping a fixed time.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile
import yaml

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("txt", "srt", "vtt", "json", "md")


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def cheap_wav(seed: int, seconds: float = 0.5) -> bytes:
    """A short, quiet, unique recording: the real chain runs on it in a fraction of a second
    (voice-activity detection finds no speech, so the engine is not even asked)."""
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(16000 * seconds)) * 1e-4).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class WatchRun:
    """A temp hushdrop installation: config, inbox, outbox, workdir, and its watcher process."""

    def __init__(self, root: Path, config: dict):
        self.root = root
        self.config = config
        self.config_path = root / "config.yaml"
        root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config))
        self.inbox = root / "inbox"
        self.outbox = root / "outbox"
        self.workdir = root / ".hushdrop"
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    # -- the process ----------------------------------------------------------------

    def start(self, *extra: str, wait_ready: bool = True) -> "WatchRun":
        log = self.root / f"watch-{len(self.logs) + 1}.log"
        self.logs.append(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as stream:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(self.config_path), "watch", *extra],
                cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, env=env,
            )
        if wait_ready:
            wait_for(lambda: "ready:" in self.log_text() or self._dead(), 90, "the worker to load the model")
            assert self.proc.poll() is None, self.log_text()
        return self

    def _dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log_text(self) -> str:
        return self.logs[-1].read_text(errors="replace") if self.logs else ""

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs)

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.wait_children_gone()
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.wait_children_gone()

    def wait_children_gone(self) -> None:
        """Workers die with the watcher (PR_SET_PDEATHSIG); make sure before the next start."""
        pid = self.proc.pid if self.proc else None
        if pid is None:
            return

        def gone() -> bool:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        status = (entry / "status").read_text()
                    except OSError:
                        continue
                    if f"\nPPid:\t{pid}\n" in status and "State:\tZ" not in status:
                        return False
            return True

        wait_for(gone, 20, "worker processes to exit")

    # -- what is on disk ---------------------------------------------------------------

    def jobs(self) -> list[dict]:
        path = self.workdir / "ledger.sqlite3"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            # names and paths are stored as the filesystem's bytes
            return [
                {k: os.fsdecode(v) if isinstance(v, bytes) else v for k, v in dict(r).items()}
                for r in db.execute("SELECT * FROM jobs ORDER BY id")
            ]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def service(self) -> dict:
        import json

        path = self.workdir / "ledger.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM service")}
        except sqlite3.OperationalError:
            return {}
        finally:
            db.close()

    def done_names(self, profile: str | None = None) -> list[str]:
        return [j["name"] for j in self.jobs() if j["state"] == "done" and (profile is None or j["profile"] == profile)]

    def outputs(self, profile: str = "default") -> list[Path]:
        folder = self.outbox / profile
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def output_sets(self, profile: str = "default") -> dict[str, set[str]]:
        """stem → formats present (visible files only)."""
        sets: dict[str, set[str]] = {}
        for path in self.outputs(profile):
            if path.name.startswith("."):
                continue
            stem, _, fmt = path.name.rpartition(".")
            sets.setdefault(stem, set()).add(fmt)
        return sets

    def temp_files(self) -> list[Path]:
        found = []
        for base in (self.outbox, self.workdir / "quarantine", self.workdir / "tmp", self.workdir / "spool"):
            if base.is_dir():
                found += [p for p in base.rglob("*") if p.name.startswith(".") or p.parent.name.startswith("job-")]
        return found

    def spool_files(self) -> list[Path]:
        spool = self.workdir / "spool"
        return [p for p in spool.rglob("*") if p.is_file()] if spool.is_dir() else []

    def drop(self, name: str, data: bytes, folder: str = "") -> Path:
        target = self.inbox / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target


def base_config(**top: Any) -> dict:
    profile = top.pop("profile", {})
    profiles = top.pop("profiles", {})
    return {
        "workers": 1,
        "poll_seconds": 0.5,
        "rescan_seconds": 30,
        "heartbeat_seconds": 1,
        "retry_backoff_seconds": 0.5,
        "shutdown_grace_seconds": 30,
        **top,
        "profiles": {"default": {"settle_seconds": 1, "originals": "shred", **profile}, **profiles},
    }


def make_config(root: Path, originals: str = "shred") -> Path:
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"profiles": {"default": {"originals": originals}}}))
    return config


def hushdrop(config: Path, *args: str, prefix: tuple[str, ...] = (), timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
