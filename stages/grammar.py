"""grammar: rule-based clean-up of the engine's text, per language.

Each rule is a small function plus data: the languages it applies to and
before/after examples (``tests/stages/test_grammar.py`` runs every example, and
fails for a rule without one). Rules change segment text only; word entries keep
what the engine heard, with its times, and ``Segment.raw_text`` keeps the engine's text.

A Chinese glossary term is matched in either script (:mod:`pipeline.script`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from pydantic import Field, field_validator

from hushdrop.pipeline.job import Job, Segment
from hushdrop.pipeline.script import SCRIPT_LANGUAGES, convert_script
from hushdrop.pipeline.text import TRANSCRIPT_MIN_REPEATS, TRANSCRIPT_MIN_SPAN, RepeatGuard
from hushdrop.stages.base import Stage, StageOptions

CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
CJK_LANGUAGES = {"zh", "yue", "ja"}


@dataclass(frozen=True)
class Rule:
    name: str
    languages: frozenset[str] | None  # None: every language
    apply: Callable[[str, "GrammarContext"], str]
    examples: tuple[tuple[str, str], ...]
    optional: bool = False  # runs only when switched on in the options


@dataclass(frozen=True)
class GrammarContext:
    language: str = "en"
    glossary: tuple[str, ...] = ()
    min_repeats: int = TRANSCRIPT_MIN_REPEATS
    # the text goes on a sentence that an earlier segment began (that one did not end with . ! or ?)
    continues_sentence: bool = False


# ---------------------------------------------------------------- the rules


def collapse_whitespace(text: str, ctx: GrammarContext) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,.;:!?%)\]}])", r"\1", text)


def dedupe_punctuation(text: str, ctx: GrammarContext) -> str:
    text = re.sub(r"([,;:])\1+", r"\1", text)
    text = re.sub(r"([!?])\1+", r"\1", text)
    return re.sub(r"(?<!\.)\.\.(?!\.)", ".", text)


def space_after_punctuation(text: str, ctx: GrammarContext) -> str:
    # "end.Next" -> "end. Next", but leave "3.5", "e.g." and "U.S." alone
    text = re.sub(r"(?<=[a-z]{2})([.!?])(?=[A-Z][a-z])", r"\1 ", text)
    return re.sub(r"(?<=[A-Za-z]),(?=[A-Za-z])", ", ", text)


def capitalise_sentences(text: str, ctx: GrammarContext) -> str:
    text = re.sub(r"\bi\b(?=(?:'[a-z]+)?(?:\s|$|[,.!?]))", "I", text)
    # a segment's first word starts a sentence only where the segment before it ended one: Whisper
    # splits a long sentence into segments ("...nor of the circumstances" | "which led me...")
    starts = r"([.!?]\s+)" if ctx.continues_sentence else r"(^|[.!?]\s+)"
    return re.sub(starts + r"([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends with a sentence's last mark (in any script), closing quotes or brackets aside."""
    return re.search(r"[.!?…。！？][\"'”’)\]]*\s*$", text) is not None


_FULL_WIDTH = {",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；"}


def full_width_punctuation(text: str, ctx: GrammarContext) -> str:
    def swap(m: re.Match) -> str:
        return m.group(1) + _FULL_WIDTH[m.group(2)]

    # punctuation right after a CJK character, where no digit follows (3.5 stays)
    text = re.sub(rf"([{CJK}])\s*([,.?!:;])(?!\d)\s*", swap, text)
    return text


def cjk_latin_spacing(text: str, ctx: GrammarContext) -> str:
    text = re.sub(rf"([{CJK}])([A-Za-z0-9])", r"\1 \2", text)
    return re.sub(rf"([A-Za-z0-9%])([{CJK}])", r"\1 \2", text)


def remove_cjk_inner_spaces(text: str, ctx: GrammarContext) -> str:
    return re.sub(rf"(?<=[{CJK}，。？！：；、])\s+(?=[{CJK}，。？！：；、])", "", text)


