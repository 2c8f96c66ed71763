"""Ablations: which part of the chain moves the error rate. Variants of the default chain, same data.

    python -m bench.ablate                                   # every variant, clean speech
    python -m bench.ablate --variants default,no-dehum,no-denoise --condition white+5dB

A variant is the default profile's chain (from config.yaml) with some stages dropped
or some options changed; results are cached like bench.accuracy's, and the table
puts each variant beside the bare engine.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import yaml

from bench.accuracy import LANGUAGE_ORDER, _metric, run
from bench.common import REPO, BareSystem, ChainSystem, Counts, load_manifest, markdown_table
from bench.noise import CLEAN, Condition


def _default_chain() -> list:
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    return raw["profiles"]["default"]["chain"]


def _name(entry) -> str:
    return entry if isinstance(entry, str) else next(iter(entry))


def without(*names: str):
    return lambda chain: [e for e in chain if _name(e) not in names]


def with_options(stage: str, **options):
    def change(chain):
        out = []
        for e in chain:
            if _name(e) == stage:
                current = {} if isinstance(e, str) else dict(e[stage] or {})
                merged = {**current, **options}
                if "engine_options" in options and "engine_options" in current:
                    merged["engine_options"] = {**current["engine_options"], **options["engine_options"]}
                e = {stage: merged}
            out.append(e)
        return out

    return change


def chained(*changes):
    def change(chain):
        for c in changes:
            chain = c(chain)
        return chain

    return change


def with_stage_after(after: str, entry):
    def change(chain):
        out = []
        for e in chain:
            out.append(e)
            if _name(e) == after:
                out.append(entry)
        return out

    return change


VARIANTS = {
    "default": lambda chain: chain,
    "no-normalize": without("normalize"),
    "no-dehum": without("dehum"),
    "no-denoise": without("denoise"),
    "no-grammar": without("grammar", "tag"),
    # earlier behaviours of the default chain, put back one at a time (docs/benchmarks.md)
    "with-highpass": with_stage_after("normalize", {"highpass": {"cutoff_hz": 80}}),
    "normalize-all": with_options("normalize", raise_below_lufs=0.0),
    "old-vad": with_options("transcribe", vad_min_silence_ms=500, vad_speech_pad_ms=300, join_pause_ms=1000),
    "wide-vad": with_options("transcribe", vad_min_silence_ms=3000, vad_speech_pad_ms=1000),
    "no-words": with_options("transcribe", word_timestamps=False),
    "no-halluc-skip": with_options("transcribe", engine_options={"hallucination_silence_threshold": None}),
    "cond-prev": with_options("transcribe", engine_options={"condition_on_previous_text": True}),
    # the language detected once per window instead of per 30 s piece (the engine's earlier behaviour)
    "no-multilingual": with_options("transcribe", engine_options={"multilingual": False}),
    "batch8": with_options("transcribe", batch_size=8),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ablate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--condition", default="clean", help="clean, or e.g. white+5dB")
    parser.add_argument("--languages")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    for n in names:
        if n not in VARIANTS:
            parser.error(f"unknown variant {n!r}: {', '.join(VARIANTS)}")
    if args.condition == "clean":
        cond = CLEAN
    else:
        kind, snr = args.condition.rstrip("dB").split("+")
        cond = Condition(kind, int(snr))
    clips = load_manifest(args.languages.split(",") if args.languages else None)
    systems = {"bare": BareSystem()}
    base = _default_chain()
    for n in names:
        systems[n] = ChainSystem(chain=VARIANTS[n](base))
    results = run([(cond, clips)], systems)
    agg: dict = defaultdict(Counts)
    for clip in results["clips"].values():
        for key, r in clip["runs"].items():
            system = key.split("/")[0]
            c = Counts(ref=r["ref"], sub=r["sub"], dele=r["del"], ins=r["ins"], clips=1)
            agg[(clip["language"], system)] += c
            agg[(_metric(clip["language"]), system)] += c
    rows = []
    present = [l for l in LANGUAGE_ORDER if (l, "bare") in agg]
    for group in [*present, "WER", "CER"]:
        if (group, "bare") in agg:
            rows.append([group, *(agg[(group, s)].rate for s in systems)])
    print()
    print(f"{cond.label}:")
    print(markdown_table(["group", *systems], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
