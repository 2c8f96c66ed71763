"""Cutting long audio into windows an engine accepts, at quiet points, and back.

Used by the ``transcribe`` stage (windows of speech found by VAD, at most an engine's
``max_window_s`` long) and by engines with their own limits (the qwen3-asr aligner
takes at most 300 s). :func:`frame_energies` is also the loudness measure of the
``denoise`` stage and of qwen3-asr's estimated sentence times.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from hushdrop.pipeline.job import Segment, Word

# written without spaces between words: a segment split into parts is rejoined without them
UNSPACED_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "km", "my", "bo"})


def join_words(words: list[str], language: str | None) -> str:
    """Words (as the engine spelled them, stripped) back into text."""
    return ("" if language in UNSPACED_LANGUAGES else " ").join(words).strip()


def frame_energies(samples: np.ndarray, frame: int, dtype: type = np.float64) -> np.ndarray:
    """Mean square of each whole frame of ``frame`` (>= 1) samples; a partial last frame is left out.

    Computed a million samples at a time, in ``dtype``, so a two-hour recording needs no
    second full-length copy. Frames are independent, so the block size never changes a value.
    """
    n = len(samples) // frame
    energies = np.empty(n, dtype=dtype)
    step = max(1, (1 << 20) // frame)
    for i in range(0, n, step):
        block = np.asarray(samples[i * frame : min(n, i + step) * frame], dtype=dtype)
        energies[i : i + len(block) // frame] = np.square(block.reshape(-1, frame)).mean(axis=1)
    return energies


def split_at_quiet_points(
    audio: np.ndarray,
    sample_rate: int,
    max_seconds: float,
    search_seconds: float = 10.0,
    frame_seconds: float = 0.05,
) -> list[tuple[int, int]]:
    """Split ``audio`` into [start, end) sample ranges no longer than ``max_seconds``.

    Each cut is placed at the quietest frame (lowest RMS) within the last
    ``search_seconds`` before the limit, so words are rarely cut in half.
    """
    total = len(audio)
    max_len = int(max_seconds * sample_rate)
    if max_len <= 0:
        raise ValueError("max_seconds must be positive")
    if total <= max_len:
        return [(0, total)] if total else []
    frame = max(1, int(frame_seconds * sample_rate))
    search = min(int(search_seconds * sample_rate), max_len // 2)
    ranges: list[tuple[int, int]] = []
    start = 0
    while total - start > max_len:
        window_lo = start + max_len - search
        window_hi = start + max_len
        energy = frame_energies(audio[window_lo:window_hi], frame, np.float32)
        if len(energy) == 0:
            cut = window_hi
        else:
            cut = window_lo + int(np.argmin(energy)) * frame + frame // 2
        ranges.append((start, cut))
        start = cut
    ranges.append((start, total))
    return ranges


@dataclass
class Piece:
    """``length`` samples that sit at ``window_offset`` in a window and at ``source_offset`` in the recording."""

    window_offset: int
    source_offset: int
    length: int


@dataclass
class Window:
    """A window of audio built from one or more stretches of the recording."""

    pieces: list[Piece]

    @property
    def length(self) -> int:
        last = self.pieces[-1]
        return last.window_offset + last.length

    @property
    def speech_length(self) -> int:
        return sum(p.length for p in self.pieces)

    @cached_property
    def regions(self) -> list[Piece]:
        """The stretches of the recording this window holds, in window order.

        Pieces that follow each other without a break in the recording (a region split at
        a VAD block edge) are one stretch; a join between two stretches hides a gap in
        the recording, and nothing heard on one side of it belongs to the other.
        """
        out: list[Piece] = []
        for p in self.pieces:
            last = out[-1] if out else None
            if (
                last is not None
                and last.source_offset + last.length == p.source_offset
                and last.window_offset + last.length == p.window_offset
            ):
                out[-1] = Piece(last.window_offset, last.source_offset, last.length + p.length)
            else:
                out.append(Piece(p.window_offset, p.source_offset, p.length))
        return out

    def split(self, parts: int) -> list["Window"]:
        """This window as up to ``parts`` windows of about equal speech, cut only at its joins
        (a pause the VAD found between two regions, never inside speech), in order.

        Each part is a window of its own: the engine decodes it without the text before it, and
        its ``map_segment`` maps times back through the same pieces, so times and the rule that
        no segment spans a gap hold exactly as for the whole window.
        """
        cuts = [
            i for i in range(1, len(self.pieces))
            if self.pieces[i - 1].source_offset + self.pieces[i - 1].length != self.pieces[i].source_offset
        ]
        if parts <= 1 or not cuts:
            return [self]
        before = np.cumsum([0] + [p.length for p in self.pieces])  # speech before piece i
        total = int(before[-1])
        chosen: list[int] = []
        for k in range(1, parts):
            target = total * k / parts
            later = [i for i in cuts if not chosen or i > chosen[-1]]
            if not later:
                break
            best = min(later, key=lambda i: abs(int(before[i]) - target))
            if best not in chosen:
                chosen.append(best)
        windows = []
        for start, end in zip([0, *chosen], [*chosen, len(self.pieces)]):
            first = self.pieces[start].window_offset
            windows.append(Window([
                Piece(p.window_offset - first, p.source_offset, p.length) for p in self.pieces[start:end]
            ]))
        return windows

    @cached_property
    def _region_starts(self) -> list[int]:
        return [r.window_offset for r in self.regions]

    def region_of(self, start: float, end: float, sample_rate: int) -> int:
        """Index (into ``regions``) of the stretch that holds most of [start, end] (window seconds).

        The engine's timing of a word near a join bleeds across it, but the word was
        spoken on one side: the side with most of its duration. A span with no length, or
        one wholly inside inserted silence, goes to the stretch holding (or nearest to) its
        midpoint; a midpoint exactly on a join, or halfway across inserted silence, counts
        for the later stretch.
        """
        regions = self.regions
        lo, hi = start * sample_rate, max(start, end) * sample_rate
        mid = (lo + hi) / 2
        # only the stretches the span touches, and one either side, can win
        first = max(0, bisect_right(self._region_starts, min(lo, mid)) - 2)
        last = min(len(regions), bisect_right(self._region_starts, hi) + 1)
        best, best_key = first, None
        for i in range(first, last):
            r = regions[i]
            r_lo, r_hi = r.window_offset, r.window_offset + r.length
            overlap = max(0.0, min(hi, r_hi) - max(lo, r_lo))
            contains = r_lo <= mid < r_hi
            distance = 0.0 if contains else min(abs(mid - r_lo), abs(mid - r_hi))
            key = (overlap, contains, -distance)
            if best_key is None or key >= best_key:  # a full tie goes to the later stretch
                best, best_key = i, key
        return best

    def to_source_span(
        self, start: float, end: float, sample_rate: int, region: int | None = None
    ) -> tuple[float, float]:
        """Map [start, end] (window seconds) into one stretch of the recording.

        Both ends land inside the stretch ``region`` (by default the one holding most of
        the span), clamped to its edges: pieces side by side in the window lie apart in the
        recording, so nothing the engine heard can straddle a join.
        """
        r = self.regions[self.region_of(start, end, sample_rate) if region is None else region]

        def inside(t: float) -> float:
            return (r.source_offset + min(max(t * sample_rate - r.window_offset, 0.0), r.length)) / sample_rate

        return inside(start), inside(max(start, end))

    def map_segment(self, seg: Segment, sample_rate: int) -> list[Segment]:
        """``seg`` (window times) as segments on the recording's clock, none spanning a join.

        Each word goes to the stretch holding most of its duration (``region_of``); where
        the words of one segment fall into two stretches, the segment is split there, each
        part holding its own words, starting at its first word and ending at its last. The
        words themselves are not changed, only dated. A segment without word times cannot
        be split with any evidence: it is kept whole and clamped into the stretch holding
        most of its duration.
        """
        if not any(w.text for w in seg.words):
            start, end = self.to_source_span(seg.start, seg.end, sample_rate)
            return [replace(seg, start=round(start, 3), end=round(end, 3), text=seg.text.strip(), words=[])]
        groups: dict[int, list[Word]] = {}
        for w in seg.words:
            region = self.region_of(w.start, w.end, sample_rate)
            start, end = self.to_source_span(w.start, w.end, sample_rate, region)
            groups.setdefault(region, []).append(Word(round(start, 3), round(end, 3), w.text, w.probability))
        out: list[Segment] = []
        for region in sorted(groups):  # one part per stretch, in recording order
            words = groups[region]
            spoken = [w for w in words if w.text]
            if not spoken:
                continue
            text = seg.text.strip() if len(groups) == 1 else join_words([w.text for w in spoken], seg.language)
            out.append(replace(seg, start=spoken[0].start, end=spoken[-1].end, text=text, words=words))
        return out

    def gather(self, audio: np.ndarray) -> np.ndarray:
        """The window's samples: its pieces in order, silence in the gaps between them."""
        out = np.zeros(self.length, dtype=np.float32)
        for p in self.pieces:
            out[p.window_offset : p.window_offset + p.length] = audio[p.source_offset : p.source_offset + p.length]
        return out


