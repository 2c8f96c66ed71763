"""Text utilities shared by engines, stages and the config loader."""

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
