"""``make bench``: accuracy (clean + noisy), speed, and docs/benchmarks.md from what they measured.

    python -m bench.run_all            # about 45-60 min on 2 cores when nothing is cached
    python -m bench.run_all --full     # every clip at every SNR (about 80 min more)
    python -m bench.run_all --report   # only rewrite docs/benchmarks.md from bench/results/

By default the noisy grid runs every clip at 5 dB (the SNR the targets name) and every
third clip at 0 and 10 dB, to keep ``make bench`` under an hour; cached results are
reused, so ``--full`` after a default run only computes what is missing.

The page mixes generated and hand-written text. Only what lies between a marker pair

    <!-- generated: begin NAME -->
    <!-- generated: end NAME -->

(NAME = overview, accuracy, speed) is replaced; everything outside the pairs, such as
the sections marked *Hand-written*, is kept byte for byte (``merge_generated``). A page
with no markers, or with broken ones, is left alone with an error, and so is the page
when ``bench/results/`` lacks ``accuracy.json`` or ``speed.json``: the figures on it
are never replaced by "not run yet".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import accuracy, speed
from bench.common import REPO, RESULTS, heldout_dir, machine, require_heldout

DOC = REPO / "docs" / "benchmarks.md"
CLEAN_TOLERANCE = 0.3  # points
RSS_LIMIT_BYTES = 1.5e9
OVERHEAD_LIMIT = 0.15


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="every clip at every SNR")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the generated parts of docs/benchmarks.md from bench/results/")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each system (default 3)")
    args = parser.parse_args(argv)
    require_heldout()
    started = time.perf_counter()
    acc_args = ["--every", "1" if args.full else "3", "--full-snr", "5"]
    speed_args = ["--repeats", str(args.repeats)]
    if not args.report:
        if not args.skip_accuracy:
            print(f"== accuracy: python -m bench.accuracy {' '.join(acc_args)}", flush=True)
            accuracy.main(acc_args)
        if not args.skip_speed:
            print(f"== speed: python -m bench.speed {' '.join(speed_args)}", flush=True)
            speed.main(speed_args)
    if not write_report(acc_args, speed_args):
        return 1
    print(f"\nwrote {DOC.relative_to(REPO)} ({(time.perf_counter() - started) / 60:.1f} min)")
    return 0


# ---------------------------------------------------------------------------
# targets


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**holds**" if ok else "**does not hold**")


def targets(acc: dict | None, spd: dict | None) -> list[list[str]]:
    rows = []
    if acc and "clean" in acc["conditions"]:
        agg = accuracy.aggregate(acc, lambda c: c["language"])
        worse = []
        for lang in accuracy._languages(acc):
            c, b = agg.get((lang, "chain", "clean")), agg.get((lang, "bare", "clean"))
            if c and b and c.rate - b.rate > CLEAN_TOLERANCE:
                worse.append(f"{lang} {c.rate - b.rate:+.1f}")
        rows.append(["clean: chain no worse than bare, within 0.3 points, per language",
                     "all languages within" if not worse else "worse in: " + ", ".join(worse), _verdict(not worse)])
    if acc:
        agg = accuracy.aggregate(acc, lambda c: accuracy._metric(c["language"]))
        for kind, rule in (("white", "beats"), ("hum", "beats"), ("babble", "no worse")):
            cond = f"{kind}+5dB"
            if cond not in acc["conditions"]:
                continue
            parts, ok = [], True
            for metric in ("WER", "CER"):
                c, b = agg.get((metric, "chain", cond)), agg.get((metric, "bare", cond))
                if not c or not b:
                    continue
                parts.append(f"{metric} {c.rate:.1f} vs {b.rate:.1f}")
                ok &= (c.rate < b.rate) if rule == "beats" else (c.rate <= b.rate + CLEAN_TOLERANCE)
            rows.append([f"5 dB {kind}: chain {rule}{' than' if rule == 'no worse' else ''} bare (pooled WER and CER)", "; ".join(parts), _verdict(ok)])
    if spd and "summary" in spd and "overhead_vs_transcribe" in spd["summary"]:
        s = spd["summary"]
        rows.append(["stages other than transcribe ≤ 15 % of the engine's time (10-min file, decoding included)",
                     f"{100 * s['overhead_vs_transcribe']:.1f} % ({s['overhead_seconds']:.1f} s of "
                     f"{s['chain_stages']['transcribe']:.1f} s); wall − transcribe: "
                     f"{100 * s['overhead_wall_vs_transcribe']:.1f} %",
                     _verdict(s["overhead_vs_transcribe"] <= OVERHEAD_LIMIT)])
    if spd and "summary" in spd and "chain" in spd["summary"]:
        rss = spd["summary"]["chain"]["peak_rss_mib"] * 2**20
        rows.append(["peak RSS < 1.5 GB, base model, one worker (10-min file)",
                     f"{rss / 1e9:.2f} GB ({rss / 2**20:.0f} MiB)", _verdict(rss < RSS_LIMIT_BYTES)])
    return rows


# ---------------------------------------------------------------------------


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ---------------------------------------------------------------------------
# the page: generated blocks between markers, hand-written text around them

_MARKER = re.compile(r"^<!-- generated: (begin|end) ([A-Za-z0-9_-]+) -->[ \t]*\r?$", re.MULTILINE)


class MarkerError(ValueError):
    """The page's markers are missing or malformed; the page is left as it is."""


