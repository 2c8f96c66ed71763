"""RSS of the watcher process before and after 500 small files: it must stay flat.

The watcher (ledger, intake, settle tracker, scheduler) is measured on its own;
the worker process, which holds the model, is reported beside it.

    .venv/bin/python -m bench.watch_rss --files 500
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import WatchRun, base_config, cheap_wav, wait_for  # noqa: E402


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def worker_rss_mib(pid: int) -> float:
    return sum(c.memory_info().rss for c in psutil.Process(pid).children() if "spawn_main" in " ".join(c.cmdline())) / 2**20


def measure(files: int, root: Path, warmup: int = 30, log=print) -> dict:
    run = WatchRun(root, base_config(queue_limit=64, profile={"settle_seconds": 0.5}))
    run.start()
    pid = run.proc.pid
    for i in range(warmup):
        run.drop(f"warm-{i:03d}.wav", cheap_wav(100_000 + i))
    wait_for(lambda: len(run.done_names()) == warmup, 300, "the warm-up files", interval=0.5)
    time.sleep(2)
    before, worker_before = rss_mib(pid), worker_rss_mib(pid)
    log(f"after {warmup} warm-up files: watcher {before:.1f} MiB, worker {worker_before:.1f} MiB")
    started = time.monotonic()
    for i in range(files):
        run.drop(f"small-{i:04d}.wav", cheap_wav(i))
    samples = []
    marks: dict[int, float] = {}

    def finished() -> bool:
        samples.append(rss_mib(pid))
        done = len(run.done_names()) - warmup
        marks.setdefault(done // 100 * 100, samples[-1])
        return done == files

    wait_for(finished, 3600, f"{files} files", interval=1.0)
    seconds = time.monotonic() - started
    time.sleep(2)
    after, worker_after = rss_mib(pid), worker_rss_mib(pid)
    log(f"after {files} more files ({seconds:.0f} s): watcher {after:.1f} MiB (peak {max(samples):.1f}), worker {worker_after:.1f} MiB")
    run.stop()
    return {
        "files": files, "seconds": round(seconds, 1),
        "watcher_rss_mib_before": round(before, 1), "watcher_rss_mib_after": round(after, 1),
        "watcher_rss_mib_peak": round(max(samples), 1),
        "worker_rss_mib_before": round(worker_before, 1), "worker_rss_mib_after": round(worker_after, 1),
        "watcher_rss_mib_by_files_done": {k: round(v, 1) for k, v in sorted(marks.items())},
        "done": len(run.done_names()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hushdrop-rss-") as tmp:
        result = measure(args.files, Path(tmp) / "site")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
