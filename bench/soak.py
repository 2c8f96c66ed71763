"""Soak: a watcher fed a mix of recordings for N minutes; every resource curve must stay flat.

Every few seconds one file is dropped, in a fixed rotation: speech (the test clip, each
copy made unique by a few samples of noise), silence, a corrupt file, an empty file and a
duplicate of an earlier speech file. Every minute the watcher and its workers are
sampled: RSS, open file descriptors, threads, the ledger's size, the spool and
temp-folder sizes. At the end: each good file was transcribed exactly once, each bad one
quarantined exactly once, each duplicate skipped; the slope of every curve after the
warm-up (first third) is reported per hour.

    .venv/bin/python -m bench.soak --minutes 60 --every 4 --out bench/results/soak.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import WatchRun, base_config, cheap_wav, wait_for  # noqa: E402

SPEECH = REPO / "tests" / "data" / "speech_en.wav"
KINDS = ("speech", "silence", "corrupt", "speech", "empty", "duplicate")


def unique_speech(seed: int) -> bytes:
    samples, rate = soundfile.read(SPEECH, dtype="float32")
    samples = samples.copy()
    samples[:64] += np.random.default_rng(seed).standard_normal(64).astype(np.float32) * 1e-4
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def sample(run: WatchRun, started: float) -> dict:
    watcher = psutil.Process(run.proc.pid)
    workers = [c for c in watcher.children() if "spawn_main" in " ".join(c.cmdline())]
    procs = [watcher, *workers]
    ledger = run.workdir / "ledger.sqlite3"
    return {
        "minute": round((time.monotonic() - started) / 60, 2),
        "watcher_rss_mib": round(watcher.memory_info().rss / 2**20, 1),
        "workers_rss_mib": round(sum(p.memory_info().rss for p in workers) / 2**20, 1),
        "open_fds": sum(p.num_fds() for p in procs),
        "threads": sum(p.num_threads() for p in procs),
        "ledger_kib": round(sum(Path(f"{ledger}{s}").stat().st_size for s in ("", "-wal") if Path(f"{ledger}{s}").exists()) / 1024, 1),
        "spool_kib": round(folder_bytes(run.workdir / "spool") / 1024, 1),
        "tmp_kib": round(folder_bytes(run.workdir / "tmp") / 1024, 1),
        "jobs": len(run.jobs()),
    }


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    x = np.array([p[0] for p in points]) / 60.0
    y = np.array([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def soak(minutes: float, every: float, root: Path, log=print) -> dict:
    run = WatchRun(root, base_config(profile={"settle_seconds": 1, "originals": "shred"}, heartbeat_seconds=5))
    run.start()
    started = time.monotonic()
    deadline = started + minutes * 60
    dropped: dict[str, str] = {}
    samples = [sample(run, started)]
    next_sample = started + 60
    i = 0
    first_speech: bytes | None = None
    while time.monotonic() < deadline:
        kind = KINDS[i % len(KINDS)]
        name = f"{i:05d}-{kind}.wav"
        if kind == "speech":
            data = unique_speech(i)
            first_speech = first_speech or data
        elif kind == "silence":
            data = cheap_wav(10_000 + i, seconds=5)
        elif kind == "corrupt":
            data = b"RIFF" + np.random.default_rng(i).bytes(20_000)
        elif kind == "empty":
            data = b""
        else:
            data = first_speech or unique_speech(0)
        run.drop(name, data)
        dropped[name] = kind
        i += 1
        pause_until = time.monotonic() + every
        while time.monotonic() < pause_until:
            if time.monotonic() >= next_sample:
                samples.append(sample(run, started))
                next_sample += 60
                log(json.dumps(samples[-1]))
            time.sleep(0.2)
    wait_for(lambda: all(j["state"] in ("done", "quarantined") for j in run.jobs()) and len(run.jobs()) >= len(dropped),
             600, "the last files", interval=1.0)
    samples.append(sample(run, started))
    jobs = run.jobs()
    assert run.stop() == 0, run.log_text()[-2000:]
    by_name: dict[str, list[dict]] = {}
    for job in jobs:
        by_name.setdefault(job["name"], []).append(job)
    outcome = {"good_once": 0, "bad_quarantined_once": 0, "duplicates_skipped": 0, "wrong": []}
    for name, kind in dropped.items():
        rows = by_name.get(name, [])
        if kind in ("speech", "silence") and [r["state"] for r in rows] == ["done"] and rows[0]["duplicate_of"] is None:
            outcome["good_once"] += 1
        elif kind in ("corrupt", "empty") and [r["state"] for r in rows] == ["quarantined"]:
            outcome["bad_quarantined_once"] += 1
        elif kind == "duplicate" and [r["state"] for r in rows] == ["done"] and rows[0]["duplicate_of"] is not None:
            outcome["duplicates_skipped"] += 1
        else:
            outcome["wrong"].append({"name": name, "kind": kind, "rows": [r["state"] for r in rows]})
    warm = [s for s in samples if s["minute"] >= minutes / 3]
    slopes = {
        key: round(slope_per_hour([(s["minute"], s[key]) for s in warm]), 2)
        for key in ("watcher_rss_mib", "workers_rss_mib", "open_fds", "threads", "ledger_kib", "spool_kib", "tmp_kib")
    }
    return {
        "minutes": minutes, "every_s": every, "files": len(dropped), "outcome": outcome,
        "slopes_per_hour_after_warmup": slopes, "samples": samples,
        "ledger_bytes_per_job": round(samples[-1]["ledger_kib"] * 1024 / max(1, samples[-1]["jobs"])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--every", type=float, default=4.0, help="seconds between two dropped files")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hushdrop-soak-") as tmp:
        result = soak(args.minutes, args.every, Path(tmp) / "site", log=lambda line: print(line, file=sys.stderr, flush=True))
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0 if not result["outcome"]["wrong"] else 1


if __name__ == "__main__":
    sys.exit(main())