def collapse_repetition_loops(text: str, ctx: GrammarContext) -> str:
    """A phrase said over and over (the classic ASR hallucination) keeps one copy.

    A phrase of k words or CJK characters is a loop when it repeats
    ``max(min_repeats, ceil(TRANSCRIPT_MIN_SPAN / k))`` times in a row: "no no no" and
    "哈哈哈哈" are speech, six "the"s or three "I think we"s are not (pipeline/text.py
    says why the transcript's thresholds are lower than an engine's).
    """
    return RepeatGuard(min_repeats=ctx.min_repeats, min_span=TRANSCRIPT_MIN_SPAN).cut(text)


def _said(text: str) -> str:
    """A segment's words without case, spacing or punctuation: what a repeated sentence is compared on."""
    return re.sub(r"[\W_]+", "", text.casefold())


def without_repeated_segments(segments: list[Segment], min_repeats: int = TRANSCRIPT_MIN_REPEATS) -> tuple[list[Segment], int]:
    """``segments`` with every run of ``min_repeats`` or more in a row saying the same words cut to
    its first, and how many were dropped: :func:`collapse_repetition_loops` across segments. On
    noise or a mumble Whisper repeats a sentence, one segment each, until its window ends;
    fewer times in a row can be speech ("Hello? Hello?")."""
    kept: list[Segment] = []
    run: list[Segment] = []  # the current run of segments saying the same words

    def close_run() -> int:
        if len(run) >= min_repeats:
            kept.append(run[0])
            return len(run) - 1
        kept.extend(run)
        return 0

    dropped = 0
    for segment in segments:
        if run and _said(segment.text) and _said(segment.text) == _said(run[0].text):
            run.append(segment)
            continue
        dropped += close_run()
        run = [segment]
    dropped += close_run()
    return kept, dropped


_FILLERS = {
    "en": r"\b(?:u+m+|u+h+|e+r+m*|h+m+|m+h*m+)\b[,.]?\s*",
    "zh": r"[嗯呃额](?:[，,。]\s*)?",
    "yue": r"[嗯呃](?:[，,。]\s*)?",
}


def remove_fillers(text: str, ctx: GrammarContext) -> str:
    pattern = _FILLERS.get(ctx.language)
    if not pattern:
        return text
    cleaned = re.sub(pattern, "", text, flags=re.I)
    return re.sub(r"\s{2,}", " ", cleaned).strip()


def _squash(s: str) -> str:
    return re.sub(r"[\s\-_.]", "", s).lower()


def apply_glossary(text: str, ctx: GrammarContext) -> str:
    """Write glossary terms as the glossary spells them.

    Matches the term case-insensitively and with its spaces, dots or hyphens
    dropped or added ("pie torch" stays, "py torch" and "pytorch" become "PyTorch").
    """
    for term in ctx.glossary:
        squashed = _squash(term)
        if len(squashed) < 2:
            continue
        letters = [re.escape(c) for c in squashed]
        if term.isascii():
            pattern = r"(?<![\w])" + r"[\s\-_.]?".join(letters) + r"(?![\w])"
        else:
            pattern = r"\s?".join(letters)
        text = re.sub(pattern, lambda m, t=term: t, text, flags=re.I)
        if not term.isascii() and ctx.language in SCRIPT_LANGUAGES:
            text = _glossary_any_script(text, term, squashed)
    return text


def _glossary_any_script(text: str, term: str, squashed: str) -> str:
    """A Chinese term found in the other script (the engine wrote 季度復盤, the glossary
    says 季度复盘) is written as the glossary spells it."""
    folded = convert_script(text, "simplified", keep_tags=False)
    if len(folded) != len(text):  # a phrase conversion changed lengths: positions would not map
        return text
    target = convert_script(squashed, "simplified", keep_tags=False)
    pattern = r"\s?".join(re.escape(c) for c in target)
    for m in reversed(list(re.finditer(pattern, folded, flags=re.I))):
        text = text[: m.start()] + term + text[m.end():]
    return text


