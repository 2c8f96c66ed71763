"""Whisper's Mandarin prompt trick, measured: does a Simplified-Chinese prompt with punctuation lower zh CER?

    python -m bench.zh_prompt                       # zh variants + the others-check (clean speech)
    python -m bench.zh_prompt --others yue,ja,ko    # a different set of other languages

Whisper tends to write Mandarin in Traditional characters and without punctuation; a
prompt written in Simplified Chinese with punctuation (``以下是普通话的句子。``, "what
follows are Mandarin sentences.") is the widely used nudge towards Simplified output.
CER here is computed after the same conversion to Simplified on both hypothesis and
reference, so the script itself costs nothing: the question is only whether the prompt
changes which words Whisper hears. Two conversions are reported: hushdrop's own
(``script: simplified``, OpenCC tw2s, which also turns Whisper's Taiwan-style particle 著
into 着) and bench.common's (OpenCC t2s, which leaves that 著 alone and so counts it as
an error against a 着 in the reference).

Variants (each the repository's ``config.yaml`` with one change, through the code
``hushdrop run`` runs; ``bare`` is bench.common's bare engine):

- ``default`` / ``default+prompt``: the default profile (language auto), without and
  with ``engine_options: {initial_prompt: PROMPT}``; run on zh and on the other
  languages, to see whether the prompt raises anyone else's error rate.
- ``zh`` / ``zh+prompt`` / ``zh+hotwords``: language forced to zh, no glossary;
  the prompt as ``initial_prompt`` (when this was measured the chain decoded with
  ``condition_on_previous_text=False``, so faster-whisper used it for the first 30 s of each
  engine call only; now it stays in the prompt, before the text decoded since, until a piece needs
  a high temperature or that text crowds it out) or as
  ``hotwords`` (put before every 30 s window).
- ``meetings-zh`` / ``meetings-zh+prompt``: the shipped profile (zh, its glossary as
  hotwords), without and with the initial prompt.

Reads ``../shared/heldout/`` in place; results are cached like bench.accuracy's and
written to ``bench/results/zh_prompt.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import yaml

from bench.accuracy import run
from bench.common import (
    REPO, RESULTS, BareSystem, ChainSystem, Counts, load_manifest, markdown_table, score, write_json,
)
from bench.noise import CLEAN

PROMPT = "以下是普通话的句子。"


def rescore(clip: dict, text: str) -> Counts:
    """``bench.common.score`` after hushdrop's own conversion to Simplified on both sides."""
    from hushdrop.pipeline.script import convert_script

    language = clip["language"]
    if language in ("zh", "yue"):
        return score(convert_script(clip["reference"], "simplified", keep_tags=False),
                     convert_script(text, "simplified", keep_tags=False), language)
    return score(clip["reference"], text, language)


def _with_engine_options(chain: list, **engine_options) -> list:
    out = []
    for entry in chain:
        name = entry if isinstance(entry, str) else next(iter(entry))
        if name == "transcribe":
            options = {} if isinstance(entry, str) else dict(entry[name] or {})
            options["engine_options"] = {**options.get("engine_options", {}), **engine_options}
            entry = {name: options}
        out.append(entry)
    return out


class Variant(ChainSystem):
    """A profile of config.yaml with its language, glossary or engine options changed."""

    def __init__(self, name: str, profile: str = "default", language: str | None = None,
                 glossary: list | None = None, **engine_options):
        import tempfile

        from hushdrop.pipeline.config import parse_config
        from hushdrop.pipeline.process import Processor

        self.name = name
        self.config = REPO / "config.yaml"
        raw = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        own = raw["profiles"].setdefault(profile, {})
        chain = own.get("chain") or raw["profiles"]["default"]["chain"]
        if engine_options:
            own["chain"] = _with_engine_options(chain, **engine_options)
        if language is not None:
            own["language"] = language
        if glossary is not None:
            own["glossary"] = glossary
        self._tmp = tempfile.TemporaryDirectory(prefix="hushdrop-bench-")
        raw["workdir"] = self._tmp.name
        settings = parse_config(raw, self.config)
        self.profile = settings.profiles[profile]
        self.processor = Processor(settings)

    def describe(self) -> dict:
        d = super().describe()
        d.update(variant=self.name, language=self.profile.language, glossary=self.profile.glossary)
        return d


