"""File names as users make them, and the names hushdrop gives its own files.

A name in an inbox can be any bytes the filesystem allows except ``/`` and NUL: not
valid UTF-8, control characters, 255 bytes long. Python hands such a name over as a
``str`` with surrogate escapes (``os.fsdecode``); it is stored and compared in that
form (as bytes in the ledger), so nothing about it is lost.

Names hushdrop creates from it (outputs, quarantine copies) must always be valid, and must
read as what they are (no bidi control turns "call\\u202egnp.txt" into "calltxt.png" on screen):
:func:`safe_stem` makes a readable UTF-8 stem that leaves room for a ``" (n)"``
counter and the longest suffix, and marks a changed name with a short hash of the
original bytes, so two long names that share a beginning still get distinct stems.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata

from hushdrop.pipeline.text import BIDI_CONTROLS

NAME_MAX = 255  # bytes in one path component on every filesystem hushdrop supports
# room kept for " (99999)" and the longest suffix hushdrop appends (".error.txt", ".json" …)
_RESERVED = len(" (99999)") + len(".error.txt") + 12


def display_name(name: str) -> str:
    """``name`` as text a person (and UTF-8) can show: undecodable bytes as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_lossless_text(name: str) -> bool:
    """True when ``name`` is valid UTF-8 with no control characters."""
    return display_name(name) == name and not any(unicodedata.category(c) == "Cc" for c in name)


# joiners shape Persian, Indic and emoji names; every other invisible format character goes
_KEPT_FORMAT_CHARACTERS = frozenset("\u200c\u200d")


def _hidden_or_control(c: str) -> bool:
    """Controls, bidi controls, line and paragraph separators and invisible format characters
    (zero width space, BOM, soft hyphen): what makes a name look other than it is."""
    category = unicodedata.category(c)
    return (
        category in ("Cc", "Cs", "Zl", "Zp") or (category == "Cf" and c not in _KEPT_FORMAT_CHARACTERS)
        or c in BIDI_CONTROLS
    )


def _clean(text: str) -> str:
    """Replace what cannot stand in a portable file name (:func:`_hidden_or_control`, and the
    characters a file system or shell gives meaning to) with '_'."""
    out = []
    for c in display_name(text).replace("\\x", "_x"):
        out.append("_" if _hidden_or_control(c) or c in '/\\:*?"<>|' else c)
    cleaned = "".join(out).strip().lstrip(".-")
    return cleaned or "recording"


def _truncate_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore").rstrip()


def safe_stem(name: str, budget: int = NAME_MAX - _RESERVED) -> str:
    """A stem for files named after ``name`` (its extension dropped): valid UTF-8, at most
    ``budget`` bytes, with ``~<hash>`` appended whenever the original had to change."""
    stem, _ = os.path.splitext(name)
    stem = stem or name
    cleaned = _clean(stem)
    if cleaned == stem and len(stem.encode("utf-8")) <= budget:
        return stem
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    return _truncate_utf8(cleaned, budget - len(tag)) + tag


def safe_name(name: str) -> str:
    """``name`` itself when it is portable and short enough, else a safe stem with its extension."""
    if (
        is_lossless_text(name) and not any(_hidden_or_control(c) for c in name)
        and len(name.encode("utf-8")) <= NAME_MAX - _RESERVED and not name.startswith((".", "-"))
    ):
        return name
    _, ext = os.path.splitext(name)
    ext = _clean(ext)[:12] if ext else ""
    if ext and not ext.startswith("."):
        ext = "." + ext
    return safe_stem(name, NAME_MAX - _RESERVED - len(ext.encode("utf-8"))) + ext
