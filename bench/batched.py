"""Batched Whisper on CPU against bare sequential faster-whisper, on a long English recording
and on the 10-minute file that joins every language.

    python -m bench.batched --minutes 60 --systems bare,chain,chain-b8 --repeats 1
    python -m bench.batched --mixed 10 --systems bare,chain,chain-b8

The English recording: the held-out English clips end to end with seeded pauses of
0.3-3 s between them, looped to ``--minutes`` and ending on a clip boundary (exact
reference); ``--mixed`` builds bench.multilingual's file instead (every language). Both
are made in a temporary folder at run time. Each system runs in a fresh process that
loads the model and warms up on a 4 s clip before the clock starts; peak RSS is that
process's ``ru_maxrss``. Systems alternate; WER (Whisper's English normaliser, over
the whole recording) for English, the mixed character error rate for the mixed file.

Systems:
- bare: ``WhisperModel.transcribe(audio, beam_size=5, vad_filter=True)``, sequential
  (what subgen and whisper-asr-webservice call);
- fw-batched: faster-whisper's ``BatchedInferencePipeline`` alone, beam 5, batch 8
  (WhisperX-style batching of VAD chunks; no word timestamps);
- chain: the default profile as `hushdrop run` runs it;
- chain-bN: the default profile with ``transcribe: {batch_size: N}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, SAMPLE_RATE, load_manifest, markdown_table, score
from bench.noise import decoded, write_wav

WARM_CLIP = "en_librispeech_3752-4944-0001"


def build_english(path: Path, minutes: float, seed: int = 13) -> tuple[float, str]:
    clips = load_manifest(["en"])
    rng = np.random.default_rng(seed)
    want = minutes * 60 * SAMPLE_RATE
    parts, refs, have = [], [], 0
    while have < want:
        for clip in clips:
            a = decoded(clip.path)
            pause = np.zeros(int(rng.uniform(0.3, 3.0) * SAMPLE_RATE), dtype=np.float32)
            parts += [a, pause]
            refs.append(clip.reference)
            have += len(a) + len(pause)
            if have >= want:
                break
    audio = np.concatenate(parts)
    write_wav(path, audio)
    return len(audio) / SAMPLE_RATE, " ".join(refs)


def _system(name: str):
    from bench.common import BareSystem, ChainSystem

    if name == "bare":
        return BareSystem()
    if name == "fw-batched":
        return FwBatched()
    if name.startswith("chain"):
        import yaml

        raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
        chain = raw["profiles"]["default"]["chain"]
        if name != "chain":
            spec = name.split("-b")[1]
            extra = {}
            if spec.endswith("nt"):  # no timestamp tokens (faster-whisper's batched default)
                spec, extra = spec[:-2], {"engine_options": {"without_timestamps": True}}
            chain = [{"transcribe": {**(e["transcribe"] or {}), "batch_size": int(spec), **extra}}
                     if isinstance(e, dict) and "transcribe" in e else e for e in chain]
        s = ChainSystem(chain=chain)
        s.name = name
        return s
    raise ValueError(name)


class FwBatched:
    name = "fw-batched"

    def __init__(self, batch_size: int = 8):
        from faster_whisper import BatchedInferencePipeline

        from hushdrop.pipeline.engines import EngineSpec, load_engine

        self.pipeline = BatchedInferencePipeline(load_engine(EngineSpec()).model)
        self.batch_size = batch_size

    def warm_up(self):
        return None

    def transcribe(self, path: Path):
        from faster_whisper import decode_audio

        from bench.common import Hypothesis

        started = time.perf_counter()
        audio = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
        segments, info = self.pipeline.transcribe(audio, beam_size=5, batch_size=self.batch_size, vad_filter=True)
        text = "".join(s.text for s in segments).strip()
        return Hypothesis(text, info.language, time.perf_counter() - started)

    def close(self):
        return None


def worker(name: str, path: str) -> None:
    s = _system(name)
    s.warm_up()
    warm = next(c for c in load_manifest(["en"]) if c.id == WARM_CLIP)
    s.transcribe(warm.path)
    hyp = s.transcribe(Path(path))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"seconds": hyp.seconds, "text": hyp.text, "stages": getattr(hyp, "stages", {}),
                                  "peak_rss_mib": rss}), flush=True)
    s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--mixed", type=float, default=0.0, help="use the mixed-language file of this many minutes")
    p.add_argument("--systems", default="bare,chain,chain-b8")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    names = args.systems.split(",")
    runs = []
    with tempfile.TemporaryDirectory(prefix="hushdrop-batched-") as tmp:
        path = Path(tmp) / "long.wav"
        if args.mixed:
            from bench.multilingual import build, mixed_rate

            audio_s, used = build(path, args.mixed)
            rate_of = lambda text: mixed_rate(used, text)  # noqa: E731
            label, metric = f"mixed {args.mixed:g} min", "mixed CER"
        else:
            audio_s, reference = build_english(path, args.minutes)
            rate_of = lambda text: score(reference, text, "en").rate  # noqa: E731
            label, metric = f"English {args.minutes:g} min", "WER"
        print(f"{label}: {audio_s:.0f} s", flush=True)
        for rep in range(args.repeats):
            for n in names if rep % 2 == 0 else list(reversed(names)):
                proc = subprocess.run([sys.executable, "-m", "bench.batched", "--worker", n, str(path)],
                                      cwd=REPO, capture_output=True, text=True)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    print(f"{n} failed:\n{proc.stderr[-2000:]}", flush=True)
                    continue
                d = json.loads(line[7:])
                d.update(system=n, repeat=rep, rate=rate_of(d.pop("text")))
                runs.append(d)
                print(f"{n} rep {rep}: {d['seconds']:.1f} s, {metric} {d['rate']:.2f} %, "
                      f"peak RSS {d['peak_rss_mib']:.0f} MiB", flush=True)
    bare = [r["seconds"] for r in runs if r["system"] == "bare"]
    rows = []
    for n in names:
        rs = [r for r in runs if r["system"] == n]
        if not rs:
            continue
        med = statistics.median(r["seconds"] for r in rs)
        rows.append([label, n, f"{med:.1f}", " / ".join(f"{r['seconds']:.1f}" for r in rs), f"{med / audio_s:.3f}",
                     f"{statistics.median(bare) / med:.2f}×" if bare else "–",
                     f"{statistics.median(r['rate'] for r in rs):.2f}", f"{max(r['peak_rss_mib'] for r in rs):.0f} MiB"])
    table = markdown_table(["file", "system", "wall s (median)", "every run", "RTF", "throughput ÷ bare",
                            f"{metric} %", "peak RSS"], rows)
    print(table)
    out = args.out or ("batched-mixed" if args.mixed else f"batched-en{args.minutes:g}")
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / f"{out}.json").write_text(json.dumps(runs, indent=1))
    (REPO / "bench" / "results" / f"{out}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
