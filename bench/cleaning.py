"""Cleaning that never costs words: the chain (dehum, denoise, both readings compared) against the
bare engine, per language group, clean and in white noise, mains hum (50 and 60 Hz) and babble.

    python -m bench.cleaning --set tuning                                  # choose thresholds here
    python -m bench.cleaning --set heldout --languages en,zh --noise white,hum50 --snr 5
    python -m bench.cleaning --set heldout                                 # the whole grid
    python -m bench.cleaning --set tuning --margins -0.2,-0.1,0,0.1,0.2    # the rule, from cached runs
    python -m bench.cleaning --set tuning --languages en,de,es --rules     # other ways of choosing, likewise
    python -m bench.cleaning --set heldout --timing 3 --languages en       # clean-audio overhead
    python -m bench.cleaning --set heldout --noise white --snr 5 --repeat 3  # the target on the means of 3 runs

``--set tuning`` is our own synthesised speech (``bench/tuning_speech.py``): thresholds are
chosen on it. ``--set heldout`` reads ``../shared/heldout/`` in place, only to measure.

One chain run of a noisy clip gives three transcripts: ``chain`` (the kept reading of each
window, what hushdrop writes), ``cleaned`` (the cleaned reading throughout: the chain as it was
before readings were compared) and ``recorded`` (the as-recorded reading throughout). Where
the cleaning stages left a clip alone the three are one. ``bare`` is the engine alone
(``bench.common.BareSystem``), run on the same file in the same run.

Noise (made in a temporary folder, seeded from the clip id, mixed at the SNR over the whole
clip as ``bench/noise.py`` mixes): ``white``; ``hum50`` / ``hum60`` (the mains frequency and
four harmonics at 1, 1/2, 1/3, 1/4, 1/5 of its amplitude); ``babble`` (five *other* clips of
the same set, at equal power). Results are cached per (system fingerprint, condition, clip) in
``bench/results/cache/``; the tables go to ``bench/results/cleaning-<set>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.common import RESULTS, SAMPLE_RATE, BareSystem, ChainSystem, Clip, Counts, fmt_duration, load_manifest, markdown_table, score, write_json
from bench.noise import _seed, decoded, make_noise, mix, write_wav

KINDS = ("white", "hum50", "hum60", "babble")
SNRS_DB = (0, 5, 10)
HUM_AMPLITUDES = (1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5)  # the mains frequency and four harmonics
READINGS = ("chain", "cleaned", "recorded")
GROUP_ORDER = ("en", "zh", "yue", "de", "es", "fr", "other")  # the tables' row order


def language_group(language: str) -> str:
    return language if language in ("en", "zh", "yue", "de", "es", "fr") else "other"


def _noise(kind: str, clip: Clip, length: int, others: list[Clip]) -> np.ndarray:
    if kind.startswith("hum"):
        mains = float(kind[3:])
        rng = np.random.default_rng(_seed(kind, clip.id))
        t = np.arange(length) / SAMPLE_RATE
        hum = np.zeros(length, dtype=np.float64)
        for k, amplitude in enumerate(HUM_AMPLITUDES, start=1):
            hum += amplitude * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
        return hum.astype(np.float32)
    return make_noise(kind, clip, length, others)


def noisy_file(clip: Clip, condition: str, others: list[Clip], folder: Path) -> Path:
    if condition == "clean":
        return clip.path
    kind, snr = condition.rsplit("+", 1)
    path = folder / f"{clip.id}.{kind}{snr}.wav"
    if not path.exists():
        speech = decoded(clip.path)
        write_wav(path, mix(speech, _noise(kind, clip, len(speech), others), float(snr.removesuffix("dB"))))
    return path


def _digest() -> str:
    """Part of the cache key: the noise recipe (this module's ``_noise`` and bench/noise.py), not the tables."""
    import inspect

    h = hashlib.sha256(inspect.getsource(_noise).encode() + repr(HUM_AMPLITUDES).encode())
    h.update((Path(__file__).parent / "noise.py").read_bytes())
    return h.hexdigest()[:8]


def chain_run(system: ChainSystem, path: Path) -> dict:
    """The chain's transcript and, per window, both readings' texts and evidence."""
    started = time.perf_counter()
    job = system.processor.run_chain(path, system.profile)
    seconds = time.perf_counter() - started
    windows = [asdict(w) for w in job.transcript.windows]
    transcribe = sum(s.seconds for s in job.stages if s.name == "transcribe")
    return {"text": job.transcript.text, "language": job.transcript.language, "seconds": seconds,
            "transcribe_s": transcribe, "windows": windows, "notes": list(job.notes)}


def _unscored(evidence: dict) -> dict:
    return {k: v for k, v in evidence.items() if k not in ("on_cleaned", "on_recorded")}


def _judged_on(audio: str, margin: float):
    """The shipped rule with both texts scored on ``audio`` only: the other audio's scores made
    equal, and the margin applied to ``audio``'s scores alone (each counts half in the rule)."""
    other = "on_recorded" if audio == "cleaned" else "on_cleaned"

    def rule(cleaned: dict, recorded: dict) -> str:
        from hushdrop.stages.transcribe import choose_reading

        return choose_reading({**cleaned, other: recorded.get(other)}, recorded, margin / 2)[0]

    return rule


def _rules() -> dict:
    """Ways to choose a window's reading, each from the evidence a chain run records (--rules)."""
    from hushdrop.stages.transcribe import choose_reading

    from hushdrop.stages.transcribe import TranscribeOptions

    margin = TranscribeOptions().cleaned_margin
    return {
        "each decoding's own confidence, margin 0.2 (round 6)": lambda c, r: choose_reading(_unscored(c), _unscored(r), 0.2)[0],
        f"both texts scored on both audios, margin {margin:g} (shipped)": lambda c, r: choose_reading(c, r, margin)[0],
        "both texts scored on the cleaned audio": _judged_on("cleaned", margin),
        "both texts scored on the recorded audio": _judged_on("recorded", margin),
    }


def reading_text(run: dict, reading: str, margin: float | None = None, rule=None) -> str:
    """The transcript ``reading`` gives: the chain's own, one reading throughout, the chain's rule
    at another ``margin``, or another ``rule`` ((cleaned, recorded) evidence -> the reading kept),
    from the cached evidence, without decoding again."""
    from hushdrop.stages.transcribe import choose_reading

    if (reading == "chain" and margin is None and rule is None) or all(w["decodes"] == 1 for w in run["windows"]):
        return run["text"]  # one reading only (a single decode's evidence holds no text: the transcript does)
    if rule is None and reading == "chain":
        rule = lambda c, r: choose_reading(c, r, margin)[0]  # noqa: E731
    parts = []
    for w in run["windows"]:
        ev = w["evidence"]
        pick = reading if reading != "chain" else rule(ev["cleaned"], ev["recorded"])
        parts.append(ev[pick]["text"])
    return " ".join(p for p in parts if p)


class Store:
    def __init__(self, name: str):
        self.dir = RESULTS / "cache" / name

    @classmethod
    def of(cls, system: str, fingerprint: str, repetition: int = 1) -> "Store":
        """The cache of ``system`` ("chain" or "bare") for its ``repetition``-th run of the same files:
        a second or later run is a store of its own, so the engine's sampling is drawn anew."""
        tag = "" if repetition == 1 else "-again" if repetition == 2 else f"-run{repetition}"
        return cls(f"cleaning-{system}{tag}-{fingerprint}-{_digest()}")

    def get(self, condition: str, clip_id: str):
        path = self.dir / condition / f"{clip_id}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def put(self, condition: str, clip_id: str, value) -> None:
        path = self.dir / condition / f"{clip_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def clips_of(which: str, languages: set[str] | None) -> tuple[list[Clip], list[Clip]]:
    """(the clips to read, the pool babble is drawn from: the whole set)."""
    if which == "tuning-long":
        from bench.tuning_speech import tuning_clips, tuning_long_clips

        # babble from the short clips, which may hold the recording's own sentences under the noise:
        # the same mixture for every system compared, so it weighs on none of them more
        return tuning_long_clips(languages), tuning_clips()
    if which == "tuning":
        from bench.tuning_speech import tuning_clips

        everyone = tuning_clips()
    else:
        everyone = load_manifest()
    return [c for c in everyone if not languages or c.language in languages], everyone


def run(which: str, clips: list[Clip], everyone: list[Clip], conditions: list[str], changes: dict | None = None,
        repetition: int = 1) -> dict:
    """``changes``: {stage: options} set on the default chain (a gentler gate, another decoding
    option), the default chain otherwise; ``repetition``: which run of the same files this is
    (each has its own cache)."""
    from bench.ablate import _default_chain, with_options

    steps = _default_chain()
    for stage, options in (changes or {}).items():
        steps = with_options(stage, **options)(steps)
    chain = ChainSystem(chain=steps) if changes else ChainSystem()
    bare = BareSystem()
    stores = {"chain": Store.of("chain", chain.fingerprint(), repetition),
              "bare": Store.of("bare", bare.fingerprint(), repetition)}
    todo = sum(1 for c in conditions for clip in clips for s in stores if stores[s].get(c, clip.id) is None)
    print(f"cleaning, run {repetition}: {len(conditions)} conditions x {len(clips)} clips x 2 systems; "
          f"{todo} runs not cached", flush=True)
    chain.warm_up()
    out: dict = {"set": which, "conditions": conditions, "clips": {}}
    done, started = 0, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hushdrop-cleaning-") as tmp:
        for condition in conditions:
            for clip in clips:
                entry = out["clips"].setdefault(clip.id, {"language": clip.language, "reference": clip.reference,
                                                          "duration_s": clip.duration_s, "runs": {}})
                runs = {}
                for name in ("chain", "bare"):
                    value = stores[name].get(condition, clip.id)
                    if value is None:
                        path = noisy_file(clip, condition, everyone, Path(tmp))
                        if name == "chain":
                            value = chain_run(chain, path)
                        else:
                            hyp = bare.transcribe(path)
                            value = {"text": hyp.text, "language": hyp.language, "seconds": hyp.seconds}
                        stores[name].put(condition, clip.id, value)
                        done += 1
                        print(f"  [{done}/{todo}] {condition:<12} {name:<5} {clip.id:<44} {value['seconds']:5.1f}s "
                              f"elapsed {fmt_duration(time.perf_counter() - started)}", flush=True)
                    runs[name] = value
                entry["runs"][condition] = runs
    chain.close()
    return out


def counts_of(results: dict, reading: str, margin: float | None = None, rule=None) -> dict:
    """{(group, condition): Counts} for ``reading`` (bare, chain, cleaned, recorded)."""
    table: dict = defaultdict(Counts)
    for clip in results["clips"].values():
        for condition, runs in clip["runs"].items():
            text = runs["bare"]["text"] if reading == "bare" else reading_text(runs["chain"], reading, margin, rule)
            table[(language_group(clip["language"]), condition)] += score(clip["reference"], text, clip["language"], clip["duration_s"])
    return table


def tables(results: dict) -> str:
    """Per condition and language group: error rates of the bare engine and of the chain's readings,
    whether the target holds, and the seconds each system took (all clips of the condition)."""
    per = {r: counts_of(results, r) for r in ("bare", *READINGS)}
    groups = sorted({g for g, _ in per["bare"]}, key=GROUP_ORDER.index)
    seconds: dict = defaultdict(lambda: [0.0, 0.0])
    for clip in results["clips"].values():
        for condition, runs in clip["runs"].items():
            seconds[condition][0] += runs["bare"]["seconds"]
            seconds[condition][1] += runs["chain"]["seconds"]
    rows, misses = [], []
    for condition in results["conditions"]:
        pooled = {r: Counts() for r in per}
        for g in groups:
            if (g, condition) not in per["bare"]:
                continue
            c = {r: per[r][(g, condition)] for r in per}
            for r in per:
                pooled[r] += c[r]
            ok = c["chain"].rate <= c["bare"].rate + 0.5
            if not ok:
                misses.append(f"{condition} {g}")
            rows.append([condition, g, c["bare"].clips, c["bare"].rate, c["chain"].rate, c["cleaned"].rate,
                         c["recorded"].rate, "yes" if ok else "**no**", "", ""])
        if condition == "clean":  # the target there: as good as bare (groups above), and as before
            verdict = "unchanged" if pooled["chain"].errors == pooled["cleaned"].errors else "**changed**"
        else:
            verdict = "yes" if pooled["chain"].errors < pooled["bare"].errors else "**no**"
            if verdict != "yes":
                misses.append(f"{condition} pooled")
        rows.append([condition, "**pooled**", pooled["bare"].clips, pooled["bare"].rate, pooled["chain"].rate,
                     pooled["cleaned"].rate, pooled["recorded"].rate, verdict,
                     f"{seconds[condition][0]:.0f}", f"{seconds[condition][1]:.0f}"])
    header = ["condition", "group", "clips", "bare", "chain (kept)", "cleaned only", "recorded only",
              "chain ≤ bare + 0.5 (pooled: < bare; clean: = before)", "s bare", "s chain"]
    kept = defaultdict(lambda: [0, 0])
    for clip in results["clips"].values():
        for condition, runs in clip["runs"].items():
            for w in runs["chain"]["windows"]:
                if w["decodes"] == 2:
                    kept[condition][0 if w["kept"] == "cleaned" else 1] += 1
    lines = [markdown_table(header, rows), "",
             "Windows read twice (kept cleaned / as recorded): " +
             (", ".join(f"{c} {k[0]}/{k[1]}" for c, k in kept.items() if sum(k)) or "none"), "",
             "Target missed in: " + (", ".join(misses) or "none")]
    return "\n".join(lines)


def repeat_table(runs: list[dict]) -> str:
    """The target judged on several runs of the same files: per condition and group, the mean error
    rate of the bare engine and of the chain over the runs, each with its lowest and highest. One
    run cannot show a 0.5-point bar held, because the engine samples anew whenever a reading fails
    its checks (see ``bare_twice``); the means can. ``runs``: one ``{"bare": counts, "chain":
    counts}`` per run, each counts a ``counts_of`` table, {(group, condition): Counts}."""
    conditions = list(dict.fromkeys(c for _, c in runs[0]["bare"]))  # in the order they were run
    rows, misses = [], []

    def mean(rates: list[float]) -> float:
        return sum(rates) / len(rates)

    def spread(rates: list[float]) -> str:
        return f"{mean(rates):.1f} ({min(rates):.1f}–{max(rates):.1f})"

    for condition in conditions:
        pooled = [{s: Counts() for s in ("bare", "chain")} for _ in runs]
        for g in sorted({g for g, c in runs[0]["bare"] if c == condition}, key=GROUP_ORDER.index):
            rates = {s: [r[s][(g, condition)].rate for r in runs] for s in ("bare", "chain")}
            for i, r in enumerate(runs):
                for s in ("bare", "chain"):
                    pooled[i][s] += r[s][(g, condition)]
            ok = mean(rates["chain"]) <= mean(rates["bare"]) + 0.5
            if not ok:
                misses.append(f"{condition} {g}")
            rows.append([condition, g, runs[0]["bare"][(g, condition)].clips, spread(rates["bare"]), spread(rates["chain"]),
                         "yes" if ok else "**no**"])
        rates = {s: [p[s].rate for p in pooled] for s in ("bare", "chain")}
        better = mean(rates["chain"]) < mean(rates["bare"]) if condition != "clean" else mean(rates["chain"]) <= mean(rates["bare"]) + 0.5
        if not better:
            misses.append(f"{condition} pooled")
        rows.append([condition, "**pooled**", pooled[0]["bare"].clips, spread(rates["bare"]), spread(rates["chain"]),
                     "yes" if better else "**no**"])
    header = ["condition", "group", "clips", f"bare, mean of {len(runs)} (low–high)", f"chain, mean of {len(runs)} (low–high)",
              "chain ≤ bare + 0.5 on the means (pooled: <)"]
    return "\n".join([markdown_table(header, rows), "", "Target missed, on the means, in: " + (", ".join(misses) or "none")])


def margin_table(results: dict, margins: list[float]) -> str:
    """The rule at each margin, pooled over every group and noisy condition, and per group."""
    bare = counts_of(results, "bare")
    groups = sorted({g for g, _ in bare})
    rows = []
    for margin in [None, *margins]:
        table = counts_of(results, "chain", margin) if margin is not None else counts_of(results, "cleaned")
        noisy = Counts()
        worst = -1e9
        for (g, condition), c in table.items():
            if condition != "clean":
                noisy += c
            worst = max(worst, c.rate - bare[(g, condition)].rate)
        per_group = []
        for g in groups:
            gc = Counts()
            for (gg, condition), c in table.items():
                if gg == g and condition != "clean":
                    gc += c
            per_group.append(gc.rate)
        rows.append(["cleaned only" if margin is None else f"{margin:+.2f}", noisy.rate, worst, *per_group])
    bare_noisy, bare_groups = Counts(), defaultdict(Counts)
    for (g, condition), c in bare.items():
        if condition != "clean":
            bare_noisy += c
            bare_groups[g] += c
    rows.append(["bare", bare_noisy.rate, 0.0, *[bare_groups[g].rate for g in groups]])
    return markdown_table(["margin", "noisy pooled", "worst (group, condition) vs bare", *groups], rows)


def rule_table(results: dict) -> str:
    """Each way of choosing (``_rules``), recomputed from the same runs: the error rate pooled over
    every noisy condition, per condition pooled, and the cells (condition × group, and each noisy
    condition pooled) that miss the target against the bare engine of the same run."""
    bare = counts_of(results, "bare")
    conditions = results["conditions"]
    groups = sorted({g for g, _ in bare}, key=GROUP_ORDER.index)
    rows = []
    for name, rule in [("bare", None), ("cleaned only", None), *_rules().items()]:
        table = bare if name == "bare" else counts_of(results, "cleaned") if rule is None else counts_of(results, "chain", rule=rule)
        noisy, misses, per = Counts(), 0, []
        for condition in conditions:
            pooled, pooled_bare = Counts(), Counts()
            for g in groups:
                if (g, condition) in table:
                    pooled += table[(g, condition)]
                    pooled_bare += bare[(g, condition)]
                    misses += table[(g, condition)].rate > bare[(g, condition)].rate + 0.5
            if condition != "clean":
                noisy += pooled
                misses += pooled.errors >= pooled_bare.errors
            per.append(pooled.rate)
        rows.append([name, noisy.rate, "" if name == "bare" else misses, *per])
    return markdown_table(["rule", "all noisy, pooled", "cells missing the target", *conditions], rows)


def timing(clips: list[Clip], reps: int, engine_options: dict | None = None) -> str:
    """Seconds of two chains on the same files, interleaved (the order alternates each round):
    ``compare_cleaned`` on and off, or, given ``engine_options``, the default chain and the chain
    with those engine options."""
    from bench.ablate import _default_chain, with_options

    if engine_options:
        variants = {"default": _default_chain(),
                    json.dumps(engine_options): with_options("transcribe", engine_options=engine_options)(_default_chain())}
    else:
        variants = {f"compare_cleaned {state}": with_options("transcribe", compare_cleaned=state == "on")(_default_chain())
                    for state in ("on", "off")}
    systems = {name: ChainSystem(chain=steps) for name, steps in variants.items()}
    for system in systems.values():
        system.warm_up()
    totals = dict.fromkeys(systems, 0.0)
    for rep in range(reps):
        order = list(systems) if rep % 2 == 0 else list(reversed(systems))
        for clip in clips:
            for name in order:
                started = time.perf_counter()
                systems[name].processor.run_chain(clip.path, systems[name].profile)
                totals[name] += time.perf_counter() - started
    for system in systems.values():
        system.close()
    audio = sum(c.duration_s for c in clips) * reps
    (a, ta), (b, tb) = totals.items()
    return (f"clean audio, {len(clips)} clips x {reps} rounds ({audio:.0f} s of audio), interleaved: "
            f"{a} {ta:.1f} s, {b} {tb:.1f} s, ratio {ta / tb:.3f}")


def bare_twice(clips: list[Clip], everyone: list[Clip], conditions: list[str]) -> str:
    """The bare engine against itself: its error rate per condition and group in the cached run and
    in a second run of the same files. Whisper decodes a piece again at rising temperatures, by
    sampling, when a reading fails its checks, and that happens often in noise: this is how far
    one run of the same engine on the same audio moves, the floor under any chain-vs-bare gap."""
    bare = BareSystem()
    first, again = Store.of("bare", bare.fingerprint(), 1), Store.of("bare", bare.fingerprint(), 2)
    table: dict = defaultdict(lambda: [Counts(), Counts()])
    with tempfile.TemporaryDirectory(prefix="hushdrop-cleaning-") as tmp:
        for condition in conditions:
            for clip in clips:
                texts = []
                for store in (first, again):
                    value = store.get(condition, clip.id)
                    if value is None:
                        hyp = bare.transcribe(noisy_file(clip, condition, everyone, Path(tmp)))
                        value = {"text": hyp.text, "language": hyp.language, "seconds": hyp.seconds}
                        store.put(condition, clip.id, value)
                    texts.append(value["text"])
                for key in ((language_group(clip.language), condition), ("**pooled**", condition)):
                    for i, text in enumerate(texts):
                        table[key][i] += score(clip.reference, text, clip.language, clip.duration_s)
            print(f"  {condition}: done", flush=True)
    order = (*GROUP_ORDER, "**pooled**")
    rows = [[c, g, first_run.clips, first_run.rate, second.rate, second.rate - first_run.rate]
            for (g, c), (first_run, second) in sorted(table.items(), key=lambda kv: (conditions.index(kv[0][1]), order.index(kv[0][0])))]
    return markdown_table(["condition", "group", "clips", "bare", "bare again", "difference"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cleaning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=("tuning", "tuning-long", "heldout"), default="tuning",
                        help="tuning: our own speech, a sentence a clip; tuning-long: one recording per language, "
                        "its sentences joined; heldout: ../shared/heldout, only to measure")
    parser.add_argument("--languages", help="comma-separated language codes (default: all)")
    parser.add_argument("--noise", default=",".join(KINDS), help=f"noise kinds, or 'none' (default: {','.join(KINDS)})")
    parser.add_argument("--snr", default=",".join(map(str, SNRS_DB)), help="SNRs in dB (default: 0,5,10)")
    parser.add_argument("--no-clean", action="store_true", help="skip the clean condition")
    parser.add_argument("--margins", help="also tabulate the rule at these cleaned_margin values (from the cached runs)")
    parser.add_argument("--rules", action="store_true", help="also tabulate other ways of choosing each window's reading (from the same runs)")
    parser.add_argument("--prop-decrease", type=float, help="the chain's denoise prop_decrease (default: the stage's own); 1 gates at full strength")
    parser.add_argument("--engine-options", type=json.loads, help="the chain's transcribe engine_options, as JSON "
                        "(e.g. '{\"condition_on_previous_text\": true}')")
    parser.add_argument("--repeat", type=int, default=1, help="run every system N times (each run cached apart) and judge the target on the means")
    parser.add_argument("--bare-twice", action="store_true", help="instead: the bare engine against a second run of itself")
    parser.add_argument("--timing", type=int, default=0, help="instead: time compare_cleaned on/off on clean clips, N rounds "
                        "(with --engine-options: the default chain against the chain with those options)")
    args = parser.parse_args(argv)
    languages = set(args.languages.split(",")) if args.languages else None
    clips, everyone = clips_of(args.set, languages)
    if args.timing:
        print(timing(clips, args.timing, args.engine_options))
        return 0
    kinds = [] if args.noise == "none" else args.noise.split(",")
    for kind in kinds:
        if kind not in KINDS:
            parser.error(f"unknown noise {kind!r}: one of {', '.join(KINDS)}")
    conditions = ([] if args.no_clean else ["clean"]) + [f"{k}+{s}dB" for s in args.snr.split(",") for k in kinds]
    changes = {}
    if args.prop_decrease is not None:
        changes["denoise"] = {"prop_decrease": args.prop_decrease}
    if args.engine_options:
        changes["transcribe"] = {"engine_options": args.engine_options}
    if args.bare_twice:
        print(bare_twice(clips, everyone, conditions))
        return 0
    if args.repeat < 1:
        parser.error("--repeat needs at least 1 run")
    results = run(args.set, clips, everyone, conditions, changes)
    text = tables(results)
    if args.margins:
        text += "\n\n" + margin_table(results, [float(m) for m in args.margins.split(",")])
    if args.rules:
        text += "\n\n" + rule_table(results)
    if args.repeat > 1:
        counted = [{"bare": counts_of(results, "bare"), "chain": counts_of(results, "chain")}]
        for repetition in range(2, args.repeat + 1):
            again = run(args.set, clips, everyone, conditions, changes, repetition)
            counted.append({"bare": counts_of(again, "bare"), "chain": counts_of(again, "chain")})
        text += "\n\n" + repeat_table(counted)
    print(text)
    name = (f"cleaning-{args.set}" + (f"-prop{args.prop_decrease:g}" if args.prop_decrease is not None else "")
            + ("-" + "-".join(f"{k}{v}" for k, v in args.engine_options.items()) if args.engine_options else ""))
    write_json(RESULTS / f"{name}.json", results)
    (RESULTS / f"{name}.md").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
