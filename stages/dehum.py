"""dehum: notches out mains hum (50 or 60 Hz and its harmonics), only when it is there.

A ground loop, a phone charging next to the recorder or a cheap preamp adds a steady
tone at the mains frequency and its multiples. A high-pass filter (the optional
``highpass`` stage) can take out the 50/60 Hz fundamental but not the harmonics (100,
120, 150, 180 Hz, ...), which sit in the voice's own range, where a high-pass cannot go;
narrow notches can.

Hum never stops and never changes pitch. So the recording is cut into half-second
frames (2 Hz resolution; up to 600 of them, spread over a long file) and a harmonic of
the mains frequency (whichever of 50 and 60 Hz explains more of them) counts as hum
when, in most frames, it is a narrow peak standing ``min_prominence_db`` above its
neighbouring frequencies. Noise is smooth across frequency and a voice's harmonics move
with its pitch, so neither passes. Hum is also a family: the mains frequency itself, or
several of its multiples with no larger common step (50, 100, 150 Hz; a rectifier's
100, 200, 300 Hz). A steady tone that merely sits on a multiple (a 300 Hz test tone,
with its own harmonics at 600 and 900 Hz) is not hum and is left alone. When the
strongest harmonic found is no more than ``max_below_speech_db`` below the speech,
every harmonic up to the highest one found gets a notch ``notch_width_hz`` wide; fainter
hum is left alone, since it barely moves the engine and a filter always changes a little.
A recording without hum (the usual case), or shorter than 4 s (too few frames to tell
hum from a held note), passes through untouched, sample for sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from math import gcd
from typing import Literal

import numpy as np
from pydantic import Field

from hushdrop.pipeline.job import Job
from hushdrop.stages.base import Stage, StageOptions

MAINS_HZ = (50.0, 60.0)
_FRAME_S = 0.5  # 2 Hz bins: 50 and 60 Hz and all their harmonics fall exactly on a bin
_MAX_FRAMES = 600  # frames looked at, spread over the recording: bounded work on a 2-hour file
_PEAK_HALF_WIDTH_HZ = 2.0  # the tone's bin and one either side (Hann leakage, mains drift)
_NEIGHBOURS_HZ = (6.0, 20.0)  # the floor a peak is compared with: this far to either side
# a peak this far below the speech is numerical residue (window side lobes, the rounding of a
# clean synthetic tone), prominent only over a floor that is quieter still; it is not hum
_RESIDUE_BELOW_SPEECH_DB = 60.0


class DehumOptions(StageOptions):
    mode: Literal["auto", "off"] = "auto"
    mains_hz: Literal["auto", 50, 60] = Field("auto", description="mains frequency; auto picks 50 or 60 Hz")
    max_hz: float = Field(1000.0, ge=50.0, le=4000.0, description="highest harmonic to look for")
    min_prominence_db: float = Field(
        10.0, gt=0.0, description="a harmonic this far above its neighbours in most half-second frames is hum"
    )
    max_below_speech_db: float = Field(
        20.0, gt=0.0, description="hum quieter than the speech by more than this is left alone: it barely moves the engine"
    )
    notch_width_hz: float = Field(4.0, gt=0.5, le=20.0, description="-3 dB width of each notch")
    block_seconds: float = Field(
        60.0, ge=5.0, le=600.0,
        description="seconds filtered at a time (in float64); the notches' state carries over, so the output is the same",
    )


@dataclass(frozen=True)
class Hum:
    mains_hz: float
    harmonics: tuple[float, ...]  # the frequencies to notch
    level_db: float  # the strongest harmonic, relative to the speech
    found: int  # harmonics that stood out on their own


def _frame_spectra(samples: np.ndarray, rate: int, top_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power spectra up to ``top_hz`` of up to _MAX_FRAMES half-second frames spread over the
    recording, and each frame's total power over all frequencies.

    Only the bins up to ``top_hz`` are kept: at 192 kHz a whole spectrum is 48,000 bins a frame.
    """
    frame = int(_FRAME_S * rate)
    count = len(samples) // frame
    starts = np.linspace(0, (count - 1) * frame, num=min(count, _MAX_FRAMES)).astype(np.int64)
    taper = np.hanning(frame)
    freqs = np.fft.rfftfreq(frame, 1.0 / rate)
    keep = int(np.searchsorted(freqs, top_hz, side="right"))
    spectra = np.empty((len(starts), keep), dtype=np.float64)
    totals = np.empty(len(starts), dtype=np.float64)
    for i, start in enumerate(starts):
        chunk = np.asarray(samples[start : start + frame], dtype=np.float64)
        power = np.abs(np.fft.rfft(chunk * taper)) ** 2
        spectra[i] = power[:keep]
        totals[i] = power.sum()
    return freqs[:keep], spectra, totals


def _mains_family(found: list[float], mains: float) -> bool:
    """Whether the harmonics found look like mains hum, not a tone that sits on a multiple.

    Hum has the mains frequency itself, or several multiples whose common step is the
    mains frequency (or twice it, a rectifier's buzz). A lone 300 Hz tone, or 300, 600
    and 900 Hz (a tone and its own harmonics), is not hum.
    """
    if mains in found:
        return True
    if len(found) < 2:
        return False
    return reduce(gcd, (round(f / mains) for f in found)) in (1, 2)


