"""denoise: spectral gating (noisereduce), only where it helps.

Speech enhancement tends to hurt ASR on clean speech, so ``mode: auto`` first
estimates the signal-to-noise ratio and gates only noisy recordings. The noise
profile is taken from the quietest frames of the whole recording; audio is then
processed in blocks so memory stays bounded on long files.

A stationary gate subtracts one noise spectrum everywhere, which is right for hiss,
hum and fans but wrong for a background of other voices: their spectrum *is* a
speech spectrum, and gating it cuts the talker's own words (docs/benchmarks.md). So
``auto`` also checks that the background is steady: in the quietest frames, which are
background alone, a steady noise has nearly constant energy (the 2nd and 10th
percentiles of Gaussian noise in 30 ms frames lie a fraction of a dB apart), while
babble rises and falls with syllables by several dB. Above ``max_floor_spread_db`` (a
few times the Gaussian spread, room for slowly drifting fans and hum) the recording is
left as it is.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from hushdrop.pipeline.chunking import frame_energies
from hushdrop.pipeline.job import Job
from hushdrop.stages.base import Stage, StageOptions

_FRAME_S = 0.03


class DenoiseOptions(StageOptions):
    mode: Literal["auto", "always", "off"] = "auto"
    snr_threshold_db: float = Field(15.0, description="auto mode denoises below this estimated SNR")
    prop_decrease: float = Field(1.0, ge=0.0, le=1.0, description="how much of the noise to remove")
    threshold_std: float = Field(1.0, gt=0.0, le=5.0, description="gate opens this many std above the noise")
    window_ms: float = Field(32.0, ge=8.0, le=128.0, description="STFT window; short windows keep speech onsets")
    freq_smooth_hz: float = Field(250.0, ge=0.0)
    time_smooth_ms: float = Field(32.0, ge=0.0)
    block_seconds: float = Field(60.0, ge=5.0, le=600.0)
    max_floor_spread_db: float = Field(
        1.5, gt=0.0, description="auto mode gates only a steady background: quiet-frame energy spread (p10 - p2) below this"
    )


def _frame(rate: int) -> int:
    return max(1, int(_FRAME_S * rate))


def estimate_snr_db(samples: np.ndarray, rate: int) -> float:
    """Ratio of loud-frame to quiet-frame energy (90th vs 10th percentile), in dB.

    Speech has pauses; in a clean recording they are near silence, so the ratio is
    large. Steady background noise fills the pauses and the ratio falls.
    """
    energies = frame_energies(samples, _frame(rate))
    if len(energies) < 10:
        return float("inf")
    noise = np.percentile(energies, 10)
    loud = np.percentile(energies, 90)
    if loud <= 1e-12:
        return float("inf")  # digital silence: nothing to gate
    return float(10 * np.log10(loud / max(noise, 1e-12)))


def floor_spread_db(samples: np.ndarray, rate: int) -> float:
    """How much the background's energy moves: 10th minus 2nd percentile of frame energy, in dB.

    Steady noise (hiss, hum, fans) gives a fraction of a dB; other voices several dB.
    """
    energies = frame_energies(samples, _frame(rate))
    if len(energies) < 10:
        return 0.0
    levels = 10 * np.log10(np.maximum(energies, 1e-12))
    return float(np.percentile(levels, 10) - np.percentile(levels, 2))


def noise_profile(samples: np.ndarray, rate: int, seconds: float = 2.0) -> np.ndarray:
    """The quietest frames of the recording, joined: the noise to subtract."""
    frame = _frame(rate)
    energies = frame_energies(samples, frame)
    count = max(1, min(len(energies), int(seconds / _FRAME_S)))
    quietest = np.sort(np.argsort(energies)[:count])
    return np.concatenate([np.asarray(samples[i * frame : (i + 1) * frame], dtype=np.float32) for i in quietest])


class Denoise(Stage):
    name = "denoise"
    Options = DenoiseOptions

    def run(self, job: Job) -> None:
        if self.options.mode == "off":
            return
        audio = self.audio_of(job)
        samples, rate = audio.samples()
        if len(samples) == 0:
            return
        if self.options.mode == "auto":
            snr = estimate_snr_db(samples, rate)
            if snr >= self.options.snr_threshold_db:
                job.note(f"denoise: skipped, estimated SNR {snr:.1f} dB is clean enough")
                return
            spread = floor_spread_db(samples, rate)
            if spread > self.options.max_floor_spread_db:
                job.note(
                    f"denoise: skipped, estimated SNR {snr:.1f} dB but the background is not steady "
                    f"(quiet-frame spread {spread:.1f} dB, e.g. other voices); a stationary gate would cut speech"
                )
                return
            job.note(f"denoise: estimated SNR {snr:.1f} dB, steady background ({spread:.1f} dB), gating noise")
        out = audio.new_buffer(len(samples))
        self._gate(samples, rate, out, job)
        audio.replace(out, rate)

    def _gate(self, samples: np.ndarray, rate: int, out: np.ndarray, job: Job) -> None:
        import noisereduce

        noise = noise_profile(samples, rate)
        n_fft = 1 << max(6, round(np.log2(self.options.window_ms / 1000 * rate)))
        block = int(self.options.block_seconds * rate)
        total = len(samples)
        for start in range(0, total, block):
            end = min(total, start + block)
            chunk = np.asarray(samples[start:end], dtype=np.float32)
            if len(chunk) < 2048:  # too short for an STFT frame: leave it as it is
                out[start:end] = chunk
                continue
            out[start:end] = noisereduce.reduce_noise(
                y=chunk,
                sr=rate,
                y_noise=noise,
                stationary=True,
                prop_decrease=self.options.prop_decrease,
                n_std_thresh_stationary=self.options.threshold_std,
                n_fft=n_fft,
                freq_mask_smooth_hz=self.options.freq_smooth_hz,
                time_mask_smooth_ms=self.options.time_smooth_ms,
                n_jobs=1,
            )
            job.progress(self.name, end / total)
