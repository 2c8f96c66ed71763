"""Subtitle cues from word times, the way subtitle tools cut them.

A transcript segment can be long (a 40-second sentence, a 292-character run-on); a
subtitle cue must be readable: at most two lines of about 42 characters (about 18 for
Chinese, Japanese and Korean, whose characters are twice as wide), on screen for at
most about 7 seconds. So each segment's text is cut into cues:

- the text is the segment's corrected text (grammar, glossary, script), cut into
  tokens: words, or single characters for Chinese and Japanese (no spaces are added
  between them);
- each token gets its time from the engine's word times, matched letter by letter
  (the corrected text may differ from the words in case, punctuation, spacing or a
  removed filler); a segment without word times is spread evenly over its span;
- tokens are added to a cue while it still fits; when the next one does not, the cue
  is cut at its best point: after a sentence end, else a comma or a pause, else as late
  as possible. A pause of a second or more always ends a cue;
- a cue's text is wrapped into balanced lines; a cue shorter than 0.8 s is held on
  screen a little longer, never over the next one.

txt and md keep whole segments; only srt and vtt use cues. Everything here is pure.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from difflib import SequenceMatcher
from typing import Iterable, Sequence

from hushdrop.pipeline.job import Segment

CJK_LANGUAGES = frozenset({"zh", "yue", "ja", "ko"})

# one token each: a Han character or kana (Chinese and Japanese are written without spaces)
_CHAR_TOKEN = r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"
_TOKEN_RE = re.compile(rf"\s+|{_CHAR_TOKEN}|(?:(?!{_CHAR_TOKEN})\S)+")
_OPENING = set("([{\"'“‘«「『（【《〈¿¡")
_SENTENCE_END = set(".!?。！？…‼⁇")
_CLAUSE_END = set(",;:，、；：—–")
_CLOSERS = set("\"'”’»」』）】》〉)]}")
_SPACED_CLOSERS = set("?!:;%»…,.)]}）】」』》〉")


@dataclass(frozen=True)
class CueRules:
    line_chars: int = 42  # per line, for text written with spaces
    cjk_line_chars: int = 18  # per line, for Chinese, Japanese and Korean (wide characters)
    max_lines: int = 2
    max_seconds: float = 7.0
    min_seconds: float = 0.8  # a shorter cue stays up this long if the next one leaves room
    pause_seconds: float = 1.0  # a pause this long between two words always ends a cue


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Token:
    text: str
    space: bool  # written with a space before it
    start: float = 0.0
    end: float = 0.0

    @cached_property
    def width(self) -> int:  # read only once the text is final
        return width(self.text)


# ---------------------------------------------------------------- tokens and their times


def tokenize(text: str) -> list[Token]:
    """Words (with their punctuation) and single Han/kana characters, in order."""
    tokens: list[Token] = []
    space = pending_space = False
    pending_open = ""  # an opening bracket or quote joins the token after it
    for m in _TOKEN_RE.finditer(text):
        piece = m.group()
        if piece.isspace():
            space = True
            continue
        if not any(c.isalnum() for c in piece):
            if all(c in _OPENING for c in piece) or not tokens:
                if not pending_open:
                    pending_space = space
                pending_open += piece
                space = False
                continue
            if not space:  # closing punctuation stays with the word before it
                tokens[-1].text += piece
                continue
            if all(c in _SPACED_CLOSERS for c in piece):  # French "quoi ?", "50 %": never starts a line
                tokens[-1].text += " " + piece
                space = False
                continue
        if pending_open:
            tokens.append(Token(pending_open + (" " if space else "") + piece, pending_space))
            pending_open = ""
        else:
            tokens.append(Token(piece, space))
        space = False
    if pending_open:
        if tokens:
            tokens[-1].text += pending_open
        else:
            tokens.append(Token(pending_open, False))
    if tokens:
        tokens[0].space = False
    return tokens


def _letters(text: str) -> list[str]:
    return [c for c in text.casefold() if c.isalnum()]


def time_tokens(tokens: list[Token], segment: Segment) -> None:
    """Give each token a start and end: from the word whose letters it shares, else spread
    evenly between its timed neighbours (the whole segment when it has no word times)."""
    a: list[str] = []
    a_token: list[int] = []
    for i, tok in enumerate(tokens):
        for c in _letters(tok.text):
            a.append(c)
            a_token.append(i)
    b: list[str] = []
    b_time: list[tuple[float, float]] = []
    for w in segment.words:
        letters = _letters(w.text)
        n = len(letters)
        span = max(0.0, w.end - w.start)
        for k, c in enumerate(letters):
            b.append(c)
            b_time.append((w.start + span * k / n, w.start + span * (k + 1) / n))
    known: list[tuple[float, float] | None] = [None] * len(tokens)
    if a and b:
        for block in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
            for k in range(block.size):
                i = a_token[block.a + k]
                t0, t1 = b_time[block.b + k]
                cur = known[i]
                known[i] = (t0, t1) if cur is None else (min(cur[0], t0), max(cur[1], t1))
    _fill_gaps(tokens, known, segment.start, segment.end)


def _fill_gaps(tokens: list[Token], known: list[tuple[float, float] | None], start: float, end: float) -> None:
    """Tokens without a time share the stretch between their timed neighbours by length."""
    i, n = 0, len(tokens)
    previous_end = start
    while i < n:
        if known[i] is not None:
            t0, t1 = known[i]
            t0 = max(t0, previous_end if i else t0)
            tokens[i].start, tokens[i].end = t0, max(t0, t1)
            previous_end = tokens[i].end
            i += 1
            continue
        j = i
        while j < n and known[j] is None:
            j += 1
        gap_end = max(previous_end, known[j][0] if j < n else max(end, previous_end))
        weights = [max(1, len(_letters(t.text))) for t in tokens[i:j]]
        total = sum(weights)
        cursor = previous_end
        for tok, weight in zip(tokens[i:j], weights):
            step = (gap_end - previous_end) * weight / total
            tok.start, tok.end = cursor, cursor + step
            cursor += step
        previous_end = cursor
        i = j


# ---------------------------------------------------------------- measuring and wrapping


def width(text: str) -> int:
    """Screen columns: a wide (CJK) character counts two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def is_cjk(text: str, language: str | None) -> bool:
    if language:
        return language in CJK_LANGUAGES
    letters = [c for c in text if c.isalnum()]
    return bool(letters) and sum(width(c) == 2 for c in letters) * 2 > len(letters)


