"""Text utilities shared by engines, stages and the config loader, and the two functions that
make text from outside safe: :func:`terminal_text` for a terminal or a log line,
:func:`stored_text` for a transcript file."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# A "unit" is one CJK/kana character, one word, or one punctuation mark.
_UNIT_RE = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+(?:'[^\W_]+)*|[^\w\s]"
)
_CHAR_LOOP_RE = re.compile(r"(.{1,20}?)\1{19,}", re.S)  # a short pattern 20+ times inside a word


# When a repeated phrase counts as a loop. A phrase of k units loops when it occurs
# max(min_repeats, ceil(min_span / k)) times in a row. Two callers, two strictnesses:
#
# - an engine's own output (qwen3-asr's greedy decoding): a loop there costs a second
#   decode of the window, so only an unmistakable one counts, five repeats and ten units
#   at least: "no no no" is speech, ten "no"s or five "I think"s are not;
# - the finished transcript (the ``grammar`` stage): a loop there only loses its extra
#   copies, so shorter runs count, three repeats and six units: "no no no" and "哈哈哈哈"
#   stay, six "the"s or three "I think we"s go. ``repetition_min_repeats`` in the stage
#   options changes the three.
DECODER_MIN_REPEATS, DECODER_MIN_SPAN = 5, 10
TRANSCRIPT_MIN_REPEATS, TRANSCRIPT_MIN_SPAN = 3, 6


@dataclass(frozen=True)
class RepeatGuard:
    """Finds a phrase of 1..``max_unit`` units said over and over, and cuts it to one copy.

    A phrase of k units is a loop when it occurs ``max(min_repeats, ceil(min_span / k))``
    times in a row. The defaults are the engine-output thresholds; see
    ``DECODER_MIN_REPEATS`` and ``TRANSCRIPT_MIN_REPEATS`` above for why there are two.
    """

    max_unit: int = 15
    min_repeats: int = DECODER_MIN_REPEATS
    min_span: int = DECODER_MIN_SPAN

    def _loops(self, text: str) -> list[tuple[int, int, int]]:
        """(start, keep_end, end) character offsets: keep text[start:keep_end], drop up to end."""
        matches = list(_UNIT_RE.finditer(text))
        units = [m.group().lower() for m in matches]
        n = len(units)
        found = []
        i = 0
        while i < n:
            hit = None
            for k in range(1, min(self.max_unit, (n - i) // 2) + 1):
                needed = max(self.min_repeats, math.ceil(self.min_span / k))
                if i + needed * k > n:
                    continue
                count, j = 1, i + k
                while j + k <= n and units[j : j + k] == units[i : i + k]:
                    count, j = count + 1, j + k
                if count >= needed:
                    hit = (k, j)
                    break
            if hit is None:
                i += 1
                continue
            k, j = hit
            found.append((matches[i].start(), matches[i + k - 1].end(), matches[j - 1].end()))
            i = j
        return found

    def has_loop(self, text: str) -> bool:
        return bool(self._loops(text)) or _CHAR_LOOP_RE.search(text) is not None

    def cut(self, text: str) -> str:
        """``text`` with every loop reduced to a single occurrence of its phrase."""
        for _ in range(5):  # a cut can bring two halves of a longer loop together
            if not self.has_loop(text):
                break
            text = self._cut_once(text)
        return text

    def _cut_once(self, text: str) -> str:
        pieces, pos = [], 0
        for start, keep_end, end in self._loops(text):
            pieces.append(text[pos:keep_end])
            pos = end
        pieces.append(text[pos:])
        text = _CHAR_LOOP_RE.sub(r"\1", "".join(pieces))
        return re.sub(r"[ \t]{2,}", " ", text).strip()


def option_error_text(err: dict[str, Any], model: type[BaseModel] | None) -> str:
    """pydantic's message for one error of ``model``, with "did you mean" for a misspelled key.

    Used for every options model a person writes in config.yaml: settings, profiles,
    stage options and an engine's ``engine_options``.
    """
    text = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden" and model is not None and err["loc"]:
        key = str(err["loc"][-1])
        fields = list(model.model_fields)
        if len(err["loc"]) > 1:  # a nested model: find it by walking the field annotations
            fields = _nested_fields(model, err["loc"][:-1]) or fields
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
        text = f"unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(fields)}")
    return text


def _nested_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


# -- text from outside: shown on a terminal, written into a log or a transcript file --------

# Unicode's explicit bidirectional formatting characters: they reorder what follows them on
# screen, so a name "report\u202ewav.exe" reads "reportexe.vaw" (CVE-2021-42574, "Trojan Source").
BIDI_REORDERING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
BIDI_CONTROLS = BIDI_REORDERING | frozenset("\u061c\u200e\u200f")


def _terminal_escapes() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}  # C0, DEL, C1
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    table.update({ord(c): f"\\u{ord(c):04x}" for c in BIDI_CONTROLS | {"\u2028", "\u2029"}})
    # a lone surrogate: a file name's undecodable byte (os.fsdecode) as that byte, the way
    # names.display_name shows it; any other one by its code point
    table.update({c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)})
    table.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000) if c not in table})
    return table


_TERMINAL_ESCAPES = _terminal_escapes()


def terminal_text(value: object) -> str:
    """``str(value)`` as one line that is safe to print on a terminal or to write into a log.

    Every character that moves the cursor, ends a line, sends an escape sequence or reorders
    the text around it (C0 and C1 controls, DEL, line and paragraph separators, bidi
    controls) becomes a visible escape: ``\\n``, ``\\x1b``, ``\\u202e``; an undecodable byte
    of a file name becomes ``\\xNN``. So a file name can neither forge a log line nor clear
    or retitle the terminal of the person reading it. Everything else, any script or emoji
    included, is unchanged.
    """
    return str(value).translate(_TERMINAL_ESCAPES)


def _stored_text_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for c in (*range(0x20), *range(0x7F, 0xA0)):
        if c not in (0x09, 0x0A):
            table[c] = " " if chr(c).isspace() else None  # a vertical tab still separates two words
    table.update({c: None for c in range(0xD800, 0xE000)})  # a lone surrogate is not text (nor UTF-8)
    # embeddings, overrides and isolates reorder all the text after them (an RLO makes "exe.txt"
    # read "txt.exe"); the marks (LRM, RLM, ALM) that right-to-left text does use stay
    table.update({ord(c): None for c in BIDI_REORDERING})
    return table


_STORED_TEXT_TABLE = _stored_text_table()


def stored_text(text: str) -> str:
    """``text`` fit to go into a transcript file: control characters other than tab and newline
    (NUL, ESC, DEL, the C1 range), bidi embeddings, overrides and isolates, and lone surrogates
    are dropped, and one that separates
    words (CR, a vertical tab, a form feed, NEL) becomes a space. Text from an engine or from
    an edit on the page passes through here before any output format escapes it further."""
    return text.translate(_STORED_TEXT_TABLE)
