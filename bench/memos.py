"""Many small files: 40 voice memos of 10-30 s through a real ``hushdrop watch``, two layouts side by side.

    .venv/bin/python -m bench.memos --memos 40 --rounds 2 --systems w1t2,w2t1
    .venv/bin/python -m bench.memos --lone 120 --rounds 2     # one longer recording: cpu_threads 2 vs 1

A system ``wNtM`` is ``workers: N`` with the transcribe stage's ``cpu_threads: M`` (``t0``:
CTranslate2's own choice, what config.yaml ships); ``auto`` is ``workers: auto`` with
``cpu_threads`` left to its rule (the number it chose is read from the watcher's log). Each system gets a fresh temp
installation (tests/harness.WatchRun: the real ``hushdrop watch`` subprocess, the ``default``
chain, originals shredded). Its workers load the model and each transcribes one warm-up
recording (tests/data, not a memo) before the clock starts; then the 40 memos are renamed
into the inbox at once (the drop) and the clock stops when the ledger has all 40 ``done``
(settle period included: 1 s, the same for every system). Systems alternate: round 1 in the
given order, round 2 reversed, and so on.

The memos are built at run time in a temporary folder from the held-out English clips
(``../shared/heldout``): whole clips joined with seeded 0.4-1.2 s pauses, each memo 10-30 s,
16 kHz mono WAV; every memo is unique (different clips or pauses, and one sample nudged),
so no memo is skipped as a duplicate. Nothing is copied into the repository.

Reported per run: wall seconds drop → all done, files per minute, audio seconds per wall
second, median seconds of the ``transcribe`` stage per memo (from each output's stage
records: how long one memo takes inside its worker), peak RSS of each worker process
(``VmHWM``, read just before the run stops) and the pooled WER of the 40 transcripts
(a check that the layouts decode alike, not a tuning target).

There is no batching *across* files in hushdrop: each worker runs one recording at a time.
``transcribe: {batch_size: N}`` batches the ≤30 s pieces *within* one recording's window
(docs/benchmarks.md), which a 10-30 s memo has one or two of; it is not measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import SAMPLE_RATE, Counts, load_manifest, machine, markdown_table, score  # noqa: E402
from bench.noise import decoded  # noqa: E402
from tests.harness import WatchRun, base_config, speech_clip, wait_for  # noqa: E402

CHAIN = ("normalize", "resample", "dehum", "denoise", "transcribe", "grammar", "tag")


def build_memos(folder: Path, count: int, seed: int = 13, shortest: float = 10.0, longest: float = 30.0) -> list[dict]:
    """``count`` memos of ``shortest``-``longest`` s from whole held-out English clips; returns
    ``{"path", "seconds", "reference"}`` for each."""
    rng = random.Random(seed)
    clips = [c for c in load_manifest(["en"]) if c.duration_s <= longest - 1.0]
    audio = {c.id: decoded(c.path) for c in clips}
    order: list = []
    memos = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        target = rng.uniform(shortest, longest)
        parts, refs, length, tries = [], [], 0.0, 0
        while length < target and tries < 3 * len(clips):
            if not order:
                order = clips[:]
                rng.shuffle(order)
            clip = order.pop()
            samples = audio[clip.id]
            pause = np.zeros(int(rng.uniform(0.4, 1.2) * SAMPLE_RATE), dtype=np.float32)
            extra = (len(pause) if parts else 0) + len(samples)
            if length + extra / SAMPLE_RATE > longest:
                order.insert(0, clip)  # use it in a later memo
                tries += 1
                continue
            if parts:
                parts.append(pause)
            parts.append(samples)
            refs.append(clip.reference)
            length += extra / SAMPLE_RATE
        pcm = np.clip(np.round(np.concatenate(parts) * 32767.0), -32768, 32767).astype("<i2")
        pcm[(i * 7919) % len(pcm)] ^= 1  # unique content even where two memos join the same clips
        path = folder / f"memo-{i:02d}.wav"
        soundfile.write(path, pcm, SAMPLE_RATE, subtype="PCM_16")
        memos.append({"path": path, "seconds": len(pcm) / SAMPLE_RATE, "reference": " ".join(refs)})
    return memos


def parse_system(name: str) -> tuple[int | str, int]:
    if name == "auto":  # workers: auto, cpu_threads left to hushdrop's rule
        return "auto", 0
    w, t = name.lstrip("w").split("t")
    return int(w), int(t)


def resolved_workers(run: WatchRun) -> int | None:
    """The number the watcher's "workers: auto → N (…)" line names."""
    import re

    match = re.search(r"workers: auto → (\d+) \((.*)\)", run.log_text())
    return int(match.group(1)) if match else None


