"""Text utilities shared by engines and stages."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# A "unit" is one CJK/kana character, one word, or one punctuation mark.
_UNIT_RE = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+(?:'[^\W_]+)*|[^\w\s]"
)
_CHAR_LOOP_RE = re.compile(r"(.{1,20}?)\1{19,}", re.S)  # a short pattern 20+ times inside a word


@dataclass(frozen=True)
class RepeatGuard:
    """Finds a phrase of 1..``max_unit`` units said over and over.

    A phrase of k units is a loop when it occurs ``max(min_repeats, ceil(min_span / k))``
    times in a row: "no no no" is speech, ten "no"s or five "I think"s are not.
    """

    max_unit: int = 15
    min_repeats: int = 5
    min_span: int = 10

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