def _begin(name: str) -> str:
    return f"<!-- generated: begin {name} -->"


def _end(name: str) -> str:
    return f"<!-- generated: end {name} -->"


def _body(text: str) -> str:
    """What goes between a begin line and its end line: the text, a blank line either side."""
    return "\n" + text.strip("\n") + "\n\n"


def generated_spans(page: str) -> dict[str, tuple[int, int]]:
    """Each block's name -> (start, end) of the text between its begin line and its end line."""
    spans: dict[str, tuple[int, int]] = {}
    open_name, open_at = None, 0
    for m in _MARKER.finditer(page):
        kind, name = m.group(1), m.group(2)
        line = page.count("\n", 0, m.start()) + 1
        if kind == "begin":
            if open_name is not None:
                raise MarkerError(f"line {line}: begin {name!r} inside block {open_name!r}")
            if name in spans:
                raise MarkerError(f"line {line}: block {name!r} appears twice")
            newline = page.find("\n", m.end())
            if newline < 0:
                raise MarkerError(f"line {line}: block {name!r} is never ended")
            open_name, open_at = name, newline + 1
        else:
            if name != open_name:
                raise MarkerError(f"line {line}: end {name!r} without its begin")
            spans[name] = (open_at, m.start())
            open_name = None
    if open_name is not None:
        raise MarkerError(f"block {open_name!r} is never ended")
    return spans


def merge_generated(page: str | None, blocks: dict[str, str]) -> str:
    """The page with each named block's text replaced and everything else kept byte for byte.

    ``page`` None (no page yet) gives the blocks alone, each between its markers. A block
    the page lacks is added at its end; a block on the page that ``blocks`` does not name
    is kept. A page without any marker raises ``MarkerError`` (it would be all hand-written).
    """
    if page is None:
        return "\n\n".join(_begin(n) + "\n" + _body(t) + _end(n) for n, t in blocks.items()) + "\n"
    spans = generated_spans(page)
    if not spans:
        raise MarkerError("no '<!-- generated: begin NAME -->' markers: the page would be overwritten")
    out, pos = [], 0
    for name, (start, end) in sorted(spans.items(), key=lambda item: item[1]):
        out += [page[pos:start], _body(blocks[name]) if name in blocks else page[start:end]]
        pos = end
    out.append(page[pos:])
    for name, text in blocks.items():
        if name not in spans:
            gap = "\n" if page.endswith("\n") else "\n\n"
            out.append(gap + _begin(name) + "\n" + _body(text) + _end(name) + "\n")
    return "".join(out)


def update_page(path: Path, blocks: dict[str, str]) -> None:
    """Write ``blocks`` into the page at ``path`` (created if missing) with ``merge_generated``."""
    page = path.read_text(encoding="utf-8") if path.is_file() else None
    merged = merge_generated(page, blocks)
    for name in sorted(generated_spans(page).keys() - blocks.keys()) if page is not None else ():
        print(f"note: {path.name}: block {name!r} is not generated any more; left as it is")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(merged, encoding="utf-8")


