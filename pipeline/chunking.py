"""Cutting long audio into windows an engine accepts, at quiet points, and back.

Used by the ``transcribe`` stage (windows of speech found by VAD, at most an engine's
``max_window_s`` long) and by engines with their own limits (the qwen3-asr aligner
takes at most 300 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
        region = np.asarray(audio[window_lo:window_hi], dtype=np.float32)
        n_frames = len(region) // frame
        if n_frames == 0:
            cut = window_hi
        else:
            energy = np.square(region[: n_frames * frame].reshape(n_frames, frame)).mean(axis=1)
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

    def to_source_time(self, t: float, sample_rate: int) -> float:
        """Map a time in this window (seconds) to a time in the recording.

        A time in the silent gap before a piece maps to that piece's start.
        """
        sample = t * sample_rate
        for piece in self.pieces:
            if sample <= piece.window_offset + piece.length:
                inside = max(0.0, sample - piece.window_offset)
                return (piece.source_offset + min(inside, piece.length)) / sample_rate
        last = self.pieces[-1]
        return (last.source_offset + last.length) / sample_rate

    def to_source_span(self, start: float, end: float, sample_rate: int) -> tuple[float, float]:
        """Map a word's [start, end] (window seconds) to the recording.

        Pieces side by side in the window lie apart in the recording, so a word cannot
        straddle a join: one that seems to (the engine's word timing bleeds across
        it) belongs to the piece its end is in and starts no earlier than that piece.
        """
        source_start, source_end = self.to_source_time(start, sample_rate), self.to_source_time(end, sample_rate)
        end_sample = end * sample_rate
        for piece in self.pieces:
            if end_sample <= piece.window_offset + piece.length:
                source_start = max(source_start, min(piece.source_offset / sample_rate, source_end))
                break
        return source_start, source_end

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
    adjacent; a word the engine times across a join is put back into its own region by
    ``Window.to_source_span`` either way. A region longer than a window is split at its
    quiet points first.
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
