"""A coordinator and `hushdrop worker` processes on one machine, sharing only the spool.

Each worker has its own config and workdir (its private temp audio) and reads the
coordinator's spool, as a GPU box reads a NAS share. Shared by the scale-out tests and
bench/scaleout.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests.harness import REPO, WatchRun, base_config, wait_for


class Cluster:
    def __init__(self, root: Path, broker_url: str, lease_seconds: float = 3.0, **top):
        self.root = root
        self.broker_url = broker_url
        self.lease_seconds = lease_seconds
        self.coordinator = WatchRun(
            root / "coordinator",
            base_config(executor="celery", broker_url=broker_url, lease_seconds=lease_seconds, **top),
        )
        self.workers: dict[str, subprocess.Popen] = {}
        self.worker_logs: dict[str, Path] = {}

    @property
    def spool(self) -> Path:
        return self.coordinator.workdir / "spool"

    def worker_root(self, name: str) -> Path:
        return self.root / f"worker-{name}"

    def start_coordinator(self) -> WatchRun:
        self.coordinator.start(wait_ready=False)
        wait_for(lambda: "executor: celery" in self.coordinator.log_text() or self.coordinator._dead(), 60, "the coordinator")
        assert self.coordinator.proc.poll() is None, self.coordinator.log_text()
        return self.coordinator

    def start_worker(self, name: str, queues: str = "hushdrop", config: Path | None = None) -> subprocess.Popen:
        """A `hushdrop worker` with a config of its own (a GPU box's), or with ``config``: the
        coordinator's, as on the coordinator's own machine."""
        root = self.worker_root(name)
        root.mkdir(parents=True, exist_ok=True)
        if config is None:
            config = root / "config.yaml"
            config.write_text(yaml.safe_dump({
                "workdir": str(root / ".hushdrop"), "inbox": str(root / "inbox"), "outbox": str(root / "outbox"),
                "spool": str(self.spool), "broker_url": self.broker_url, "lease_seconds": self.lease_seconds,
                "profiles": {"default": {}},
            }))
        log = root / f"worker-{sum(1 for p in root.glob('worker-*.log')) + 1}.log"
        self.worker_logs[name] = log
        with open(log, "wb") as stream:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(config), "worker", "--name", name,
                 "--queues", queues],
                cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.workers[name] = proc
        wait_for(lambda: "ready:" in log.read_text(errors="replace") or proc.poll() is not None, 90, f"worker {name}")
        assert proc.poll() is None, log.read_text(errors="replace")
        return proc

    def kill_worker(self, name: str) -> None:
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def worker_log(self, name: str) -> str:
        return self.worker_logs[name].read_text(errors="replace")

    def close(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.workers.clear()
        if self.coordinator.proc is not None and self.coordinator.proc.poll() is None:
            self.coordinator.stop()
