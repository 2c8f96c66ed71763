"""Seconds from the end of a copy to the claim, in events and in polling mode.

A file is copied into the inbox in chunks over about a second; the clock stops
when the ledger records the claim (``claimed_at``). The claim cannot come before
the settle period has passed with the file unchanged, so the numbers are the
settle period plus the detection delay (inotify: the 0.2 s settle tick; polling:
up to ``poll_seconds`` more when the copy finishes between two polls).

    .venv/bin/python -m bench.watch_latency --samples 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import WatchRun, base_config, cheap_wav, wait_for  # noqa: E402


def measure(mode: str, settle: float, poll: float, samples: int, root: Path) -> dict:
    run = WatchRun(root, base_config(watch=mode, poll_seconds=poll, profile={"settle_seconds": settle}))
    run.start()
    latencies = []
    for i in range(samples):
        data = cheap_wav(500 + i, seconds=2.0)
        target = run.inbox / f"copy-{i}.wav"
        with open(target, "wb") as f:
            step = len(data) // 5 + 1
            for k in range(5):
                if k:
                    time.sleep(0.2)
                f.write(data[k * step:(k + 1) * step])
                f.flush()
        copy_end = time.time()  # the last write
        job = wait_for(lambda: next((j for j in run.jobs() if j["name"] == target.name and j["claimed_at"]), None), 60, "the claim")
        latencies.append(job["claimed_at"] - copy_end)
        wait_for(lambda: target.name in run.done_names(), 60, "the job")
        time.sleep(0.5 + (i % 3) * 0.37)  # start the next copy at a different phase of the poll
    run.stop()
    return {
        "mode": mode, "settle_seconds": settle, "poll_seconds": poll,
        "latency_s": [round(x, 2) for x in latencies],
        "median_s": round(statistics.median(latencies), 2), "max_s": round(max(latencies), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--settle", type=float, nargs="+", default=[1.0, 5.0], help="settle periods to try (5 = default)")
    parser.add_argument("--poll", type=float, default=2.0, help="poll_seconds (2 = default)")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="hushdrop-latency-") as tmp:
        for settle in args.settle:
            for mode in ("events", "polling"):
                result = measure(mode, settle, args.poll, args.samples, Path(tmp) / f"{mode}-{settle}")
                print(json.dumps(result), flush=True)
                results.append(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
