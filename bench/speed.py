"""Speed: the default chain against the bare engine on one 10-minute recording, a burst of files, peak memory.

    python -m bench.speed                       # 10-minute file ×3 each, burst of 20 with 1 and 2 workers
    python -m bench.speed --repeats 5 --minutes 10 --burst 20 --workers 1,2

Every timed run happens in a fresh subprocess that loads the model, warms up on one
short clip (so one-time costs are not charged to the file), runs only its workload
and reports its wall time, per-stage seconds and peak resident memory
(``getrusage(RUSAGE_SELF).ru_maxrss``; ffmpeg runs as a separate process, not counted). Chain and
bare runs alternate (chain, bare, bare, chain, …) so a busy neighbour on the machine
hits both alike; the report gives medians and the median of per-pair ratios.

The recording is made from the held-out clips (read in place from ../shared/heldout/),
decoded to 16 kHz mono, joined with 0.5 s of silence between clips and cut at the
length asked for, in a temporary folder. Writes bench/results/speed.json and .md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, RESULTS, SAMPLE_RATE, fmt_duration, load_manifest, machine, markdown_table, write_json
from bench.noise import decoded, write_wav

GAP_S = 0.5
WARM_CLIP = "en_librispeech_3752-4944-0001"  # 4.4 s: loads everything lazily loaded before timing


def make_recording(path: Path, minutes: float) -> float:
    """Held-out clips end to end (looping if needed) into one ``minutes``-long WAV; returns its length."""
    clips = load_manifest()
    want = int(minutes * 60 * SAMPLE_RATE)
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts, have = [], 0
    while have < want:
        for clip in clips:
            for piece in (decoded(clip.path), gap):
                parts.append(piece)
                have += len(piece)
            if have >= want:
                break
    audio = np.concatenate(parts)[:want]
    write_wav(path, audio)
    return len(audio) / SAMPLE_RATE


def split_recording(source: Path, folder: Path, count: int, seconds: float) -> list[Path]:
    from faster_whisper import decode_audio

    audio = decode_audio(str(source), sampling_rate=SAMPLE_RATE)
    n = int(seconds * SAMPLE_RATE)
    paths = []
    for i in range(count):
        start = (i * n) % max(1, len(audio) - n)
        path = folder / f"burst-{i:02d}.wav"
        write_wav(path, audio[start : start + n])
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------
# one workload in its own process


def _peak_rss_mib() -> dict:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mib": round(own, 1), "children_peak_rss_mib": round(children, 1)}


def worker_main(system: str, path: str) -> None:
    """Run by ``python -m bench.speed --worker SYSTEM FILE``: prints one JSON line."""
    from bench.common import load_manifest as manifest, make_system

    started = time.perf_counter()
    s = make_system(system)
    s.warm_up()
    warm = next(c for c in manifest() if c.id == WARM_CLIP)
    s.transcribe(warm.path)
    ready = time.perf_counter()
    hyp = s.transcribe(Path(path))
    out = {"system": system, "seconds": hyp.seconds, "stages": hyp.stages, "notes": hyp.notes,
           "startup_seconds": ready - started, "chars": len(hyp.text), **_peak_rss_mib()}
    s.close()
    print("RESULT " + json.dumps(out), flush=True)


def run_worker(system: str, path: Path) -> dict:
    cmd = [sys.executable, "-m", "bench.speed", "--worker", system, str(path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"speed worker {system} failed:\n{proc.stderr[-3000:]}")


# ---------------------------------------------------------------------------
# a burst of files through N chain workers (each loads the model once, like a pool worker)


def _pool_worker(inbox, outbox, ready) -> None:
    from bench.common import ChainSystem, load_manifest as manifest

    s = ChainSystem()
    s.warm_up()
    s.transcribe(next(c for c in manifest() if c.id == WARM_CLIP).path)
    ready.put(os.getpid())
    while True:
        item = inbox.get()
        if item is None:
            break
        hyp = s.transcribe(Path(item))
        outbox.put((item, hyp.seconds))
    s.close()
    outbox.put(("done", _peak_rss_mib()))


def run_burst(files: list[Path], workers: int) -> dict:
    ctx = mp.get_context("spawn")
    inbox, outbox, ready = ctx.Queue(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_pool_worker, args=(inbox, outbox, ready)) for _ in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get()
    started = time.perf_counter()
    for f in files:
        inbox.put(str(f))
    finished = 0
    while finished < len(files):
        outbox.get()
        finished += 1
    wall = time.perf_counter() - started
    for _ in procs:
        inbox.put(None)
    rss = []
    while len(rss) < workers:
        tag, value = outbox.get()
        if tag == "done":
            rss.append(value["peak_rss_mib"])
    for p in procs:
        p.join()
    return {"workers": workers, "files": len(files), "seconds": wall, "peak_rss_mib_per_worker": max(rss),
            "peak_rss_mib_total": sum(rss)}


# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long recording (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each system on it (default 3)")
    parser.add_argument("--burst", type=int, default=20, help="files in the burst (default 20; 0 skips it)")
    parser.add_argument("--burst-seconds", type=float, default=15.0, help="length of each burst file (default 15)")
    parser.add_argument("--workers", default="1,2", help="worker counts for the burst (default 1,2)")
    parser.add_argument("--systems", default="chain,bare")
    parser.add_argument("--worker", nargs=2, metavar=("SYSTEM", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(*args.worker)
        return 0

    systems = args.systems.split(",")
    results: dict = {"machine": machine(), "minutes": args.minutes, "repeats": args.repeats, "runs": []}
    with tempfile.TemporaryDirectory(prefix="hushdrop-speed-") as tmp:
        long_file = Path(tmp) / f"recording-{args.minutes:g}min.wav"
        audio_s = make_recording(long_file, args.minutes)
        results["audio_seconds"] = audio_s
        est = args.repeats * audio_s * (0.35 + 0.15) + 2 * args.burst * args.burst_seconds * 0.35
        print(f"speed: {audio_s / 60:.1f}-minute file × {args.repeats} runs × {systems}, then a burst of "
              f"{args.burst} × {args.burst_seconds:g} s files with {args.workers} workers; about {fmt_duration(est)}",
              flush=True)
        order = [systems if r % 2 == 0 else list(reversed(systems)) for r in range(args.repeats)]
        for r, names in enumerate(order):
            for name in names:
                out = run_worker(name, long_file)
                out["repeat"] = r
                results["runs"].append(out)
                print(f"  run {r + 1}/{args.repeats} {name:<6} {out['seconds']:7.1f} s  "
                      f"RTF {out['seconds'] / audio_s:.3f}  peak RSS {out['peak_rss_mib']:.0f} MiB", flush=True)
        if args.burst:
            files = split_recording(long_file, Path(tmp), args.burst, args.burst_seconds)
            results["burst"] = []
            for w in [int(x) for x in args.workers.split(",") if x]:
                b = run_burst(files, w)
                b["audio_seconds"] = args.burst * args.burst_seconds
                results["burst"].append(b)
                print(f"  burst of {args.burst} with {w} worker(s): {b['seconds']:.1f} s, "
                      f"peak RSS {b['peak_rss_mib_per_worker']:.0f} MiB per worker", flush=True)
    summarise(results)
    write_json(RESULTS / "speed.json", results)
    text = markdown(results)
    (RESULTS / "speed.md").write_text(text + "\n", encoding="utf-8")
    print()
    print(text)
    return 0


def summarise(results: dict) -> None:
    audio_s = results["audio_seconds"]
    by = {}
    for run in results["runs"]:
        by.setdefault(run["system"], []).append(run)
    summary = {}
    for name, runs in by.items():
        secs = [r["seconds"] for r in runs]
        summary[name] = {"median_seconds": statistics.median(secs), "all_seconds": secs,
                         "rtf": statistics.median(secs) / audio_s,
                         "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                         "children_peak_rss_mib": max(r["children_peak_rss_mib"] for r in runs)}
    if "chain" in by and "bare" in by:
        pairs = [c["seconds"] / b["seconds"] for c, b in zip(by["chain"], by["bare"])]
        summary["ratio_median_of_pairs"] = statistics.median(pairs)
        summary["ratio_of_medians"] = summary["chain"]["median_seconds"] / summary["bare"]["median_seconds"]
        stage_names = []
        for r in by["chain"]:
            stage_names += [s for s in r["stages"] if s not in stage_names]
        stages = {s: statistics.median(r["stages"].get(s, 0.0) for r in by["chain"]) for s in stage_names}
        summary["chain_stages"] = stages
        engine = stages.get("transcribe", float("nan"))
        other = sum(v for k, v in stages.items() if k != "transcribe")
        summary["overhead_seconds"] = other
        summary["overhead_vs_transcribe"] = other / engine
        wall_extra = [c["seconds"] - c["stages"].get("transcribe", 0.0) for c in by["chain"]]
        summary["overhead_wall_seconds"] = statistics.median(wall_extra)
        summary["overhead_wall_vs_transcribe"] = statistics.median(wall_extra) / engine
    results["summary"] = summary


def markdown(results: dict) -> str:
    s = results["summary"]
    audio_s = results["audio_seconds"]
    parts = [f"### One {audio_s / 60:.0f}-minute recording ({results['repeats']} runs each, alternating; medians)", ""]
    rows = []
    for name in ("chain", "bare", "bare-words"):
        if name in s:
            v = s[name]
            rows.append([name, f"{v['median_seconds']:.1f}", " / ".join(f"{x:.1f}" for x in v["all_seconds"]),
                         f"{v['rtf']:.3f}", f"{audio_s / v['median_seconds']:.1f}×",
                         f"{v['peak_rss_mib']:.0f} MiB ({v['peak_rss_mib'] * 2**20 / 1e9:.2f} GB)"])
    parts.append(markdown_table(["system", "wall s (median)", "every run", "RTF", "speed", "peak RSS"], rows))
    if "ratio_median_of_pairs" in s:
        parts += ["", f"Chain / bare wall time: **{s['ratio_median_of_pairs']:.2f}×** (median of per-pair ratios; "
                      f"ratio of medians {s['ratio_of_medians']:.2f}×).", "",
                  "### Seconds per stage (chain, median over runs)", ""]
        engine = s["chain_stages"].get("transcribe", float("nan"))
        rows = [[k, f"{v:.2f}", f"{100 * v / engine:.1f} %"] for k, v in s["chain_stages"].items()]
        rows.append(["**all but transcribe**", f"**{s['overhead_seconds']:.2f}**", f"**{100 * s['overhead_vs_transcribe']:.1f} %**"])
        rows.append(["wall − transcribe (probe, temp files, everything)", f"{s['overhead_wall_seconds']:.2f}",
                     f"{100 * s['overhead_wall_vs_transcribe']:.1f} %"])
        parts.append(markdown_table(["stage", "seconds", "of transcribe"], rows))
    if results.get("burst"):
        parts += ["", "### A burst of files (chain; workers load the model before the clock starts)", ""]
        rows = []
        base = results["burst"][0]["seconds"]
        for b in results["burst"]:
            rows.append([b["workers"], b["files"], f"{b['audio_seconds']:.0f} s", f"{b['seconds']:.1f}",
                         f"{b['files'] / b['seconds'] * 60:.1f}", f"{b['seconds'] / b['audio_seconds']:.3f}",
                         f"{base / b['seconds']:.2f}×", f"{b['peak_rss_mib_per_worker']:.0f} MiB",
                         f"{b['peak_rss_mib_total']:.0f} MiB"])
        parts.append(markdown_table(["workers", "files", "audio", "wall s", "files/min", "RTF", "speed-up",
                                     "peak RSS per worker", "all workers"], rows))
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
