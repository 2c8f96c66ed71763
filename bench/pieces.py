"""Pieces of one recording decoded at once (issue 24): `hushdrop run`'s chain against the bare engine.

    python -m bench.pieces                          # 10-min English ×3, 10-min mixed ×1, 60-min English ×1
    python -m bench.pieces --files en10 --repeats 3 --systems bare,chain1,chain

The recordings are built at run time from the held-out clips (read in place, never copied), each
clip decoded to 44.1 kHz stereo and joined with 1 s of silence, whole clips only, until the
length is reached (so the reference is the clips' references joined):

- ``en10``: the English clips, looped, 10 minutes;
- ``mix10``: every clip (11 languages), looped, 10 minutes;
- ``en60``: the English clips, looped, 60 minutes.

Systems, each in a fresh process that loads the model and warms up on a short clip before the
clock starts (as bench/speed.py does):

- ``bare``: faster-whisper alone (the same model, int8, beam 5, ``vad_filter=True``, one thread
  per core of this machine), on ``decode_audio`` of the file;
- ``chain1``: the default chain with ``concurrent_pieces: 1`` and one thread per core (the chain
  before issue 24, its threads set as ``bare``'s);
- ``chain``: the default chain as `hushdrop run` settles it here (``concurrent_pieces: auto``).

Runs alternate (A B C, C B A, …) so a busy neighbour hits every system alike; ratios are medians
of per-round ratios. WER (English) or CER (mixed: every language's characters, spaces removed,
after the normaliser of each clip's language) against the joined references. Peak RSS is the
worker process's. Writes bench/results/pieces.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, RESULTS, SAMPLE_RATE, ChainSystem, BareSystem, load_manifest, machine, normalise, write_json
from bench.speed import WARM_CLIP, _peak_rss_mib

GAP_S = 1.0
RATE_OUT = 44100
FILES = {"en10": (["en"], 10.0), "mix10": (None, 10.0), "en60": (["en"], 60.0)}


def build(name: str, folder: Path) -> tuple[Path, list]:
    """The recording ``name`` in ``folder`` (44.1 kHz stereo FLAC) and the clips it holds, in order."""
    import soundfile
    from faster_whisper import decode_audio

    languages, minutes = FILES[name]
    clips = load_manifest(languages)
    want = minutes * 60
    parts, used, have = [], [], 0.0
    gap = np.zeros((int(GAP_S * RATE_OUT), 2), dtype=np.float32)
    while have < want:
        for clip in clips:
            audio = decode_audio(str(clip.path), sampling_rate=RATE_OUT)
            parts += [np.stack([audio, audio], axis=1), gap]
            used.append(clip)
            have += len(audio) / RATE_OUT + GAP_S
            if have >= want:
                break
    path = folder / f"{name}.flac"
    soundfile.write(path, np.concatenate(parts), RATE_OUT)
    return path, used


def error_rate(clips: list, text: str, mixed: bool) -> float:
    """WER against the joined references; for a mixed recording, CER over all characters."""
    import jiwer

    if not mixed:
        reference = normalise(" ".join(c.reference for c in clips), "en")
        return 100 * jiwer.wer(reference, normalise(text, "en"))
    reference = "".join(normalise(c.reference, c.language).replace(" ", "") for c in clips)
    hypothesis = normalise(text, "zh").replace(" ", "")  # the basic normaliser, plus OpenCC for Chinese
    return 100 * jiwer.cer(reference, hypothesis)


def worker_main(system: str, path: str) -> None:
    """``python -m bench.pieces --worker SYSTEM FILE``: one timed run, one JSON line."""
    cores = len(os.sched_getaffinity(0))
    s = {
        "bare": lambda: BareSystem(cpu_threads=cores),
        "chain1": lambda: ChainSystem(pieces=1, cpu_threads=cores),
        "chain": ChainSystem,
    }[system]()
    s.warm_up()
    warm = next(c for c in load_manifest() if c.id == WARM_CLIP)
    s.transcribe(warm.path)
    hyp = s.transcribe(Path(path))
    pieces = None
    if system != "bare":
        pieces = s.profile.transcribe_options().concurrent_pieces
    print("RESULT " + json.dumps({"system": system, "seconds": hyp.seconds, "text": hyp.text,
                                   "pieces": pieces, **_peak_rss_mib()}), flush=True)
    s.close()


def run_worker(system: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.pieces", "--worker", system, str(path)],
                          cwd=REPO, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"pieces worker {system} failed:\n{proc.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pieces", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default="en10,mix10,en60")
    parser.add_argument("--systems", default="bare,chain1,chain")
    parser.add_argument("--repeats", type=int, default=3, help="rounds on en10 (the other files: one round)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(*args.worker)
        return 0
    systems = args.systems.split(",")
    results: dict = {"machine": machine(), "systems": systems, "files": {}}
    with tempfile.TemporaryDirectory(prefix="bench-pieces-") as tmp:
        for name in args.files.split(","):
            path, clips = build(name, Path(tmp))
            seconds = sum(c.duration_s for c in clips) + GAP_S * len(clips)
            rounds = args.repeats if name == "en10" else 1
            runs: list[dict] = []
            for r in range(rounds):
                order = systems if r % 2 == 0 else systems[::-1]
                for system in order:
                    started = time.monotonic()
                    result = run_worker(system, path)
                    result.update(round=r, error=error_rate(clips, result.pop("text"), mixed=name == "mix10"))
                    runs.append(result)
                    print(f"{name} round {r + 1} {system}: {result['seconds']:.1f} s ({time.monotonic() - started:.0f} s with "
                          f"start-up), error {result['error']:.2f} %, peak RSS {result['peak_rss_mib']:.0f} MiB", flush=True)
            summary = {}
            for system in systems:
                mine = [x for x in runs if x["system"] == system]
                ratios = [
                    next(x["seconds"] for x in runs if x["system"] == "bare" and x["round"] == m["round"]) / m["seconds"]
                    for m in mine
                ] if "bare" in systems else []
                summary[system] = {
                    "median_seconds": statistics.median(x["seconds"] for x in mine),
                    "speed_vs_bare": statistics.median(ratios) if ratios else None,
                    "error": statistics.median(x["error"] for x in mine),
                    "peak_rss_mib": max(x["peak_rss_mib"] for x in mine),
                    "pieces": mine[0]["pieces"],
                }
            results["files"][name] = {"seconds": seconds, "clips": len(clips), "runs": runs, "summary": summary}
            print(json.dumps({name: summary}, indent=2), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "pieces.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
