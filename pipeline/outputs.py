"""Transcript files: txt, srt, vtt, json and md, committed atomically as one set.

Every file is written under a hidden temporary name, given its mode (``output_mode``,
0640 by default) and group (``output_group``) and fsynced; then all are given their
final names with hard links that fail rather than overwrite, and the directory is
fsynced. A reader of the outbox never sees a half-written file, and a name already
taken (an earlier recording with the same name) is never overwritten: the new set
gets "name (2)", "name (3)" …

A commit is two calls, so that a caller can record the names in between (watch mode writes
them to its ledger first): :func:`plan_outputs` picks the first free names,
:func:`write_outputs` writes there; :func:`commit_outputs` does both. The JSON output is the
job's record (:meth:`pipeline.job.Job.to_record`) as it is.

txt and md keep whole segments; srt and vtt are cut into readable cues from the word
times (:mod:`pipeline.subtitles`).

Text from outside (the recording's name, a transcript edited on the page) is made fit for
each format: control characters never reach any file (:func:`pipeline.text.stored_text`);
md escapes HTML and Markdown, so a name cannot become markup in a viewer that renders it;
srt and vtt cue text never holds a timing arrow or a blank line, and vtt escapes ``& < >``.

With ``subtitle_names: language`` the subtitles are ``name.<lang>.srt`` / ``.vtt``, which
media servers (Plex, Jellyfin) and players pick up beside a video of the same name.

A translation (the profile's ``task: translate``) says so in the md header and in the JSON
(``task``, ``text_language``), beside the language spoken; its subtitles are English ones.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from hushdrop.pipeline import fsutil
from hushdrop.pipeline.fsutil import candidate_stems, fsync_dir, link_no_clobber
from hushdrop.pipeline.job import Job, Segment
from hushdrop.pipeline.names import safe_stem
from hushdrop.pipeline.subtitles import Cue, build_cues, srt_text, vtt_text
from hushdrop.pipeline.text import stored_text, terminal_text

NO_SPEECH = "(no speech detected)"
DEFAULT_MODE = 0o640
SUBTITLE_FORMATS = ("srt", "vtt")


def clock(seconds: float, sep: str = ".", hours_always: bool = True) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(millis, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def short_clock(seconds: float) -> str:
    return clock(seconds)[:8]


def text_segments(job: Job) -> list[Segment]:
    """The segments that have text, their text fit for a file (:func:`pipeline.text.stored_text`)."""
    segments = []
    for segment in job.transcript.segments:
        text = stored_text(segment.text)
        if text:
            segments.append(segment if text == segment.text else replace(segment, text=text))
    return segments


def render_txt(job: Job) -> str:
    if job.transcript.no_speech or not text_segments(job):
        return NO_SPEECH + "\n"
    if job.show_timestamps:
        return "".join(f"[{short_clock(s.start)}] {s.text}\n" for s in text_segments(job))
    return " ".join(s.text for s in text_segments(job)) + "\n"


def subtitle_cues(job: Job) -> list[Cue]:
    """The transcript as subtitle cues: at most 2 lines of ~42 characters (~18 CJK), ~7 s each."""
    until = job.facts.duration_s if job.facts and job.facts.duration_s else None
    # each segment's line breaks follow the language of its text (English in a translation)
    segments = [replace(s, language=job.language_of(s)) for s in text_segments(job)]
    return build_cues(segments, job.text_language, until=until)


def render_srt(job: Job) -> str:
    blocks = [
        f"{i}\n{clock(c.start, ',')} --> {clock(c.end, ',')}\n{srt_text(c)}\n"
        for i, c in enumerate(subtitle_cues(job), start=1)
    ]
    return "\n".join(blocks)


def render_vtt(job: Job) -> str:
    blocks = ["WEBVTT\n"]
    if job.transcript.no_speech:
        blocks.append(f"NOTE {NO_SPEECH}\n")
    blocks += [f"{clock(c.start)} --> {clock(c.end)}\n{vtt_text(c)}\n" for c in subtitle_cues(job)]
    return "\n".join(blocks)


# DEL and the C1 controls, which JSON allows raw in a string, as \u escapes: ``cat`` on the
# file must not hand a terminal an escape sequence (json.dumps escapes the C0 range itself)
_JSON_CONTROL_ESCAPES = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}


def json_text(record: dict) -> str:
    """The JSON output's text for ``record``: readable UTF-8, every control character escaped."""
    return json.dumps(record, ensure_ascii=False, indent=2).translate(_JSON_CONTROL_ESCAPES) + "\n"