def pack_regions(
    regions: list[tuple[int, int]],
    audio: np.ndarray,
    sample_rate: int,
    max_seconds: float,
    gap_seconds: float = 0.0,
) -> list[Window]:
    """Pack speech regions (sample ranges) into windows of at most ``max_seconds``.

    Regions keep their order; the long silences between them are dropped, and the
    regions' own padding (recorded quiet) is the pause the engine hears at a join.
    ``gap_seconds`` of digital silence can be put between two regions that were not
    adjacent; either way ``Window.map_segment`` puts every word back into the region it
    was heard in and splits a segment the engine ran across a join. A region longer than
    a window is split at its quiet points first.
    """
    max_len = int(max_seconds * sample_rate)
    gap = int(gap_seconds * sample_rate)
    stretches: list[tuple[int, int]] = []
    for start, end in regions:
        if end - start > max_len:
            for a, b in split_at_quiet_points(audio[start:end], sample_rate, max_seconds):
                stretches.append((start + a, start + b))
        elif end > start:
            stretches.append((start, end))
    windows: list[Window] = []
    current: list[Piece] = []
    used = 0
    for start, end in stretches:
        length = end - start
        adjacent = bool(current) and current[-1].source_offset + current[-1].length == start
        offset = used + (0 if adjacent or not current else gap)
        if current and offset + length > max_len:
            windows.append(Window(current))
            current, used, offset = [], 0, 0
        current.append(Piece(window_offset=offset, source_offset=start, length=length))
        used = offset + length
    if current:
        windows.append(Window(current))
    return windows
