"""Accuracy: the default chain against the bare engine, on clean and noisy held-out speech.

    python -m bench.accuracy                          # clean + the full noisy grid
    python -m bench.accuracy --noise none             # clean only
    python -m bench.accuracy --noise white,hum --snr 5 --languages en,zh

Reads ``../shared/heldout/`` in place (never copies it). Each (system, condition,
clip) result is cached under ``bench/results/cache/``; the cache key includes the
chain's options and the source of the stages, so changing a stage recomputes it.
Writes ``bench/results/accuracy.json`` and ``bench/results/accuracy.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.common import (
    RESULTS,
    Cache,
    Clip,
    Counts,
    fmt_duration,
    load_manifest,
    make_system,
    markdown_table,
    score,
    write_json,
)
from bench.noise import CLEAN, KINDS, SNRS_DB, Condition, code_digest, noisy_file

SYSTEMS = ("chain", "bare")
LANGUAGE_ORDER = ("en", "zh", "yue", "de", "es", "fr", "it", "ja", "ko", "pt", "ru")
# seconds of compute per second of audio on 2 cores, for the first estimate only
_GUESS_RTF = {"chain": 0.6, "bare": 0.5}  # short clips: every call pays for a 30 s window


def conditions(noise: list[str], snrs: list[int], clean: bool = True) -> list[Condition]:
    out = [CLEAN] if clean else []
    out += [Condition(kind, snr) for snr in snrs for kind in noise]
    return out


def run(plan: list[tuple[Condition, list[Clip]]], systems: list[str] | dict, fresh: bool = False) -> dict:
    """Transcribe every (condition, clip) of ``plan`` with every system, interleaved.

    ``systems`` names systems (``chain``, ``bare``) or maps names to system objects.
    """
    everyone = load_manifest()  # babble is drawn from the whole set, whatever the subset
    loaded = dict(systems) if isinstance(systems, dict) else {name: make_system(name) for name in systems}
    systems = list(loaded)
    caches = {name: Cache(name, s.fingerprint()) for name, s in loaded.items()}
    noise_key = code_digest()
    todo = [
        (cond, clip, name)
        for cond, clips in plan
        for clip in clips
        for name in systems
        if fresh or caches[name].get(_cache_condition(cond, noise_key), clip.id) is None
    ]
    guess = sum(clip.duration_s * _GUESS_RTF.get(name, 0.6) for _, clip, name in todo)
    print(f"accuracy: {len(plan)} conditions × up to {max(len(c) for _, c in plan)} clips × {len(systems)} systems; "
          f"{len(todo)} runs not cached, about {fmt_duration(guess)} (m:s) on 2 cores", flush=True)
    for system in loaded.values():
        system.warm_up()
    results: dict = {"systems": {n: s.describe() for n, s in loaded.items()},
                     "fingerprints": {n: caches[n].dir.name for n in systems}, "clips": {}, "conditions": []}
    done = 0
    started = time.perf_counter()
    computed_audio = 0.0
    with tempfile.TemporaryDirectory(prefix="hushdrop-noisy-") as tmp:
        for cond, clips in plan:
            results["conditions"].append(cond.key)
            for clip in clips:
                for name in systems:
                    key = _cache_condition(cond, noise_key)
                    hyp = None if fresh else caches[name].get(key, clip.id)
                    if hyp is None:
                        path = noisy_file(clip, cond, everyone, Path(tmp))
                        hyp = loaded[name].transcribe(path)
                        caches[name].put(key, clip.id, hyp)
                        done += 1
                        computed_audio += clip.duration_s * _GUESS_RTF.get(name, 0.6)
                        elapsed = time.perf_counter() - started
                        left = (guess - computed_audio) * elapsed / max(computed_audio, 1e-9)
                        print(f"  [{done}/{len(todo)}] {cond.key:<11} {name:<5} {clip.id:<52} "
                              f"{hyp.seconds:5.1f}s  elapsed {fmt_duration(elapsed)}  left ~{fmt_duration(left)}",
                              flush=True)
                    counts = score(clip.reference, hyp.text, clip.language, clip.duration_s)
                    results["clips"].setdefault(clip.id, {"language": clip.language, "tier": clip.tier,
                                                          "duration_s": clip.duration_s, "reference": clip.reference,
                                                          "runs": {}})
                    results["clips"][clip.id]["runs"][f"{name}/{cond.key}"] = {
                        "text": hyp.text,
                        "language": hyp.language,
                        "seconds": round(hyp.seconds, 3),
                        "denoised": any("gating noise" in n for n in hyp.notes),
                        "dehummed": any(n.startswith("dehum:") and "notching" in n for n in hyp.notes),
                        "errors": counts.errors,
                        "ref": counts.ref,
                        "sub": counts.sub,
                        "del": counts.dele,
                        "ins": counts.ins,
                    }
    for system in loaded.values():
        system.close()
    return results


def _cache_condition(cond: Condition, noise_key: str) -> str:
    return cond.key if cond.kind == "clean" else f"{cond.key}-{noise_key}"


# ---------------------------------------------------------------------------
# tables


def aggregate(results: dict, group) -> dict:
    """{(group value, system, condition): Counts} over every clip."""
    table: dict = defaultdict(Counts)
    for clip_id, clip in results["clips"].items():
        for run_key, r in clip["runs"].items():
            system, cond = run_key.split("/")
            c = Counts(ref=r["ref"], sub=r["sub"], dele=r["del"], ins=r["ins"], clips=1, seconds=clip["duration_s"])
            table[(group(clip), system, cond)] += c
    return table


def _metric(language: str) -> str:
    from bench.common import CER_LANGUAGES

    return "CER" if language in CER_LANGUAGES else "WER"


def _languages(results: dict) -> list[str]:
    present = {c["language"] for c in results["clips"].values()}
    return [l for l in LANGUAGE_ORDER if l in present] + sorted(present - set(LANGUAGE_ORDER))


def language_table(results: dict, cond: str) -> str:
    agg = aggregate(results, lambda c: c["language"])
    rows = []
    for lang in _languages(results):
        chain, bare = agg.get((lang, "chain", cond)), agg.get((lang, "bare", cond))
        if chain is None or bare is None:
            continue
        rows.append([lang, chain.clips, f"{chain.seconds:.0f} s", _metric(lang), chain.rate, bare.rate,
                     f"{chain.rate - bare.rate:+.1f}"])
    return markdown_table(["language", "clips", "audio", "metric", "chain %", "bare %", "Δ (chain − bare)"], rows)


def tier_table(results: dict, cond: str) -> str:
    agg = aggregate(results, lambda c: (c["tier"], _metric(c["language"])))
    rows = []
    for tier in ("A", "B"):
        for metric in ("WER", "CER"):
            chain, bare = agg.get(((tier, metric), "chain", cond)), agg.get(((tier, metric), "bare", cond))
            if chain is None or bare is None:
                continue
            rows.append([tier, metric, chain.clips, chain.rate, bare.rate, f"{chain.rate - bare.rate:+.1f}"])
    return markdown_table(["tier", "metric", "clips", "chain %", "bare %", "Δ"], rows)


def summary_table(results: dict) -> str:
    """One row per condition: pooled WER (space-delimited) and CER (zh, yue, ja, ko), tier A and all."""
    agg_all = aggregate(results, lambda c: _metric(c["language"]))
    agg_a = aggregate(results, lambda c: (c["tier"], _metric(c["language"])))
    denoised = defaultdict(int)
    dehummed = defaultdict(int)
    total = defaultdict(int)
    for clip in results["clips"].values():
        for run_key, r in clip["runs"].items():
            if run_key.startswith("chain/"):
                total[run_key[6:]] += 1
                denoised[run_key[6:]] += r["denoised"]
                dehummed[run_key[6:]] += r.get("dehummed", False)
    rows = []
    for cond in results["conditions"]:
        row = [cond.replace("dB", " dB").replace("+", " "), total[cond]]
        for agg, key in ((agg_all, "WER"), (agg_all, "CER"), (agg_a, ("A", "WER")), (agg_a, ("A", "CER"))):
            chain, bare = agg.get((key, "chain", cond)), agg.get((key, "bare", cond))
            row += [chain.rate if chain else float("nan"), bare.rate if bare else float("nan")]
        row += [f"{denoised[cond]}/{total[cond]}", f"{dehummed[cond]}/{total[cond]}"]
        rows.append(row)
    header = ["condition", "clips", "WER chain", "WER bare", "CER chain", "CER bare",
              "A WER chain", "A WER bare", "A CER chain", "A CER bare", "denoised (chain)", "dehummed (chain)"]
    return markdown_table(header, rows)


def noise_kind_table(results: dict, kind: str) -> str:
    agg = aggregate(results, lambda c: c["language"])
    conds = [c for c in results["conditions"] if c.startswith(kind)]
    header = ["language", "metric"]
    for cond in conds:
        snr = cond[len(kind):].removesuffix("dB").lstrip("+")
        header += [f"{snr} dB chain", f"{snr} dB bare"]
    rows = []
    for lang in _languages(results):
        row = [lang, _metric(lang)]
        for cond in conds:
            chain, bare = agg.get((lang, "chain", cond)), agg.get((lang, "bare", cond))
            row += [chain.rate if chain else float("nan"), bare.rate if bare else float("nan")]
        rows.append(row)
    return markdown_table(header, rows)


def markdown(results: dict) -> str:
    parts = []
    if "clean" in results["conditions"]:
        parts += ["### Clean speech, per language", "", language_table(results, "clean"), "",
                  "### Clean speech, per tier", "", tier_table(results, "clean"), ""]
    noisy = [c for c in results["conditions"] if c != "clean"]
    if noisy:
        parts += ["### Every condition, pooled (WER: en de es fr it pt ru; CER: zh yue ja ko)", "",
                  summary_table(results), ""]
        for kind in KINDS:
            if any(c.startswith(kind) for c in noisy):
                parts += [f"### {kind.capitalize()} noise, per language", "", noise_kind_table(results, kind), ""]
        parts += ["### 5 dB SNR, per tier", ""]
        for kind in KINDS:
            cond = f"{kind}+5dB"
            if cond in noisy:
                parts += [f"{kind}:", "", tier_table(results, cond), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--languages", help="comma-separated language codes (default: all)")
    parser.add_argument("--noise", default=",".join(KINDS), help=f"noise kinds, or 'none' (default: {','.join(KINDS)})")
    parser.add_argument("--snr", default=",".join(map(str, SNRS_DB)), help="SNRs in dB (default: 0,5,10)")
    parser.add_argument("--no-clean", action="store_true", help="skip the clean condition")
    parser.add_argument("--every", type=int, default=1,
                        help="noisy conditions on every Nth clip only (default: 1 = all), except --full-snr")
    parser.add_argument("--full-snr", default="", help="SNRs that run on every clip whatever --every says, e.g. 5")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--fresh", action="store_true", help="ignore cached results")
    args = parser.parse_args(argv)

    clips = load_manifest(args.languages.split(",") if args.languages else None)
    if not clips:
        print("accuracy: no clip matches --languages", file=sys.stderr)
        return 2
    kinds = [] if args.noise == "none" else [k for k in args.noise.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            parser.error(f"unknown noise kind {k!r}: one of {', '.join(KINDS)}")
    snrs = [int(s) for s in args.snr.split(",") if s]
    systems = args.systems.split(",")
    subset = clips[:: max(1, args.every)]
    plan = [] if args.no_clean else [(CLEAN, clips)]
    full = {int(x) for x in args.full_snr.split(",") if x}
    plan += [(cond, clips if cond.snr_db in full else subset) for cond in conditions(kinds, snrs, clean=False)]
    if not plan:
        parser.error("nothing to run: --no-clean and --noise none")
    results = run(plan, systems, args.fresh)
    results["subset"] = {"languages": args.languages or "all", "every": args.every, "full_snr": sorted(full),
                         "clips": len(clips), "subset_clips": len(subset)}
    write_json(RESULTS / "accuracy.json", results)
    text = markdown(results)
    (RESULTS / "accuracy.md").write_text(text + "\n", encoding="utf-8")
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
