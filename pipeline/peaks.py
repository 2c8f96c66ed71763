"""A waveform overview of a recording: a few thousand peak values, no audio.

After a job's chain has run, :func:`waveform_of` reduces its decoded samples (mono, at the
engine's rate) to ``count`` bins and keeps each bin's largest absolute sample, scaled to
0…255. The JSON output carries them as one base64 string (a list of 2000 numbers would be
2000 lines of an indented JSON file); the web page draws the waveform from them and no
audio is kept anywhere.

The samples are a memory map of the job's temporary audio: they are read in blocks, so a
2-hour recording never gets a second full copy in memory.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hushdrop.pipeline.audio import Audio

PEAK_COUNT = 2000
ENCODING = "u8-base64"
_BLOCK = 1 << 20  # samples read at a time


def peaks(samples: np.ndarray, count: int = PEAK_COUNT) -> np.ndarray:
    """Max-abs of ``samples`` in ``min(count, len(samples))`` equal bins, as float32 in 0…1."""
    n = len(samples)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    bins = min(count, n)
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    out = np.zeros(bins, dtype=np.float32)
    start_bin = 0
    while start_bin < bins:
        # whole bins per block, at least one
        end_bin = int(np.searchsorted(edges, edges[start_bin] + _BLOCK, side="right")) - 1
        end_bin = min(bins, max(start_bin + 1, end_bin))
        lo, hi = edges[start_bin], edges[end_bin]
        block = np.abs(np.asarray(samples[lo:hi], dtype=np.float32))
        out[start_bin:end_bin] = np.maximum.reduceat(block, edges[start_bin:end_bin] - lo)
        start_bin = end_bin
    return np.clip(out, 0.0, 1.0)


def encode(values: np.ndarray) -> str:
    return base64.b64encode(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8).tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(np.float32) / 255.0


def waveform_of(audio: "Audio | None", count: int = PEAK_COUNT) -> dict[str, Any] | None:
    """The waveform record for the JSON output, or None where there is no decoded audio."""
    if audio is None:
        return None
    samples, rate = audio.samples()
    if not rate:
        return None
    values = peaks(samples, count)
    return {
        "encoding": ENCODING,
        "count": int(len(values)),
        "seconds": round(len(samples) / rate, 3),
        "peaks": encode(values),
    }


__all__ = ["PEAK_COUNT", "decode", "encode", "peaks", "waveform_of"]