def join(tokens: Sequence[Token]) -> str:
    return "".join((" " if t.space and i else "") + t.text for i, t in enumerate(tokens))


def span_width(tokens: Sequence[Token]) -> int:
    """``width(join(tokens))``, from the tokens' own widths."""
    return sum(t.width for t in tokens) + sum(1 for t in tokens[1:] if t.space)


def _ends(tok: Token, marks: set[str]) -> bool:
    text = tok.text.rstrip("".join(_CLOSERS))
    return bool(text) and text[-1] in marks


def wrap(tokens: Sequence[Token], limit: int, max_lines: int) -> list[str] | None:
    """The tokens as at most ``max_lines`` lines of at most ``limit`` columns, balanced;
    None when they do not fit. A single token always fits (it cannot be cut)."""
    n = len(tokens)
    total = span_width(tokens)
    if total <= limit or n == 1:
        return [join(tokens)]
    if max_lines < 2 or total > limit * max_lines + max_lines:
        return None
    if max_lines == 2:
        best: tuple[float, int] | None = None
        first = 0  # width of tokens[:j]
        for j in range(1, n):
            first += tokens[j - 1].width + (1 if j > 1 and tokens[j - 1].space else 0)
            second = total - first - (1 if tokens[j].space else 0)
            if first > limit or second > limit:
                continue
            cost = max(first, second) - (limit * 0.15 if _ends(tokens[j - 1], _SENTENCE_END | _CLAUSE_END) else 0)
            if best is None or cost < best[0]:
                best = (cost, j)
        return [join(tokens[: best[1]]), join(tokens[best[1]:])] if best else None
    lines: list[list[Token]] = [[]]
    for tok in tokens:  # more than two lines: fill greedily
        if lines[-1] and span_width(lines[-1]) + tok.width + (1 if tok.space else 0) > limit:
            lines.append([])
        lines[-1].append(tok)
    return [join(line) for line in lines] if len(lines) <= max_lines else None


# ---------------------------------------------------------------- cutting into cues


def _cut_quality(before: Token, after: Token) -> float:
    """How good a cut between two tokens is, 0..1: a sentence end, a comma, a pause."""
    quality = 1.0 if _ends(before, _SENTENCE_END) else 0.6 if _ends(before, _CLAUSE_END) else 0.0
    quality += 0.8 * min(max(0.0, after.start - before.end) / 0.6, 1.0)
    return min(quality, 1.0)


