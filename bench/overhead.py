"""What every stage but ``transcribe`` costs, next to the engine, on clean, hummy and noisy
input, as 16 kHz mono and 48 kHz stereo WAV; and process start-up + model load.

    python -m bench.overhead --seconds 120 --repeats 2

Inputs are built at run time in a temporary folder from the held-out English clips
(joined with 0.5 s gaps); hum = 50 Hz with 100/150 Hz harmonics, white noise, both at 5 dB
SNR (bench/noise.py). Each file goes through the `default` chain of config.yaml (what
`hushdrop run` runs, minus writing outputs); seconds per stage come from the job's own
stage records. Start-up is timed in fresh processes: interpreter + imports + model load
until the chain is open (``--startup``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from bench.common import REPO, SAMPLE_RATE, load_manifest, markdown_table
from bench.noise import decoded, make_noise, mix

CONDITIONS = ("clean", "hum", "white")
FORMATS = ("16k-mono", "48k-stereo")


def speech(seconds: float) -> np.ndarray:
    clips = [c for c in load_manifest(["en"])]
    want = int(seconds * SAMPLE_RATE)
    gap = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    parts, have = [], 0
    while have < want:
        for clip in clips:
            parts += [decoded(clip.path), gap]
            have += len(parts[-2]) + len(gap)
            if have >= want:
                break
    return np.concatenate(parts)[:want]


def write(path: Path, samples: np.ndarray, fmt: str) -> None:
    if fmt == "48k-stereo":
        from scipy.signal import resample_poly

        up = resample_poly(samples.astype(np.float64), 3, 1)
        frames = np.stack([up, 0.9 * up], axis=1)  # two channels, not identical
        rate, channels = 48000, 2
    else:
        frames, rate, channels = samples.astype(np.float64)[:, None], SAMPLE_RATE, 1
    pcm = np.clip(np.round(frames * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def build(folder: Path, seconds: float) -> dict[tuple[str, str], Path]:
    base = speech(seconds)
    clip = load_manifest(["en"])[0]
    files = {}
    for cond in CONDITIONS:
        audio = base if cond == "clean" else mix(base, make_noise(cond, clip, len(base), []), 5.0)
        for fmt in FORMATS:
            path = folder / f"{cond}-{fmt}.wav"
            write(path, audio, fmt)
            files[(cond, fmt)] = path
    return files


def startup_main() -> None:
    started = time.perf_counter()
    from bench.common import ChainSystem

    s = ChainSystem()
    imported = time.perf_counter()
    s.warm_up()
    ready = time.perf_counter()
    print("RESULT " + json.dumps({"imports_s": imported - started, "load_s": ready - imported}), flush=True)
    s.close()


def startup(repeats: int) -> list[dict]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "bench.overhead", "--startup-worker"], cwd=REPO,
                              capture_output=True, text=True)
        total = time.perf_counter() - t0
        line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
        d = json.loads(line[7:])
        d["process_s"] = total
        out.append(d)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--startup", type=int, default=3, help="fresh processes timed for start-up")
    p.add_argument("--startup-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.startup_worker:
        startup_main()
        return 0
    from bench.common import ChainSystem

    rows = []
    results: dict = {"seconds": args.seconds, "runs": []}
    with tempfile.TemporaryDirectory(prefix="hushdrop-overhead-") as tmp:
        files = build(Path(tmp), args.seconds)
        system = ChainSystem()
        system.warm_up()
        per: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.repeats):
            for key, path in files.items():
                hyp = system.transcribe(path)
                per.setdefault(key, []).append({"wall": hyp.seconds, "stages": hyp.stages, "notes": hyp.notes})
                print(key, round(hyp.seconds, 2), {k: round(v, 3) for k, v in hyp.stages.items()}, flush=True)
        system.close()
        for (cond, fmt), runs in per.items():
            names = sorted({n for r in runs for n in r["stages"]})
            med = {n: statistics.median(r["stages"].get(n, 0.0) for r in runs) for n in names}
            engine = med.get("transcribe", 0.0)
            wall = statistics.median(r["wall"] for r in runs)
            others = {n: v for n, v in med.items() if n != "transcribe"}
            worst = max(others, key=others.get)
            rows.append([cond, fmt, f"{wall:.2f}", f"{engine:.2f}",
                         *(f"{1000 * med.get(n, 0.0):.0f}" for n in ("decode", "normalize", "resample", "dehum", "denoise", "grammar", "tag")),
                         f"{100 * sum(others.values()) / engine:.2f} %", f"{100 * (wall - engine) / engine:.2f} %",
                         f"{worst} {100 * others[worst] / engine:.2f} %"])
            results["runs"].append({"condition": cond, "format": fmt, "runs": runs})
    table = markdown_table(
        ["input", "format", "wall s", "transcribe s", "decode ms", "normalize ms", "resample ms", "dehum ms",
         "denoise ms", "grammar ms", "tag ms", "all but transcribe", "wall − transcribe", "largest stage"], rows)
    print(table)
    if args.startup:
        st = startup(args.startup)
        results["startup"] = st
        print("start-up (fresh process; median of %d):" % len(st),
              {k: round(statistics.median(d[k] for d in st), 2) for k in st[0]})
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "overhead.json").write_text(json.dumps(results, indent=1))
    (REPO / "bench" / "results" / "overhead.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
