"""Reading an srt or vtt answer back: ffmpeg's own subtitle demuxer for the timings, the cue
text for the words. Shared by the API's tests (tests/api)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hushdrop.pipeline.audio import ffmpeg_exe


def parsed_cues(text: str, suffix: str, folder: Path) -> list[tuple[int, int, int]]:
    """The cues ffmpeg's demuxer for ``suffix`` (srt, vtt) reads from ``text``:
    (start ms, duration ms, text bytes) each, from its framecrc listing."""
    path = folder / f"answer.{suffix}"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0", "-c", "copy", "-f", "framecrc", "-"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "#tb 0: 1/1000" in proc.stdout, proc.stdout
    return [
        (int(pts), int(duration), int(size))
        for _, pts, _, duration, size, _ in (line.split(",") for line in proc.stdout.splitlines() if not line.startswith("#"))
    ]


def cue_texts(text: str) -> list[str]:
    """The text of each cue of an srt or vtt answer: the lines after its timing line."""
    texts = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is not None:
            texts.append("\n".join(lines[timing + 1 :]))
    return texts


def check_subtitles(text: str, suffix: str, folder: Path, duration_s: float) -> list[str]:
    """Assert that ``text`` parses as ``suffix`` subtitles whose cues are in order, never over
    one another, inside the recording, each holding the text it shows; returns the cue texts."""
    cues = parsed_cues(text, suffix, folder)
    texts = cue_texts(text)
    assert cues and len(cues) == len(texts), text
    starts = [start for start, _, _ in cues]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), cues
    for (start, duration, _), (next_start, _, _) in zip(cues, cues[1:]):
        assert duration > 0 and start + duration <= next_start, cues  # no cue over the next one
    assert cues[-1][0] + cues[-1][1] <= round(duration_s * 1000), cues
    assert [size for _, _, size in cues] == [len(t.encode()) for t in texts]
    return texts