def _prominence_db(freqs: np.ndarray, spectra: np.ndarray, f: float) -> np.ndarray:
    """For each frame, how far the peak near ``f`` stands above the neighbouring frequencies, in dB."""
    near = np.abs(freqs - f)
    peak = spectra[:, near <= _PEAK_HALF_WIDTH_HZ].max(axis=1)
    floor = np.median(spectra[:, (near >= _NEIGHBOURS_HZ[0]) & (near <= _NEIGHBOURS_HZ[1])], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prominence = 10 * np.log10(peak / floor)
    return np.where(peak > 0, np.nan_to_num(prominence, posinf=100.0), 0.0)  # digital silence: no tone


def find_hum(samples: np.ndarray, rate: int, options: DehumOptions) -> Hum | None:
    """The mains hum in ``samples``, or None when there is none worth removing.

    Hum is a tone at the same frequency all the time, so a harmonic counts only when it
    stands out in most frames, speech or pause. A speaker's voice has harmonics too, but
    its pitch moves: it does not sit on 120 Hz for half of a recording.
    """
    if len(samples) < 8 * int(_FRAME_S * rate):  # "most of" a few frames: one held note could pass
        return None
    top = min(options.max_hz, rate / 2 - _NEIGHBOURS_HZ[1])
    freqs, spectra, totals = _frame_spectra(samples, rate, top + _NEIGHBOURS_HZ[1] + _PEAK_HALF_WIDTH_HZ)
    speech_power = np.sort(totals)[-max(1, len(totals) // 3) :].mean()  # the loudest frames
    if speech_power <= 0.0:
        return None  # digital silence
    candidates = MAINS_HZ if options.mains_hz == "auto" else (float(options.mains_hz),)
    best: Hum | None = None
    for mains in candidates:
        found, levels = [], []
        for k in range(1, int(top // mains) + 1):
            f = k * mains
            if np.median(_prominence_db(freqs, spectra, f)) >= options.min_prominence_db:
                tone = np.median(spectra[:, np.abs(freqs - f) <= _PEAK_HALF_WIDTH_HZ].sum(axis=1))
                level = 10 * np.log10(tone / speech_power) if tone > 0 else float("-inf")
                if level >= -_RESIDUE_BELOW_SPEECH_DB:
                    found.append(f)
                    levels.append(level)
        # the strongest harmonic decides whether there is hum worth removing. Then every
        # harmonic up to the highest found goes: under a voice a weaker one need not stand
        # out in most frames, and a notch where there was no hum costs next to nothing
        if found and _mains_family(found, mains) and max(levels) >= -options.max_below_speech_db:
            harmonics = tuple(k * mains for k in range(1, round(max(found) / mains) + 1))
            if best is None or len(found) > best.found:
                best = Hum(mains, harmonics, max(levels), len(found))
    return best


def notch_sections(frequencies: tuple[float, ...], width_hz: float, rate: int) -> np.ndarray:
    """Second-order sections, one notch per frequency, for ``scipy.signal.sosfilt``."""
    from scipy.signal import iirnotch

    sections = []
    for f in frequencies:
        b, a = iirnotch(f, f / width_hz, fs=rate)
        sections.append(np.concatenate([b, a]))
    return np.array(sections)


def settled_state(sections: np.ndarray, samples: np.ndarray, rate: int) -> np.ndarray:
    """The notches' state as if they had been running on the hum before the recording began.

    From rest, a notch lets a tone through while it settles (about 1/(π·width): ~80 ms
    for 4 Hz), which leaves audible hum at the start of a short clip (measured in
    docs/benchmarks.md). One second holds a whole number of 50 and 60 Hz periods, so the
    state reached after filtering the first second is the one the hum has at the very start.
    """
    from scipy.signal import sosfilt

    _, state = sosfilt(sections, np.asarray(samples[:rate], dtype=np.float64), zi=np.zeros((len(sections), 2)))
    return state


class Dehum(Stage):
    name = "dehum"
    Options = DehumOptions

    def run(self, job: Job) -> None:
        if self.options.mode == "off":
            return
        audio = self.audio_of(job)
        samples, rate = audio.samples()
        hum = find_hum(samples, rate, self.options)
        if hum is None:
            job.note("dehum: no mains hum found")
            return
        from scipy.signal import sosfilt  # only now: importing scipy.signal is slow, and only hum needs it

        listed = ", ".join(f"{f:g}" for f in hum.harmonics)
        job.note(f"dehum: {hum.mains_hz:g} Hz mains hum ({hum.level_db:.0f} dB against the speech), notching {listed} Hz")
        sections = notch_sections(hum.harmonics, self.options.notch_width_hz, rate)
        state = settled_state(sections, samples, rate)
        out = audio.new_buffer(len(samples))
        block = int(self.options.block_seconds * rate)
        total = len(samples)
        for start in range(0, total, block):
            end = min(total, start + block)
            filtered, state = sosfilt(sections, np.asarray(samples[start:end], dtype=np.float64), zi=state)
            out[start:end] = filtered
            job.progress(self.name, end / total)
        job.keep_as_recorded(samples, rate)  # the transcribe stage may read both (compare_cleaned)
        audio.replace(out, rate)
