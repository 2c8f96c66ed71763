"""The multilingual slowdown: where the time goes on a recording that joins every language.

    python -m bench.multilingual --minutes 10 --systems bare,chain,chain-nohst,chain-nohst-ml --repeats 1

The recording: every held-out clip (11 languages) in manifest order, 0.5 s apart, looped
until ``--minutes`` and ending on a clip boundary, so its reference is exact (built in a
temporary folder at run time). All systems run in one process on the same model object,
alternating; ``model.transcribe`` is wrapped to record, per engine call (a chain window),
the detected language, decoder passes (distinct 30 s seeks), segments that needed a
temperature fallback, tokens generated and seconds; and the language Whisper detects on
each 30 s piece of that window on its own.

Accuracy on the joined file: a mixed error rate over the whole text — Whisper's basic
normaliser, OpenCC t2s, spaces removed, character edit distance over the reference's
characters. One number that moves when any language's text gets worse.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, SAMPLE_RATE, BareSystem, ChainSystem, load_manifest, markdown_table
from bench.noise import decoded, write_wav

GAP_S = 0.5

VARIANTS = {
    # transcribe-stage engine_options layered over config.yaml's default profile
    "chain": {},
    "chain-nohst": {"hallucination_silence_threshold": None},
    "chain-nohst-ml": {"hallucination_silence_threshold": None, "multilingual": True},
    "chain-ml": {"multilingual": True},
    "chain-no-ml": {"multilingual": False},  # language once per window (the engine's option before 2026-11-22)
}


def build(path: Path, minutes: float) -> tuple[float, list]:
    clips = load_manifest()
    want = minutes * 60 * SAMPLE_RATE
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts, used, have = [], [], 0
    while have < want:
        for clip in clips:
            a = decoded(clip.path)
            parts += [a, gap]
            used.append(clip)
            have += len(a) + len(gap)
            if have >= want:
                break
    audio = np.concatenate(parts)
    write_wav(path, audio)
    return len(audio) / SAMPLE_RATE, used


def mixed_rate(reference_clips: list, hypothesis: str) -> float:
    import jiwer
    from opencc import OpenCC
    from whisper_normalizer.basic import BasicTextNormalizer

    norm, cc = BasicTextNormalizer(), OpenCC("t2s")

    def prep(t: str) -> str:
        return "".join(cc.convert(norm(t)).split())

    ref = prep(" ".join(c.reference for c in reference_clips))
    return 100 * jiwer.cer(ref, prep(hypothesis))


class Recorder:
    """Wraps ``WhisperModel.transcribe`` on the shared model object."""

    def __init__(self, model):
        self.model = model
        self.original = model.transcribe
        self.calls: list[dict] = []
        model.transcribe = self.transcribe

    def transcribe(self, audio, **options):
        started = time.perf_counter()
        segments, info = self.original(audio, **options)
        call = {"audio_s": len(audio) / SAMPLE_RATE, "language": info.language,
                "probability": round(info.language_probability, 2), "segments": [],
                "setup_s": time.perf_counter() - started, "audio": audio}
        self.calls.append(call)

        def gen():
            last = time.perf_counter()
            for s in segments:
                now = time.perf_counter()
                call["segments"].append({"seek": s.seek, "start": s.start, "end": s.end, "temperature": s.temperature,
                                         "tokens": len(s.tokens), "compression": round(s.compression_ratio, 2),
                                         "logprob": round(s.avg_logprob, 2), "seconds": now - last})
                last = now
                yield s
        return gen(), info

    def table(self, calls: list[dict], label: str) -> list[list]:
        rows = []
        for i, c in enumerate(calls):
            segs = c["segments"]
            audio = c.pop("audio", None)
            pieces = []
            if audio is not None:  # what each 30 s piece sounds like on its own (untimed)
                for off in range(0, len(audio), 30 * SAMPLE_RATE):
                    piece = audio[off: off + 30 * SAMPLE_RATE]
                    if len(piece) >= SAMPLE_RATE:
                        lang, _, _ = self.original.__self__.detect_language(piece)
                        pieces.append(lang)
            c["piece_languages"] = pieces
            rows.append([label, i, f"{c['audio_s']:.0f}", f"{c['language']} ({c['probability']:.2f})",
                         " ".join(f"{l}" for l in pieces) or "–", len({s['seek'] for s in segs}), len(segs),
                         sum(1 for s in segs if (s["temperature"] or 0) > 0),
                         sum(s["tokens"] for s in segs), f"{sum(s['seconds'] for s in segs) + c['setup_s']:.1f}"])
        return rows


def make(name: str):
    if name == "bare":
        return BareSystem()
    import yaml

    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    chain = raw["profiles"]["default"]["chain"]
    out = []
    for item in chain:
        if isinstance(item, dict) and "transcribe" in item:
            opts = dict(item["transcribe"] or {})
            eo = dict(opts.get("engine_options") or {})
            eo.update(VARIANTS[name])
            opts["engine_options"] = eo
            item = {"transcribe": opts}
        out.append(item)
    s = ChainSystem(chain=out)
    s.name = name
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--systems", default="bare,chain,chain-nohst,chain-nohst-ml")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default="multilingual")
    args = p.parse_args(argv)
    names = args.systems.split(",")
    results: dict = {"minutes": args.minutes, "runs": []}
    window_rows: list[list] = []
    with tempfile.TemporaryDirectory(prefix="hushdrop-ml-") as tmp:
        path = Path(tmp) / "mixed.wav"
        audio_s, used = build(path, args.minutes)
        print(f"mixed file: {audio_s:.1f} s, {len(used)} clips", flush=True)
        systems = {n: make(n) for n in names}
        for s in systems.values():
            s.warm_up()
        model = systems[names[0]].engine.model if names[0] == "bare" else None
        from hushdrop.pipeline.engines import EngineSpec, load_engine

        recorder = Recorder(load_engine(EngineSpec()).model)
        for rep in range(args.repeats):
            order = names if rep % 2 == 0 else list(reversed(names))
            for n in order:
                before = len(recorder.calls)
                cpu0 = time.process_time()
                hyp = systems[n].transcribe(path)
                cpu = time.process_time() - cpu0  # all threads of this process: steadier than wall on a shared machine
                calls = recorder.calls[before:]
                rate = mixed_rate(used, hyp.text)
                if rep == 0:
                    window_rows += recorder.table(calls, n)
                for c in calls:
                    c.pop("audio", None)
                run = {"system": n, "repeat": rep, "seconds": hyp.seconds, "cpu_s": cpu, "mixed_cer": rate, "stages": hyp.stages,
                       "calls": calls, "language": hyp.language}
                results["runs"].append(run)
                print(f"{n} rep {rep}: {hyp.seconds:.1f} s ({cpu:.1f} CPU s), mixed CER {rate:.1f} %, "
                      f"passes {sum(len({s['seek'] for s in c['segments']}) for c in calls)}", flush=True)
        for s in systems.values():
            s.close()
    rows = []
    bare = [r["seconds"] for r in results["runs"] if r["system"] == "bare"]
    for n in names:
        runs = [r for r in results["runs"] if r["system"] == n]
        secs = [r["seconds"] for r in runs]
        med = statistics.median(secs)
        cpu = statistics.median(r["cpu_s"] for r in runs)
        bare_cpu = [r["cpu_s"] for r in results["runs"] if r["system"] == "bare"]
        rows.append([n, f"{med:.1f}", " / ".join(f"{s:.1f}" for s in secs), f"{med / audio_s:.3f}",
                     f"{med / statistics.median(bare):.2f}×" if bare else "–", f"{cpu:.0f}",
                     f"{cpu / statistics.median(bare_cpu):.2f}×" if bare_cpu else "–",
                     f"{statistics.median(r['mixed_cer'] for r in runs):.1f}"])
    t1 = markdown_table(["system", "wall s (median)", "every run", "RTF", "÷ bare", "CPU s", "CPU ÷ bare", "mixed CER %"], rows)
    t2 = markdown_table(["system", "call", "audio s", "detected (p)", "each 30 s piece on its own", "decoder passes",
                         "segments", "temperature fallbacks", "tokens", "seconds"], window_rows)
    print(t1)
    print()
    print(t2)
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / f"{args.out}.json").write_text(json.dumps(results, indent=1, default=str))
    (REPO / "bench" / "results" / f"{args.out}.md").write_text(t1 + "\n\n" + t2 + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