def write_report(acc_args: list[str], speed_args: list[str]) -> bool:
    """Rewrite the generated blocks of docs/benchmarks.md; False (page untouched) if it cannot."""
    from bench.common import markdown_table

    acc, spd = _load("accuracy.json"), _load("speed.json")
    missing = [name for name, data in (("accuracy.json", acc), ("speed.json", spd)) if data is None]
    if missing:
        print(f"bench/results/ has no {' or '.join(missing)}: {DOC.relative_to(REPO)} left as it is "
              "(run python -m bench.accuracy / bench.speed, or make bench)", file=sys.stderr)
        return False
    m = spd.get("machine") or machine()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "How accurate and how fast hushdrop's default chain is, next to the bare ASR engine it wraps,",
        "measured on real recordings with reference transcripts. The parts between `generated` markers",
        "(HTML comments) are written by `make bench` (`python -m bench.run_all`) from `bench/results/`;",
        "their prose is in `bench/run_all.py` and `bench/NOTES.md`. Sections marked *Hand-written* lie",
        "outside the markers and are kept as they are when the page is regenerated.",
        f"Generated {when}.",
        "",
        "## What is compared",
        "",
        "- **chain**: the `default` profile of `config.yaml` (normalize → resample → dehum → denoise →",
        "  transcribe → grammar → tag) through `pipeline.process.Processor.run_chain`, the code",
        "  `hushdrop run` runs, minus writing outputs. Whisper base, CPU int8, beam 5, word timestamps,",
        "  Silero VAD windows (2 s pauses, 400 ms pads), each window's 30 s pieces prompted with the text before",
        "  them (`condition_on_previous_text=True`; until 2026-12-07 `False`).",
        "- **bare**: the *same model object* (the process's cached engine) with nothing before or after it:",
        "  `faster_whisper.decode_audio(path, 16000)` then `WhisperModel.transcribe(audio, beam_size=5,",
        "  vad_filter=True)`, every other option at faster-whisper's default (language detection,",
        "  `condition_on_previous_text=True`, no word timestamps). `vad_filter=True` is faster-whisper's",
        "  documented way to transcribe real recordings; it keeps the comparison about what hushdrop adds.",
        "",
        "## Data and scoring",
        "",
        f"- The held-out set: {heldout_dir()} (60 clips, 7.3 min, 11 languages; tier A = human",
        "  references, tier B = references that are some engine's output). Read in place; never copied",
        "  into the repository. The scripts stop with a message when it is missing.",
        "- WER for en, de, es, fr, it, pt, ru; CER (spaces removed) for zh, yue, ja, ko; after",
        "  Whisper's normaliser (`whisper-normalizer`: English rules for en, the basic one otherwise) and",
        "  OpenCC traditional → simplified for zh and yue. Rates are pooled over the clips of a group",
        "  (total errors / total reference words or characters). Languages with one clip (de … ru) move",
        "  in steps of one word: read them as anecdotes.",
        "- Noisy variants (`bench/noise.py`, made at run time in a temporary folder): each clip decoded",
        "  to 16 kHz mono plus **white** Gaussian noise, **babble** (five other held-out clips at equal",
        "  power, summed), or **hum** (50 Hz with 100 and 150 Hz harmonics at −6 and −12 dB), scaled",
        "  to 0, 5 or 10 dB SNR over the whole clip; seeded by clip id.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores; {m['memory_gib']} GiB RAM; {m['os']}; Python {m['python']}",
        f"- {m['libraries']}",
        "- Shared with other engineers' test runs while measuring: timings are medians of alternating",
        "  runs, and the chain/bare ratio is the median of per-pair ratios.",
        "",
        "## Commands",
        "",
        "```",
        "make bench                                      # = .venv/bin/python -m bench.run_all",
        f"python -m bench.accuracy {' '.join(acc_args):<23} # what make bench runs for accuracy",
        f"python -m bench.speed {' '.join(speed_args):<26} # what make bench runs for speed",
        "python -m bench.run_all --full                  # every clip at 0, 5 and 10 dB",
        "python -m bench.accuracy --languages en,zh --noise white --snr 5   # a slice",
        "python -m bench.run_all --report                # rewrite the generated parts from bench/results/",
        "```",
        "",
        "Per-(system, condition, clip) results are cached in `bench/results/cache/` (git-ignored), keyed",
        "by the chain's options and the source of the stages, so reruns only compute what changed.",
        "",
        "## Targets",
        "",
    ]
    rows = targets(acc, spd)
    lines += [markdown_table(["target", "measured", "verdict"], rows) if rows else "No results yet.", ""]
    notes = REPO / "bench" / "NOTES.md"
    if notes.is_file():
        lines += [notes.read_text(encoding="utf-8").strip(), ""]
    overview, lines = lines, ["## Accuracy", ""]
    sub = acc.get("subset", {})
    if sub.get("every", 1) > 1:
        nth = {2: "2nd", 3: "3rd"}.get(sub["every"], f"{sub['every']}th")
        lines += [f"Noisy conditions other than {', '.join(f'{x} dB' for x in sub.get('full_snr', []))} ran on every "
                  f"{nth} clip ({sub.get('subset_clips')} of {sub.get('clips')}); compare within a "
                  f"column, not across SNRs.", ""]
    lines += [accuracy.markdown(acc), ""]
    accuracy_block, lines = lines, ["## Speed", ""]
    lines += [
        "The long recording is the held-out clips decoded to 16 kHz mono and joined with 0.5 s gaps",
        "(looped to length); the burst is 20 × 15 s files cut from it. Each timed run is a fresh",
        "process that loads the model and warms up on a 4 s clip first. RTF = processing seconds /",
        "audio seconds (lower is faster). Peak RSS = `getrusage(RUSAGE_SELF).ru_maxrss` of that",
        "process (model, audio, everything). ffmpeg runs as a child process next to it (35-60 MB",
        "peak by `/usr/bin/time` on the 10-minute file), not included.",
        "",
        speed.markdown(spd),
        "",
    ]
    blocks = {"overview": overview, "accuracy": accuracy_block, "speed": lines}
    try:
        update_page(DOC, {name: "\n".join(text) for name, text in blocks.items()})
    except MarkerError as error:
        print(f"{DOC.relative_to(REPO)} left as it is: {error}", file=sys.stderr)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