ZH_VARIANTS = {
    "default": dict(),
    "default+prompt": dict(initial_prompt=PROMPT),
    "zh": dict(language="zh", glossary=[]),
    "zh+prompt": dict(language="zh", glossary=[], initial_prompt=PROMPT),
    "zh+hotwords": dict(language="zh", glossary=[], hotwords=PROMPT),
    "meetings-zh": dict(profile="meetings-zh"),
    "meetings-zh+prompt": dict(profile="meetings-zh", initial_prompt=PROMPT),
}
OTHER_VARIANTS = ("bare", "default", "default+prompt")  # language auto: what a prompt in `default` would do


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zh_prompt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--others", default="yue,ja,ko,de,es,fr,it,pt,ru,en",
                        help="other languages for the does-it-hurt check (default: every other language)")
    parser.add_argument("--en-every", type=int, default=3, help="English: every Nth clip only (default 3)")
    args = parser.parse_args(argv)

    zh_clips = load_manifest(["zh"])
    others = [c for c in load_manifest([l for l in args.others.split(",") if l and l != "zh"])]
    english = [c for c in others if c.language == "en"][:: args.en_every]
    others = [c for c in others if c.language != "en"] + english

    systems: dict = {"bare": BareSystem()}
    for name, spec in ZH_VARIANTS.items():
        systems[name] = Variant(name, **spec)
    # one run over zh with every system, one over the others with the language-auto ones
    results_zh = run([(CLEAN, zh_clips)], systems)
    results_other = run([(CLEAN, others)], {n: systems[n] for n in OTHER_VARIANTS}) if others else {"clips": {}}

    # rescore with hushdrop's own conversion (script: simplified) on both sides; bench.common's
    # t2s is kept beside it as "t2s"
    for results in (results_zh, results_other):
        for clip in results["clips"].values():
            for key, r in clip["runs"].items():
                c = rescore(clip, r["text"])
                r.update(t2s_errors=r["errors"], t2s_ref=r["ref"], errors=c.errors, ref=c.ref,
                         sub=c.sub, ins=c.ins, **{"del": c.dele})
    agg: dict = defaultdict(Counts)
    t2s: dict = defaultdict(Counts)
    for results in (results_zh, results_other):
        for clip in results["clips"].values():
            for key, r in clip["runs"].items():
                system = key.split("/")[0]
                c = Counts(ref=r["ref"], sub=r["sub"], dele=r["del"], ins=r["ins"], clips=1, seconds=clip["duration_s"])
                agg[(clip["language"], system)] += c
                agg[((clip["language"], clip["tier"]), system)] += c
                t2s[(clip["language"], system)] += Counts(ref=r["t2s_ref"], sub=r["t2s_errors"], clips=1)

    zh_names = ["bare", *ZH_VARIANTS]
    rows = []
    for group, label in (("zh", "zh, all 13"), (("zh", "A"), "zh, tier A"), (("zh", "B"), "zh, tier B")):
        if (group, "bare") in agg:
            rows.append([label, agg[(group, "bare")].ref, *(agg[(group, s)].rate for s in zh_names)])
    rows.append(["zh, all 13, t2s scoring", t2s[("zh", "bare")].ref, *(t2s[("zh", s)].rate for s in zh_names)])
    zh_table = markdown_table(["clips", "ref chars", *zh_names], rows)

    per_clip = []
    for clip_id, clip in sorted(results_zh["clips"].items()):
        runs = clip["runs"]
        per_clip.append([clip_id[:40], clip["tier"], runs["bare/clean"]["ref"],
                         *(runs[f"{s}/clean"]["errors"] for s in zh_names)])
    clip_table = markdown_table(["zh clip", "tier", "ref", *zh_names], per_clip)

    languages = [l for l in dict.fromkeys(c.language for c in others)]
    rows = []
    for lang in languages:
        if (lang, "bare") in agg:
            metric = "CER" if lang in ("yue", "ja", "ko") else "WER"
            rows.append([lang, agg[(lang, "bare")].clips, metric, *(agg[(lang, s)].rate for s in OTHER_VARIANTS)])
    other_table = markdown_table(["language", "clips", "metric", *OTHER_VARIANTS], rows)

    text = "\n".join([
        f"Prompt: `{PROMPT}`", "",
        "zh, CER % (after hushdrop's `script: simplified` on both sides; last row: bench.common's t2s):", "",
        zh_table, "",
        "zh, errors per clip (characters):", "", clip_table, "",
        "Other languages, language detection on, with and without the prompt:", "", other_table, "",
    ])
    print()
    print(text)
    write_json(RESULTS / "zh_prompt.json", {"prompt": PROMPT, "zh": results_zh, "others": results_other})
    (RESULTS / "zh_prompt.md").write_text(text, encoding="utf-8")
    for s in systems.values():
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
