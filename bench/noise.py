"""Noisy variants of the held-out clips, made at run time in a temporary folder (never committed).

Every clip is decoded to 16 kHz mono and mixed with one of three noises, scaled so
that signal power / noise power over the whole clip is the requested SNR:

``white``   Gaussian white noise (flat to 8 kHz).
``babble``  the sum of five *other* held-out clips (other speakers, often other
            languages), each brought to the same power and looped from a random
            offset to the clip's length: a room of people talking.
``hum``     mains hum: 50 Hz with its 2nd and 3rd harmonics at half and a quarter of
            its amplitude (−6 and −12 dB), as a ground loop or a cheap recorder
            picks it up, with a small random phase per harmonic.

The mix is written as 16-bit WAV; when it would clip, speech and noise are scaled
down together (the SNR is unchanged). Everything is seeded from the clip id, so the
same clip always gets the same noise.
"""

from __future__ import annotations

import hashlib
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.common import SAMPLE_RATE, Clip

KINDS = ("white", "babble", "hum")
SNRS_DB = (0, 5, 10)
BABBLE_TALKERS = 5
HUM_HZ = 50.0
HUM_HARMONICS = ((1, 1.0), (2, 0.5), (3, 0.25))


@dataclass(frozen=True)
class Condition:
    kind: str  # "clean" or one of KINDS
    snr_db: int | None = None

    @property
    def key(self) -> str:
        return "clean" if self.kind == "clean" else f"{self.kind}{self.snr_db:+d}dB"

    @property
    def label(self) -> str:
        return "clean" if self.kind == "clean" else f"{self.kind} {self.snr_db} dB"


CLEAN = Condition("clean")


def code_digest() -> str:
    """Part of a noisy condition's cache key: change the recipe, recompute."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:8], "little")


@lru_cache(maxsize=128)
def decoded(path: Path) -> np.ndarray:
    from faster_whisper import decode_audio

    audio = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    audio.setflags(write=False)
    return audio


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0


def _loop(source: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if len(source) == 0:
        return np.zeros(length, dtype=np.float32)
    offset = int(rng.integers(0, len(source)))
    reps = (offset + length) // len(source) + 1
    return np.tile(source, reps)[offset : offset + length]


def make_noise(kind: str, clip: Clip, length: int, others: list[Clip]) -> np.ndarray:
    rng = np.random.default_rng(_seed(kind, clip.id))
    if kind == "white":
        return rng.standard_normal(length).astype(np.float32)
    if kind == "hum":
        t = np.arange(length) / SAMPLE_RATE
        hum = np.zeros(length, dtype=np.float64)
        for harmonic, amplitude in HUM_HARMONICS:
            hum += amplitude * np.sin(2 * np.pi * HUM_HZ * harmonic * t + rng.uniform(0, 2 * np.pi))
        return hum.astype(np.float32)
    if kind == "babble":
        pool = [c for c in others if c.id != clip.id]
        picks = rng.choice(len(pool), size=min(BABBLE_TALKERS, len(pool)), replace=False)
        total = np.zeros(length, dtype=np.float64)
        for i in picks:
            talker = _loop(decoded(pool[int(i)].path), length, rng).astype(np.float64)
            p = _power(talker)
            if p > 0:
                total += talker / np.sqrt(p)
        return total.astype(np.float32)
    raise ValueError(f"unknown noise kind {kind!r}: one of {', '.join(KINDS)}")


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    ps, pn = _power(speech), _power(noise)
    if pn == 0 or ps == 0:
        return speech.copy()
    noise = noise * np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    out = speech.astype(np.float64) + noise
    peak = float(np.max(np.abs(out)))
    if peak > 0.99:
        out *= 0.99 / peak
    return out.astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def noisy_file(clip: Clip, condition: Condition, others: list[Clip], folder: Path) -> Path:
    """The clip with ``condition``'s noise, as a WAV in ``folder`` (made once per run)."""
    if condition.kind == "clean":
        return clip.path
    path = folder / f"{clip.id}.{condition.key}.wav"
    if not path.exists():
        speech = decoded(clip.path)
        noise = make_noise(condition.kind, clip, len(speech), others)
        write_wav(path, mix(speech, noise, condition.snr_db))
    return path

