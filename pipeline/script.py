"""The Chinese script a profile asks for (``script: keep | simplified | traditional | hk | tw``).

A profile setting, not a stage to remember: :meth:`pipeline.process.Processor.run_chain`
applies it to zh and yue text once, at the end of every chain, for ``hushdrop run`` and watch
mode alike (OpenCC). Event tags the engine wrote ("[音樂]", "(掌聲)", "♪") are left as written;
the engine's own text stays in ``Segment.raw_text``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

from hushdrop.pipeline.job import Job, event_kind

SCRIPT_LANGUAGES = frozenset({"zh", "yue"})
# OpenCC configurations: characters only, no vocabulary swaps (软件 stays 軟件 in tw, not 軟體):
# a transcript keeps the words that were said. Whisper writes Traditional Mandarin the Taiwan
# way (著 for the particle 着), which plain t2s leaves alone ("換著喝" → "换著喝"); tw2s
# converts it by context (看著 → 看着, 著名 stays) and leaves Simplified text as it is.
SCRIPTS = {"simplified": "tw2s", "traditional": "s2t", "hk": "s2hk", "tw": "s2tw"}
_TAG_SPAN = re.compile(r"\[[^\]]{1,40}\]|【[^】]{1,40}】|[(（*][^)）*]{1,40}[)）*]|[♪♫♬]+")


@lru_cache(maxsize=None)
def script_converter(script: str) -> Callable[[str], str] | None:
    """OpenCC's converter for ``script`` (None for ``keep``); built once per process."""
    if script == "keep":
        return None
    import opencc

    return opencc.OpenCC(SCRIPTS[script]).convert


def _is_event_tag(span: str) -> bool:
    if span[0] in "[【♪♫♬":  # how Whisper marks non-speech: [音樂], [BLANK_AUDIO], ♪
        return True
    label = span[1:-1].strip()
    return event_kind(label) is not None or event_kind(script_converter("simplified")(label)) is not None


def convert_script(text: str, script: str, keep_tags: bool = True) -> str:
    """``text`` in ``script``; event tags ("[音樂]", "(掌聲)", "♪") stay as written."""
    convert = script_converter(script)
    if convert is None or not text:
        return text
    if not keep_tags:
        return convert(text)
    pieces, pos = [], 0
    for m in _TAG_SPAN.finditer(text):
        if _is_event_tag(m.group()):
            pieces += [convert(text[pos : m.start()]), m.group()]
            pos = m.end()
    pieces.append(convert(text[pos:]))
    return "".join(pieces)


def apply_script(job: Job, script: str) -> None:
    """Convert the zh and yue text of ``job`` (segments and their words) to ``script``; the
    language of the text counts, not the one spoken (a translation is English).

    The engine's own text stays in ``Segment.raw_text``; repeating it is harmless.
    """
    job.script = script
    if script_converter(script) is None:
        return
    for segment in job.transcript.segments:
        if job.language_of(segment) not in SCRIPT_LANGUAGES:  # a translation is English
            continue
        if segment.raw_text is None:
            segment.raw_text = segment.text
        segment.text = convert_script(segment.text, script)
        for word in segment.words:
            word.text = convert_script(word.text, script)