def child_pids(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children() if "spawn_main" in " ".join(c.cmdline())]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ready_workers(run: WatchRun) -> int:
    return sum(1 for line in run.log_text().splitlines() if " ready: " in line and "worker-" in line)


def run_system(name: str, memos: list[dict], root: Path, settle: float) -> dict:
    workers, threads = parse_system(name)
    chain = [{"transcribe": {"cpu_threads": threads}} if s == "transcribe" else s for s in CHAIN]
    run = WatchRun(root, base_config(workers=workers, queue_limit=64, profile={"settle_seconds": settle, "chain": chain}))
    started = time.monotonic()
    run.start()
    if workers == "auto":
        workers = wait_for(lambda: resolved_workers(run), 60, "the workers: auto line")
    wait_for(lambda: ready_workers(run) >= workers, 180, f"{workers} workers to load the model")
    load_s = time.monotonic() - started
    # one warm-up recording per worker (not a memo): the first decode of a process costs extra
    for k in range(workers):
        run.drop(f"warm-{k}.wav", speech_clip(1000 + k, 8.0))
    wait_for(lambda: len(run.done_names()) >= workers, 300, "the warm-up recordings", interval=0.2)
    staging = root / "staging"  # same filesystem as the inbox: a rename drops every memo at once
    staging.mkdir()
    for memo in memos:
        shutil.copyfile(memo["path"], staging / memo["path"].name)
    names = {m["path"].name for m in memos}
    dropped = time.time()
    for memo in memos:
        os.rename(staging / memo["path"].name, run.inbox / memo["path"].name)
    wait_for(lambda: names <= set(run.done_names()), 3600, f"{len(memos)} memos", interval=0.2)
    wall = time.time() - dropped
    pids = child_pids(run.proc.pid)
    rss = [peak_rss_mib(p) for p in pids]
    jobs = {j["name"]: j for j in run.jobs() if j["name"] in names}
    workers_line = next((line.split("] ", 1)[-1] for line in run.log_text().splitlines() if "workers: " in line), "")
    run.stop()
    transcribe_s, counts = [], Counts()
    for memo in memos:
        doc = json.loads((run.outbox / "default" / (memo["path"].stem + ".json")).read_text())
        transcribe_s.append(sum(s["seconds"] for s in doc["stages"] if s["name"] == "transcribe"))
        counts += score(memo["reference"], doc["text"], "en", memo["seconds"])
    audio_s = sum(m["seconds"] for m in memos)
    first_claim = min(j["claimed_at"] for j in jobs.values())
    return {
        "system": name, "workers": workers, "cpu_threads": threads, "memos": len(memos), "audio_s": round(audio_s, 1),
        "wall_s": round(wall, 2), "files_per_min": round(60 * len(memos) / wall, 2), "audio_s_per_s": round(audio_s / wall, 2),
        "drop_to_first_claim_s": round(first_claim - dropped, 2),
        "transcribe_s_median": round(statistics.median(transcribe_s), 2),
        "worker_peak_rss_mib": [round(x) for x in rss], "load_s": round(load_s, 1),
        "wer": round(counts.rate, 2), "log": workers_line,
    }