def render_json(job: Job) -> str:
    """The job's record (:meth:`pipeline.job.Job.to_record`) as the JSON output."""
    return json_text(job.to_record())


# HTML-significant characters as character references (Markdown passes raw HTML through, and
# not every renderer knows backslash escapes for them); Markdown's own inline markers
# (emphasis, code, links and images, headings, tables, strikethrough) backslash-escaped,
# "_" only where it could open or close emphasis (not inside a word: "call_03" stays as it is)
_MARKDOWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", **{c: "\\" + c for c in "\\`*[]#|~"}})
_MARKDOWN_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
_MARKDOWN_BLOCK_START = re.compile(r"[-+=]|\d{1,9}(?=[.)])")  # a list item, a setext underline


def markdown_text(text: str, line_start: bool = False) -> str:
    """``text`` as literal Markdown text on one line: it renders as itself, never as HTML,
    a link or emphasis. ``line_start``: it begins a line, so a leading ``-``, ``+``, ``=`` or
    ``1.`` is escaped too (it would start a list or underline a heading)."""
    text = _MARKDOWN_UNDERSCORE.sub(r"\\_", " ".join(str(text).split()).translate(_MARKDOWN_ESCAPES))
    if line_start and (m := _MARKDOWN_BLOCK_START.match(text)):
        text = text[: m.end()] + "\\" + text[m.end() :] if m.group()[0].isdigit() else "\\" + text
    return text


def render_md(job: Job) -> str:
    facts = job.facts
    t = job.transcript
    # the name as it reads on a terminal (controls and bidi controls as visible escapes), then as Markdown
    lines = [f"# {markdown_text(terminal_text(job.source.name))}", ""]
    if facts:
        lines += [
            f"- **Duration:** {short_clock(facts.duration_s)}",
            f"- **Format:** {markdown_text(facts.container)} / {markdown_text(facts.codec)}, "
            f"{facts.sample_rate} Hz, {facts.channels} channel(s)",
        ]
    language = f"{t.language} ({t.language_probability:.0%})" if t.language and t.language_probability else t.language
    lines.append(f"- **Language:** {markdown_text(language or 'unknown')}")
    if job.translated:
        lines.append(f"- **Translation:** into English ({job.text_language}) from {markdown_text(t.language or 'unknown')}")
    if job.engine_info:
        engine = f"{job.engine_info.get('engine')} {job.engine_info.get('model')}"
        lines.append(f"- **Engine:** {markdown_text(stored_text(engine))}")
    lines += ["", "---", ""]
    line_start = not job.show_timestamps
    items: list[tuple[float, str]] = [(s.start, markdown_text(s.text, line_start)) for s in text_segments(job)]
    items += [(e.start, f"*[{markdown_text(stored_text(e.kind))}, {e.end - e.start:.0f} s]*") for e in t.events]
    if t.no_speech:
        items.append((0.0, f"*{NO_SPEECH}*"))
    for start, text in sorted(items, key=lambda item: item[0]):
        lines.append(f"**[{short_clock(start)}]** {text}  " if job.show_timestamps else text)
    return "\n".join(lines).rstrip() + "\n"


RENDERERS: dict[str, Callable[[Job], str]] = {
    "txt": render_txt,
    "srt": render_srt,
    "vtt": render_vtt,
    "json": render_json,
    "md": render_md,
}


def subtitle_language(job: Job, subtitle_names: str = "plain") -> str | None:
    """The language code that goes into subtitle names (``name.en.srt``), or None for plain names:
    the language of the text (``en`` for a translation), which is what a player offers."""
    language = (job.text_language or "").lower()
    if subtitle_names != "language" or not re.fullmatch(r"[a-z]{2,3}", language):
        return None
    return language


def output_suffixes(formats: list[str], subtitle_language: str | None = None) -> dict[str, str]:
    """What follows the stem for each format: ``.txt``, or ``.en.srt`` with a subtitle language."""
    return {
        fmt: f".{subtitle_language}.{fmt}" if subtitle_language and fmt in SUBTITLE_FORMATS else f".{fmt}"
        for fmt in formats
    }


@dataclass(frozen=True)
class OutputPlan:
    """Where one job's outputs go: in ``folder``, named ``stem`` plus each format's suffix
    (``stem`` the first free one of ``base``, ``base (2)`` …, when planned)."""

    folder: Path
    base: str
    stem: str
    suffixes: dict[str, str]  # format → ".txt", ".en.srt" …

    def paths_for(self, stem: str) -> dict[str, Path]:
        return {fmt: self.folder / f"{stem}{suffix}" for fmt, suffix in self.suffixes.items()}

    @property
    def paths(self) -> list[Path]:
        return list(self.paths_for(self.stem).values())


def plan_outputs(
    job: Job, folder: Path, formats: list[str], *, name: str | None = None, subtitle_names: str = "plain"
) -> OutputPlan:
    """The first free names in ``folder`` for ``job``'s outputs (none of them taken, a dangling
    link included): the stem is made from ``name``, the recording's name as dropped (by default
    ``job.source.name``), and subtitles may carry the language (``subtitle_names``)."""
    base = safe_stem(name or job.source.name)
    suffixes = output_suffixes(formats, subtitle_language(job, subtitle_names))
    return OutputPlan(folder, base, fsutil.free_stem(folder, base, suffixes.values()), suffixes)


def group_id(group: str | None) -> int | None:
    if group is None:
        return None
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:  # checked when the config loaded: the group was removed since
        raise OSError(errno.EPERM, f"output_group {group!r} no longer exists on this machine") from None


def _write_output(folder: Path, data: bytes, mode: int, gid: int | None) -> Path:
    """A new hidden temp file in ``folder`` with ``data``, its final mode and group, fsynced.

    It is created 0600 (nobody else can read a half-written file); the mode and group
    are set on the open file before it is ever linked to its public name.
    """
    fd, name = tempfile.mkstemp(prefix=".hushdrop-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if gid is not None:
                os.fchown(f.fileno(), -1, gid)
            os.fchmod(f.fileno(), mode)  # after fchown, which may clear mode bits
            os.fsync(f.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def write_outputs(
    job: Job,
    plan: OutputPlan,
    *,
    name: str | None = None,
    mode: int = DEFAULT_MODE,
    group: str | None = None,
    before_link: Callable[[list[Path], list[tuple[int, int]]], None] | None = None,
) -> list[Path]:
    """Write every output of ``job`` at ``plan``'s names; returns the final paths (the next free
    stem instead where another writer took a planned name since).

    ``before_link(paths, identities)`` is told, before any file takes a name, which names the
    files are about to take and their (device, inode): watch mode records both in the ledger, so
    that after a crash it can tell its own files from another writer's under the same names.

    ``name``: the recording's name as dropped, which the outputs show (by default
    ``job.source.name``; watch mode passes the name from the ledger, since the job ran on its
    spool copy). ``mode`` and ``group``: the files' permission bits and group (settings
    ``output_mode``, ``output_group``).
    """
    folder = plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    name = name or job.source.name
    gid = group_id(group)
    job.finished_at = time.time()
    shown = job if name == job.source.name else replace(job, source=Path(name))  # the caller's job is left as it is
    temps: dict[str, Path] = {}
    try:
        for fmt in plan.suffixes:
            temps[fmt] = _write_output(folder, RENDERERS[fmt](shown).encode("utf-8"), mode, gid)
        identities = {fmt: fsutil.identity_of(os.lstat(temp)) for fmt, temp in temps.items()}
        for candidate in (plan.stem, *candidate_stems(plan.base)):
            finals = plan.paths_for(candidate)
            if any(os.path.lexists(p) for p in finals.values()):
                continue
            if before_link is not None:
                before_link(list(finals.values()), [identities[fmt] for fmt in finals])
            linked: list[Path] = []
            for fmt, final in finals.items():
                if not link_no_clobber(temps[fmt], final):
                    break
                linked.append(final)
            else:
                fsync_dir(folder)
                return list(finals.values())
            for path in linked:  # lost a race for this name: undo and try the next
                path.unlink(missing_ok=True)
        raise OSError(f"no free output name for {plan.base} in {folder}")
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        fsync_dir(folder)


def commit_outputs(
    job: Job,
    folder: Path,
    formats: list[str],
    *,
    name: str | None = None,
    subtitle_names: str = "plain",
    mode: int = DEFAULT_MODE,
    group: str | None = None,
) -> list[Path]:
    """Plan and write every requested format for ``job`` in ``folder`` (:func:`plan_outputs`,
    :func:`write_outputs`); returns the final paths."""
    plan = plan_outputs(job, folder, formats, name=name, subtitle_names=subtitle_names)
    return write_outputs(job, plan, name=name, mode=mode, group=group)
