"""Throughput of 40 short recordings: the local pool against a coordinator with Celery workers.

Side by side in one run, on this machine: ``executor: local, workers: 1``, then the
coordinator (``executor: celery``) with one and with two `hushdrop worker` processes and a
real Redis-compatible server (tests/redis_server.py). The clock runs from the moment the
files are in the inbox until the last one is done; every system gets the same 40 files
(5 s of real speech each, unique bytes). Also: the broker round trip (median PING and a
SET+GET of a lease-sized value) and the coordination overhead per job (the difference
between one Celery worker and one local worker, divided by the number of files).

    .venv/bin/python -m bench.scaleout --files 40
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

from tests.harness import WatchRun, base_config, speech_clip, wait_for  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.scaleout.cluster import Cluster  # noqa: E402


def timed_batch(run: WatchRun, files: dict[str, bytes]) -> float:
    staging = run.root / "staging"
    staging.mkdir(exist_ok=True)
    for name, data in files.items():
        (staging / name).write_bytes(data)
    run.inbox.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for name in files:
        (staging / name).rename(run.inbox / name)  # whole files appear at once
    wait_for(lambda: sum(j["state"] == "done" for j in run.jobs()) >= len(files), 1800, "the batch", interval=0.05)
    return time.perf_counter() - started


def broker_round_trip(server: RedisServer, samples: int = 200) -> dict:
    client = server.client()
    pings, leases = [], []
    value = json.dumps({"host": "h", "worker": "w", "pid": 1, "stage": "transcribe", "fraction": 0.5})
    for _ in range(samples):
        t = time.perf_counter()
        client.ping()
        pings.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.set("bench:lease", value, ex=10)
        client.get("bench:lease")
        leases.append(time.perf_counter() - t)
    return {"ping_ms": statistics.median(pings) * 1000, "set_get_ms": statistics.median(leases) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=5.0, help="speech per recording")
    args = parser.parse_args()
    files = {f"memo-{i:03d}.wav": speech_clip(i, args.seconds) for i in range(args.files)}
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hushdrop-scaleout-") as tmp:
        root = Path(tmp)
        local = WatchRun(root / "local", base_config(profile={"settle_seconds": 0.5}))
        local.start()
        try:
            results["local, workers: 1"] = timed_batch(local, files)
        finally:
            local.stop()
        with RedisServer() as server:
            rtt = broker_round_trip(server)
            for workers in (1, 2):
                client = server.client()
                client.flushall()
                cluster = Cluster(root / f"celery-{workers}", server.url, lease_seconds=10, profile={"settle_seconds": 0.5})
                try:
                    for n in range(workers):
                        cluster.start_worker(f"w{n + 1}")
                    run = cluster.start_coordinator()
                    results[f"celery, {workers} worker(s)"] = timed_batch(run, files)
                finally:
                    cluster.close()
    base = results["local, workers: 1"]
    print(f"{args.files} recordings of {args.seconds:.0f} s speech, whisper base, this machine:")
    print("| system | wall s | files/min | ratio to local |")
    print("|---|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.1f} | {args.files / seconds * 60:.1f} | {base / seconds:.2f}× |")
    overhead = (results["celery, 1 worker(s)"] - base) / args.files * 1000
    print(f"coordination overhead per job (celery 1 worker − local 1 worker): {overhead:.0f} ms")
    print(f"broker round trip: PING {rtt['ping_ms']:.2f} ms, lease SET+GET {rtt['set_get_ms']:.2f} ms (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