def _cut_run(tokens: list[Token], rules: CueRules, limit: int) -> list[list[Token]]:
    """The best cutting of tokens with no long pause between them into cues that fit.

    Dynamic programming over cut points: each cue costs 1, a cut costs more the worse a
    place it is (mid-phrase: 1.5; after a comma or in a pause: less; after a sentence:
    nothing), and a scrap of a cue (under a quarter full) costs extra. A cue fits when it
    lasts at most ``max_seconds`` and wraps into ``max_lines`` lines of ``limit`` columns;
    a single token always fits.
    """
    n = len(tokens)
    capacity = limit * rules.max_lines
    # prefix[k]: columns of tokens[:k] laid out in one line, counting every token's leading space
    spaced = [t.width + (1 if t.space else 0) for t in tokens]
    prefix = [0]
    for w in spaced:
        prefix.append(prefix[-1] + w)

    def line_width(a: int, b: int) -> int:  # tokens[a:b] as one line
        return prefix[b] - prefix[a] - (1 if tokens[a].space else 0)

    # last_line[b]: the first token of the longest last line ending before token b
    last_line = [0] * (n + 1)
    a = 0
    for b in range(1, n + 1):
        while a < b - 1 and line_width(a, b) > limit:
            a += 1
        last_line[b] = a

    def wraps(i: int, j: int) -> bool:
        end = j
        for _ in range(rules.max_lines - 1):
            if line_width(i, end) <= limit:
                return True
            start = max(last_line[end], i + 1)  # each line holds at least one token
            if line_width(start, end) > limit:
                return False
            end = start
        return line_width(i, end) <= limit or end - i == 1 and rules.max_lines == 1

    inf = float("inf")
    best = [0.0] + [inf] * n
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        cut = 0.0 if j == n else 1.5 * (1.0 - _cut_quality(tokens[j - 1], tokens[j]))
        for i in range(j - 1, -1, -1):
            single = i == j - 1
            if not single and (tokens[j - 1].end - tokens[i].start > rules.max_seconds or not wraps(i, j)):
                break  # a longer cue would not fit either
            fill = line_width(i, j) / capacity
            cost = best[i] + 1.0 + cut + (1.0 - fill / 0.25 if fill < 0.25 else 0.0)
            if cost < best[j]:
                best[j], back[j] = cost, i
    cues: list[list[Token]] = []
    j = n
    while j > 0:
        cues.append(tokens[back[j]:j])
        j = back[j]
    return cues[::-1]


def split_tokens(tokens: list[Token], rules: CueRules, limit: int) -> list[list[Token]]:
    """Cues for one segment's tokens: a pause of ``pause_seconds`` always ends one."""
    cues: list[list[Token]] = []
    run: list[Token] = []
    for tok in tokens:
        if run and tok.start - run[-1].end >= rules.pause_seconds:
            cues += _cut_run(run, rules, limit)
            run = []
        run.append(tok)
    if run:
        cues += _cut_run(run, rules, limit)
    return cues


def segment_cues(segment: Segment, language: str | None = None, rules: CueRules = CueRules()) -> list[Cue]:
    """The cues of one segment, before display-time adjustments."""
    tokens = tokenize(segment.text)
    if not tokens:
        return []
    time_tokens(tokens, segment)
    cjk = is_cjk(segment.text, segment.language or language)
    limit = rules.cjk_line_chars * 2 if cjk else rules.line_chars
    cues = []
    for part in split_tokens(tokens, rules, limit):
        lines = wrap(part, limit, rules.max_lines) or [join(part)]
        cues.append(Cue(part[0].start, max(part[-1].end, part[0].start), tuple(lines)))
    return cues


def build_cues(
    segments: Iterable[Segment],
    language: str | None = None,
    rules: CueRules = CueRules(),
    until: float | None = None,
) -> list[Cue]:
    """Subtitle cues for ``segments`` (``language``: the transcript's, for segments without
    their own); ``until``: the end of the recording, which no cue is held past."""
    cues: list[Cue] = []
    for segment in segments:
        if segment.text.strip():
            cues.extend(segment_cues(segment, language, rules))
    cues.sort(key=lambda c: c.start)
    out: list[Cue] = []
    for k, cue in enumerate(cues):
        end = cue.end
        next_start = cues[k + 1].start if k + 1 < len(cues) else None
        if end - cue.start < rules.min_seconds:
            end = cue.start + rules.min_seconds
            if until is not None:
                end = min(end, max(until, cue.end))
        if next_start is not None and end > next_start:
            end = next_start  # never over the next cue (sorted: next_start >= cue.start)
        out.append(Cue(round(cue.start, 3), round(end, 3), cue.lines))
    return out


# ---------------------------------------------------------------- a cue's text in a file

_ARROW_RE = re.compile(r"-{2,}>")


def _cue_lines(cue: Cue) -> list[str]:
    """The cue's lines, each one line of text: no line break, no blank line (which ends a cue)."""
    return [line for line in (" ".join(text.split()) for text in cue.lines) if line]


def srt_text(cue: Cue) -> str:
    """A cue's text for an .srt file. SubRip has no escapes, and its readers (ffmpeg's among
    them) start a new cue at any line that holds a timing arrow, so every ``-->`` becomes ``→``."""
    return "\n".join(_ARROW_RE.sub("→", line) for line in _cue_lines(cue))


def vtt_text(cue: Cue) -> str:
    """A cue's text for a .vtt file, escaped as WebVTT requires: ``&``, ``<`` and ``>`` as
    character references, so no text opens a tag and no ``-->`` is left in a cue (``--&gt;``
    reads the same on screen)."""
    return "\n".join(
        line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for line in _cue_lines(cue)
    )
