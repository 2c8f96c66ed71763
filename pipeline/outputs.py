"""Transcript files: txt, srt, vtt, json and md, committed atomically as one set.

Every file is written under a hidden temporary name and fsynced; then all are
given their final names with hard links that fail rather than overwrite, and the
directory is fsynced. A reader of the outbox never sees a half-written file, and
a name already taken (an earlier recording with the same name) is never
overwritten: the new set gets "name (2)", "name (3)" …
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator

from pipeline.fsutil import fsync_dir, link_no_clobber, write_temp
from pipeline.job import Job, Segment
from pipeline.names import display_name, is_lossless_text, safe_stem

SCHEMA_VERSION = 1
NO_SPEECH = "(no speech detected)"


def clock(seconds: float, sep: str = ".", hours_always: bool = True) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(millis, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def short_clock(seconds: float) -> str:
    return clock(seconds)[:8]


def _cues(job: Job) -> list[Segment]:
    return [s for s in job.transcript.segments if s.text]


def render_txt(job: Job) -> str:
    if job.transcript.no_speech or not _cues(job):
        return NO_SPEECH + "\n"
    if job.show_timestamps:
        return "".join(f"[{short_clock(s.start)}] {s.text}\n" for s in _cues(job))
    return " ".join(s.text for s in _cues(job)) + "\n"


def render_srt(job: Job) -> str:
    blocks = [
        f"{i}\n{clock(s.start, ',')} --> {clock(s.end, ',')}\n{s.text}\n"
        for i, s in enumerate(_cues(job), start=1)
    ]
    return "\n".join(blocks)


def render_vtt(job: Job) -> str:
    blocks = ["WEBVTT\n"]
    if job.transcript.no_speech:
        blocks.append(f"NOTE {NO_SPEECH}\n")
    blocks += [f"{clock(s.start)} --> {clock(s.end)}\n{s.text}\n" for s in _cues(job)]
    return "\n".join(blocks)


def job_record(job: Job) -> dict:
    facts = job.facts
    t = job.transcript
    return {
        "schema": SCHEMA_VERSION,
        "source": _source_record(job),
        "audio": asdict(facts) if facts else None,
        "language": t.language,
        "language_probability": t.language_probability,
        "no_speech": t.no_speech,
        "engine": job.engine_info,
        "stages": [asdict(s) for s in job.stages],
        "notes": job.notes,
        "text": t.text,
        "segments": [asdict(s) for s in t.segments],
        "events": [asdict(e) for e in t.events],
        "speech_regions": [list(r) for r in t.speech_regions],
    }


def _source_record(job: Job) -> dict:
    """The recording's name as dropped; where it is not plain UTF-8 text, its exact bytes too."""
    name = job.source.name
    record = {"name": display_name(name), "profile": job.profile}
    if not is_lossless_text(name):
        record["name_bytes_hex"] = os.fsencode(name).hex()
    return record


def render_json(job: Job) -> str:
    record = job_record(job)
    record["audio"] = {k: v for k, v in (record["audio"] or {}).items() if k != "path"}
    return json.dumps(record, ensure_ascii=False, indent=2) + "\n"


def render_md(job: Job) -> str:
    facts = job.facts
    t = job.transcript
    lines = [f"# {display_name(job.source.name)}", ""]
    if facts:
        lines += [
            f"- **Duration:** {short_clock(facts.duration_s)}",
            f"- **Format:** {facts.container} / {facts.codec}, {facts.sample_rate} Hz, {facts.channels} channel(s)",
        ]
    language = f"{t.language} ({t.language_probability:.0%})" if t.language and t.language_probability else t.language
    lines.append(f"- **Language:** {language or 'unknown'}")
    if job.engine_info:
        lines.append(f"- **Engine:** {job.engine_info.get('engine')} {job.engine_info.get('model')}")
    lines += ["", "---", ""]
    items: list[tuple[float, str]] = [(s.start, s.text) for s in _cues(job)]
    items += [(e.start, f"*[{e.kind}, {e.end - e.start:.0f} s]*") for e in t.events]
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


def _candidate_stems(stem: str) -> Iterator[str]:
    yield stem
    for n in range(2, 100_000):
        yield f"{stem} ({n})"


def planned_outputs(folder: Path, stem: str, formats: list[str]) -> list[Path]:
    """The first free stem ("talk", "talk (2)", …) in ``folder``, as one path per format."""
    for candidate in _candidate_stems(stem):
        paths = [folder / f"{candidate}.{fmt}" for fmt in formats]
        if not any(os.path.lexists(p) for p in paths):
            return paths
    raise OSError(f"no free output name for {stem} in {folder}")


def commit_outputs(job: Job, folder: Path, formats: list[str], stem: str | None = None) -> list[Path]:
    """Write every requested format for ``job`` into ``folder``; returns the final paths.

    ``stem`` must be a safe name (:func:`pipeline.names.safe_stem`); by default the recording's.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or safe_stem(job.source.name)
    temps = {fmt: write_temp(folder, RENDERERS[fmt](job).encode("utf-8")) for fmt in formats}
    try:
        for candidate in _candidate_stems(stem):
            finals = {fmt: folder / f"{candidate}.{fmt}" for fmt in formats}
            if any(os.path.lexists(p) for p in finals.values()):
                continue
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
        raise OSError(f"no free output name for {stem} in {folder}")
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        fsync_dir(folder)