RULES: tuple[Rule, ...] = (
    Rule("collapse_whitespace", None, collapse_whitespace, (("  hello   world ,  ok ", "hello world, ok"),)),
    Rule("dedupe_punctuation", None, dedupe_punctuation, (("Really?? Yes!! Fine,, ok..", "Really? Yes! Fine, ok."),)),
    Rule(
        "remove_fillers",
        frozenset({"en", "zh", "yue"}),
        remove_fillers,
        (("Um, so we uh decided to hmm go.", "so we decided to go."),),
        optional=True,
    ),
    Rule(
        "collapse_repetition_loops",
        None,
        collapse_repetition_loops,
        (
            ("I think I think I think I think I think we should go", "I think we should go"),
            ("no no no", "no no no"),
            ("the the the the the the the end", "the end"),
            ("我们我们我们我们今天开会", "我们今天开会"),
            ("好好学习", "好好学习"),
            ("哈哈哈哈", "哈哈哈哈"),
        ),
    ),
    Rule(
        "remove_cjk_inner_spaces",
        CJK_LANGUAGES,
        remove_cjk_inner_spaces,
        (("我们 今天 开会 。", "我们今天开会。"),),
    ),
    Rule(
        "full_width_punctuation",
        CJK_LANGUAGES,
        full_width_punctuation,
        (("你好,今天天气很好.你呢?", "你好，今天天气很好。你呢？"), ("增长了3.5个百分点", "增长了3.5个百分点")),
    ),
    Rule(
        "cjk_latin_spacing",
        CJK_LANGUAGES,
        cjk_latin_spacing,
        (("我们用Python写了3个API接口", "我们用 Python 写了 3 个 API 接口"),),
    ),
    Rule(
        "space_after_punctuation",
        frozenset({"en", "de", "fr", "es", "it", "pt", "nl"}),
        space_after_punctuation,
        (("It ended.Then we left,quickly.", "It ended. Then we left, quickly."), ("Pi is 3.14, e.g. here", "Pi is 3.14, e.g. here")),
    ),
    Rule(
        "capitalise_sentences",
        frozenset({"en"}),
        capitalise_sentences,
        (("hello there. how are you? i'm fine, i think.", "Hello there. How are you? I'm fine, I think."),),
    ),
    Rule(
        "apply_glossary",
        None,
        apply_glossary,
        (("we trained it in py torch on kubernetes", "we trained it in PyTorch on Kubernetes"),),
    ),
)

EXAMPLE_GLOSSARY = ("PyTorch", "Kubernetes")  # the glossary the rule examples are written for


def rule_names() -> list[str]:
    return [r.name for r in RULES]


class GrammarOptions(StageOptions):
    remove_fillers: bool = False
    repetition_min_repeats: int = Field(TRANSCRIPT_MIN_REPEATS, ge=2, le=20, description="repeats of a phrase that count as a loop")
    disable: list[str] = Field(default_factory=list, description="names of rules to switch off")

    @field_validator("disable")
    @classmethod
    def _known_rules(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(rule_names()))
        if unknown:
            raise ValueError(f"unknown rule(s) {unknown}; known rules: {rule_names()}")
        return names


class Grammar(Stage):
    name = "grammar"
    Options = GrammarOptions

    def active_rules(self, language: str | None) -> list[Rule]:
        rules = []
        for rule in RULES:
            if rule.name in self.options.disable:
                continue
            if rule.optional and not getattr(self.options, rule.name, False):
                continue
            if rule.languages is not None and (language or "") not in rule.languages:
                continue
            rules.append(rule)
        return rules

    def fix(self, text: str, language: str | None, glossary: tuple[str, ...] = (), continues_sentence: bool = False) -> str:
        ctx = GrammarContext(language=language or "", glossary=glossary, min_repeats=self.options.repetition_min_repeats,
                             continues_sentence=continues_sentence)
        for rule in self.active_rules(language):
            text = rule.apply(text, ctx)
        return text

    def run(self, job: Job) -> None:
        glossary = tuple(job.glossary)
        before = ""  # the last segment's text that holds any
        for segment in job.transcript.segments:
            language = job.language_of(segment)  # English in a translation
            if segment.raw_text is None:
                segment.raw_text = segment.text
            segment.text = self.fix(segment.text, language, glossary, continues_sentence=bool(before) and not ends_sentence(before))
            before = segment.text or before
        job.transcript.segments = [s for s in job.transcript.segments if s.text]
        if "collapse_repetition_loops" not in self.options.disable:
            segments, dropped = without_repeated_segments(job.transcript.segments, self.options.repetition_min_repeats)
            if dropped:
                job.transcript.segments = segments
                job.note(f"grammar: {dropped} segment(s) dropped that said the sentence before them again, "
                         f"{self.options.repetition_min_repeats} or more times in a row (a decoding loop)")