def lone_file(seconds: float, rounds: int, folder: Path) -> list[dict]:
    """One recording of ``seconds`` (held-out English clips joined) through `hushdrop run` with
    ``cpu_threads`` 2 and 1 in turn (fresh processes): what one worker's thread count does to a
    recording that has the machine to itself."""
    import subprocess

    import yaml

    memo = build_memos(folder / "lone", 1, seed=31, shortest=seconds, longest=seconds + 30)[0]
    runs = []
    for r in range(rounds):
        for threads in (2, 1) if r % 2 == 0 else (1, 2):
            root = folder / f"lone-t{threads}-{r}"
            root.mkdir()
            chain = [{"transcribe": {"cpu_threads": threads}} if s == "transcribe" else s for s in CHAIN]
            (root / "config.yaml").write_text(yaml.safe_dump({"profiles": {"default": {"chain": chain}}}))
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(root / "config.yaml"), "run",
                            str(memo["path"])], cwd=REPO, check=True, capture_output=True)
            wall = time.perf_counter() - started
            doc = json.loads((root / "outbox" / "default" / (memo["path"].stem + ".json")).read_text())
            transcribe = sum(x["seconds"] for x in doc["stages"] if x["name"] == "transcribe")
            runs.append({"cpu_threads": threads, "round": r + 1, "audio_s": round(memo["seconds"], 1),
                         "transcribe_s": round(transcribe, 2), "process_s": round(wall, 2), "load_avg": round(os.getloadavg()[0], 2)})
            print(json.dumps(runs[-1]), flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--memos", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--systems", default="w1t2,w2t1", help="comma-separated wNtM (workers N, cpu_threads M; t0 = the library's choice)")
    p.add_argument("--settle", type=float, default=1.0, help="settle_seconds (the same for every system)")
    p.add_argument("--lone", type=float, default=0, metavar="SECONDS",
                   help="instead: one recording this long through `hushdrop run`, cpu_threads 2 against 1")
    args = p.parse_args(argv)
    if args.lone:
        with tempfile.TemporaryDirectory(prefix="hushdrop-lone-") as tmp:
            runs = lone_file(args.lone, args.rounds, Path(tmp))
        (REPO / "bench" / "results").mkdir(exist_ok=True)
        (REPO / "bench" / "results" / "memos-lone.json").write_text(json.dumps(runs, indent=1))
        return 0
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: dict = {"machine": machine(), "load_avg_start": os.getloadavg(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="hushdrop-memos-") as tmp:
        memos = build_memos(Path(tmp) / "memos", args.memos)
        audio = [m["seconds"] for m in memos]
        print(f"{len(memos)} memos, {min(audio):.1f}-{max(audio):.1f} s, {sum(audio):.0f} s in all; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        for r in range(args.rounds):
            for name in systems if r % 2 == 0 else list(reversed(systems)):
                out = run_system(name, memos, Path(tmp) / f"{name}-{r}", args.settle)
                out["round"] = r + 1
                out["load_avg"] = round(os.getloadavg()[0], 2)
                results["runs"].append(out)
                print(json.dumps(out), flush=True)
    results["load_avg_end"] = os.getloadavg()
    base = systems[0]
    rows = []
    for name in systems:
        runs = [x for x in results["runs"] if x["system"] == name]
        ratios = []
        for x in runs:  # against the first system in the same round
            ref = next(y for y in results["runs"] if y["system"] == base and y["round"] == x["round"])
            ratios.append(ref["wall_s"] / x["wall_s"])
        rows.append([
            name, runs[0]["workers"], runs[0]["cpu_threads"] or ("auto" if name == "auto" else "library"),
            " / ".join(f"{x['wall_s']:.1f}" for x in runs), " / ".join(f"{x['files_per_min']:.1f}" for x in runs),
            " / ".join(f"{r:.2f}×" for r in ratios),
            " / ".join(f"{x['transcribe_s_median']:.2f}" for x in runs),
            " / ".join("+".join(str(v) for v in x["worker_peak_rss_mib"]) for x in runs),
            " / ".join(f"{x['wer']:.2f}" for x in runs),
        ])
    table = markdown_table(
        ["system", "workers", "cpu_threads", "wall s (drop → all done)", "files/min", f"throughput ÷ {base}",
         "transcribe s per memo (median)", "peak RSS per worker, MiB", "WER %"], rows)
    print(table)
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "memos.json").write_text(json.dumps(results, indent=1))
    (REPO / "bench" / "results" / "memos.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
