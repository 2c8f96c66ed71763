"""Hostile text for the output and terminal tests, and the checks that each output holds it inert.

A recording's name and a transcript edited on the page are the two ways text from outside
reaches the outbox; :func:`assert_outputs_inert` reads a written set back with real parsers
(markdown-it for md, ffmpeg's SubRip and WebVTT demuxers for srt and vtt) and checks that
nothing in that text became markup, a control character, or a cue of its own.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

from hushdrop.pipeline.audio import ffmpeg_exe
from hushdrop.pipeline.text import terminal_text

# markup for any Markdown viewer that passes HTML through (Nextcloud, editors)
HTML_NAME = "<img src=x onerror=alert(1)>.wav"
# clears the screen and reverses what follows on a terminal
TERMINAL_NAME = "call\x1b[2J\u202egnp.wav"
# a complete, well-formed line of hushdrop's text log after the newline
FORGED_LINE = "2026-01-01 00:00:00 INFO    [watch] forged"
NEWLINE_NAME = f"call\n{FORGED_LINE}.wav"

# segment texts (engine output or edits): control bytes, a timing line inside a cue, a blank
# line that would end a cue, and markup
HOSTILE_TEXTS = (
    "Alpha\x00 beta\x1b[2J gamma\x7f delta\x9b.",
    "one --> two\n\nthree 00:00:05,000 --> 00:00:09,000 forged\r\n\n",
    "<b>bold</b> & <script>alert(1)</script> [link](javascript:alert(1)) ---> end",
)

# what no transcript file may hold: C0 controls but tab and newline, DEL, C1 controls
FORBIDDEN_IN_FILES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# what no terminal or log line may hold: every control, line separators, bidi controls
FORBIDDEN_ON_TERMINAL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_SRT_TIME = r"\d{2}:\d{2}:\d{2},\d{3}"
_VTT_TIME = r"\d{2}:\d{2}:\d{2}\.\d{3}"


def cue_times_by_ffmpeg(path: Path) -> list[tuple[int, int]]:
    """(start, end) in milliseconds of every cue ffmpeg's demuxer reads from a subtitle file."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0", "-c", "copy", "-f", "framecrc", "-"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "#tb 0: 1/1000" in proc.stdout, proc.stdout
    rows = [line.split(",") for line in proc.stdout.splitlines() if line and not line.startswith("#")]
    return [(int(row[2]), int(row[2]) + int(row[3])) for row in rows]


def _ms(stamp: str) -> int:
    h, m, rest = stamp.split(":")
    s, ms = re.split(r"[,.]", rest)
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)


def subtitle_blocks(text: str, fmt: str) -> list[tuple[int, int, list[str]]]:
    """(start ms, end ms, text lines) of each cue, read strictly: a block is an index (srt), a
    timing line and one or more non-empty text lines, and blocks are separated by one blank line."""
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n"), text[:40]
        text = text.removeprefix("WEBVTT\n\n")
    timing = re.compile(rf"({_SRT_TIME if fmt == 'srt' else _VTT_TIME}) --> ({_SRT_TIME if fmt == 'srt' else _VTT_TIME})")
    cues = []
    for number, block in enumerate(text.rstrip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        if fmt == "vtt" and lines[0].startswith("NOTE "):
            continue
        if fmt == "srt":
            assert lines.pop(0) == str(number), block
        match = timing.fullmatch(lines.pop(0))
        assert match, block
        assert lines and all(line.strip() for line in lines), f"a cue without text or with a blank line: {block!r}"
        cues.append((_ms(match.group(1)), _ms(match.group(2)), lines))
    return cues


def assert_outputs_inert(files: dict[str, Path], name: str, texts: list[str]) -> None:
    """Every output in ``files`` (format → path) shows ``name`` and ``texts`` as plain text only."""
    from markdown_it import MarkdownIt

    for fmt, path in files.items():
        assert not FORBIDDEN_IN_FILES.search(path.read_text(encoding="utf-8")), (fmt, path.read_text())
    if "json" in files:
        json.loads(files["json"].read_text())
    if "md" in files:
        rendered = MarkdownIt("commonmark").render(files["md"].read_text())  # commonmark passes raw HTML through
        assert not re.search(r"<(?!/?(h1|p|ul|li|strong|em|hr|br)\b)", rendered), rendered
        title = re.search(r"<h1>(.*)</h1>", rendered).group(1)
        assert html.unescape(title) == " ".join(terminal_text(name).split()), title  # the name, controls as escapes
        shown = " ".join(html.unescape(re.sub(r"<[^>]+>", "", rendered)).split())
        for text in texts:  # each segment renders as its own words: no link, no emphasis, no tag
            assert " ".join(FORBIDDEN_IN_FILES.sub("", text).split()) in shown, (text, rendered)
    for fmt in ("srt", "vtt"):
        if fmt not in files:
            continue
        cues = subtitle_blocks(files[fmt].read_text(), fmt)
        assert cues, fmt
        for _, _, lines in cues:
            assert not any("-->" in line for line in lines), (fmt, lines)
            if fmt == "vtt":
                assert not any(re.search(r"<|&(?!(amp|lt|gt);)", line) for line in lines), lines
        assert cue_times_by_ffmpeg(files[fmt]) == [(start, end) for start, end, _ in cues], fmt
