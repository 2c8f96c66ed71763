"""denoise: stationary spectral gating (noisereduce's gate, computed here), only where it helps.

Speech enhancement tends to hurt ASR on clean speech, so ``mode: auto`` first
estimates the signal-to-noise ratio and gates only noisy recordings. The noise
profile is taken from the quietest frames of the whole recording.

A stationary gate subtracts one noise spectrum everywhere, which is right for hiss,
hum and fans but wrong for a background of other voices: their spectrum *is* a
speech spectrum, and gating it cuts the talker's own words (docs/benchmarks.md). So
``auto`` also checks that the background is steady: in the quietest frames, which are
background alone, a steady noise has nearly constant energy (the 2nd and 10th
percentiles of Gaussian noise in 30 ms frames lie a fraction of a dB apart), while
babble rises and falls with syllables by several dB. Above ``max_floor_spread_db`` (a
few times the Gaussian spread, room for slowly drifting fans and hum) the recording is
left as it is.

The gate itself is noisereduce's stationary spectral gate (``reduce_noise(stationary=True)``,
noisereduce 3.0), re-implemented here in float32 (``spectral_gate``): same Hann STFT (hop a
quarter of the window), same per-frequency threshold from the noise clip, same 80 dB floor,
same triangular mask smoothing and the same 600 000-sample pieces with 30 000 samples of
context, so the same frames are gated and the whole recording comes out as noisereduce gives
it, to float32 rounding (tests/stages/test_denoise_gate.py holds it to that). It differs in
how, not what: float32 instead of float64, the mask smoothed by two 1-D passes instead of a
2-D FFT convolution, the last piece not padded to full length, and each piece written into
the job's buffer on disk as it is done, so memory stays bounded on long files. Its speed
against noisereduce's is in docs/benchmarks.md (bench/denoise_speed.py).
"""

from __future__ import annotations

from collections.abc import Callable
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
    prop_decrease: float = Field(
        0.75, ge=0.0, le=1.0,
        description="how much of the noise to remove; below 1 a gated bin keeps a floor, which the engine misreads less",
    )
    threshold_std: float = Field(1.0, gt=0.0, le=5.0, description="gate opens this many std above the noise")
    window_ms: float = Field(32.0, ge=8.0, le=128.0, description="STFT window; short windows keep speech onsets")
    freq_smooth_hz: float = Field(250.0, ge=0.0)
    time_smooth_ms: float = Field(32.0, ge=0.0)
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
        spectral_gate(
            samples,
            rate,
            noise_profile(samples, rate),
            n_fft=window_samples(self.options.window_ms, rate),
            prop_decrease=self.options.prop_decrease,
            threshold_std=self.options.threshold_std,
            freq_smooth_hz=self.options.freq_smooth_hz,
            time_smooth_ms=self.options.time_smooth_ms,
            out=out,
            progress=lambda fraction: job.progress(self.name, fraction),
        )
        job.keep_as_recorded(samples, rate)  # the transcribe stage may read both (compare_cleaned)
        audio.replace(out, rate)


def window_samples(window_ms: float, rate: int) -> int:
    """The STFT window (= FFT size) for ``window_ms``: the nearest power of two, at least 64."""
    return 1 << max(6, round(np.log2(window_ms / 1000 * rate)))


# noisereduce.reduce_noise's defaults: the gate runs on pieces of _PIECE samples, each with
# _CONTEXT samples of the neighbouring audio (zeros beyond the ends) on either side.
_PIECE = 600_000
_CONTEXT = 30_000
_TOP_DB = 80.0  # noisereduce's _amp_to_db floor: nothing counts as more than 80 dB below its band's peak


def _triangle(n_grad: int) -> np.ndarray:
    """noisereduce's smoothing kernel along one axis: a triangle 2*n_grad+1 long, summing to 1."""
    k = np.concatenate([np.linspace(0, 1, n_grad + 1, endpoint=False), np.linspace(1, 0, n_grad + 2)])[1:-1]
    return k / k.sum()


def noise_threshold_db(noise: np.ndarray, n_fft: int, threshold_std: float) -> np.ndarray:
    """Per-frequency gate threshold in dB (scipy's 'spectrum' STFT scale): mean + std of the noise clip.

    Computed exactly as noisereduce computes it (scipy.signal.stft, float64 dB, 80 dB floor); the
    clip is short (seconds), so this costs next to nothing.
    """
    from scipy.signal import stft

    hop = n_fft // 4
    _, _, spectrum = stft(noise, nfft=n_fft, noverlap=n_fft - hop, nperseg=n_fft, padded=False)
    db = 20 * np.log10(np.abs(spectrum) + np.finfo(np.float64).eps)
    db = np.maximum(db, np.max(db, axis=-1, keepdims=True) - _TOP_DB)
    return np.mean(db, axis=1) + np.std(db, axis=1) * threshold_std


def spectral_gate(
    samples: np.ndarray,
    rate: int,
    noise: np.ndarray,
    *,
    n_fft: int,
    prop_decrease: float = 1.0,
    threshold_std: float = 1.0,
    freq_smooth_hz: float = 250.0,
    time_smooth_ms: float = 32.0,
    out: np.ndarray | None = None,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Stationary spectral gating of ``samples`` (float32, mono) against the ``noise`` clip.

    What ``noisereduce.reduce_noise(y=samples, sr=rate, y_noise=noise, stationary=True,
    n_fft=n_fft, ...)`` returns, to float32 rounding: a time-frequency bin passes when its
    level is above the noise's mean + ``threshold_std`` std for that frequency (or when the
    band's loudest bin in the piece is 80 dB above that threshold), the 0/1 mask is smoothed
    with a triangle ``freq_smooth_hz`` x ``time_smooth_ms`` wide, and the masked STFT is
    inverted by weighted overlap-add. One difference: noisereduce rejects a smoothing width
    under one bin / one hop; here it means no smoothing along that axis (and, as in
    noisereduce, none at all when neither axis comes to more than one step).
    """
    x = np.asarray(samples, dtype=np.float32)
    hop = n_fft // 4
    thresh_db = noise_threshold_db(np.asarray(noise, dtype=np.float32), n_fft, threshold_std)
    window = _hann(n_fft)
    # |rfft(window * frame)| / sum(window) is scipy's 'spectrum' scale, the one the threshold is in.
    # Compare squared magnitudes of the unscaled rfft instead (no sqrt, no log, no division).
    scale = float(np.sum(window, dtype=np.float64))
    thresh = 10 ** (thresh_db / 20) * scale
    thresh2 = (thresh**2).astype(np.float32)
    floor2 = ((thresh * 10 ** (_TOP_DB / 20)) ** 2).astype(np.float32)
    n_freq = int(freq_smooth_hz / (rate / (n_fft / 2)))
    n_time = int(time_smooth_ms / (hop / rate * 1000))
    if n_freq <= 1 and n_time <= 1:  # noisereduce skips smoothing when both are 1
        kernels = []
    else:
        kernels = [(_triangle(n), axis) for n, axis in ((n_time, 0), (n_freq, 1)) if n >= 1]
    total = len(x)
    if out is None:
        out = np.empty(total, dtype=np.float32)
    elif len(out) != total:
        raise ValueError(f"out holds {len(out)} samples, the input {total}")
    gate = _PieceGate(n_fft, window, thresh2, floor2, prop_decrease, kernels)
    for start in range(0, total, _PIECE):
        end = min(total, start + _PIECE)
        lo, hi = start - _CONTEXT, end + _CONTEXT
        piece = np.zeros(hi - lo, dtype=np.float32)
        piece[max(0, lo) - lo : min(total, hi) - lo] = x[max(0, lo) : min(total, hi)]
        out[start:end] = gate(piece)[_CONTEXT : _CONTEXT + end - start]
        if progress is not None:
            progress(end / total)
    return out


def _hann(n: int) -> np.ndarray:
    """scipy.signal.get_window('hann', n): the periodic Hann window, in float32."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


class _PieceGate:
    """One padded piece through STFT, mask, smoothing and inverse STFT, as scipy.signal.stft/istft
    (boundary='zeros', padded=False) lay out the frames: the first starts n_fft/2 before the piece."""

    def __init__(self, n_fft, window, thresh2, floor2, prop_decrease, kernels):
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.window, self.thresh2, self.floor2 = window, thresh2, floor2
        self.prop = float(prop_decrease)
        self.kernels = [(k.astype(np.float32), axis) for k, axis in kernels]

    def __call__(self, piece: np.ndarray) -> np.ndarray:
        from numpy.lib.stride_tricks import sliding_window_view
        from scipy import fft
        from scipy.ndimage import convolve1d

        n_fft, hop, window = self.n_fft, self.hop, self.window
        half = n_fft // 2
        frames_n = len(piece) // hop + 1
        span = (frames_n - 1) * hop + n_fft  # the overlap-add length (scipy's boundary-extended signal)
        padded = np.zeros(span, dtype=np.float32)
        padded[half : half + len(piece)] = piece[: span - half]
        frames = sliding_window_view(padded, n_fft)[::hop][:frames_n] * window
        spectrum = fft.rfft(frames, axis=-1)  # (frames, bins), complex64
        del frames
        power = np.square(spectrum.real)
        power += np.square(spectrum.imag)
        mask = power > self.thresh2
        mask |= np.max(power, axis=0) > self.floor2  # the 80 dB floor lifts a whole band over the threshold
        del power
        gain = mask.astype(np.float32)
        if self.prop != 1.0:
            gain *= self.prop
            gain += 1.0 - self.prop
        for kernel, axis in self.kernels:  # the 2-D triangle is separable: one pass per axis, zeros outside
            gain = convolve1d(gain, kernel, axis=axis, mode="constant", cval=0.0)
        spectrum *= gain
        del gain
        frames = fft.irfft(spectrum, n=n_fft, axis=-1)
        del spectrum
        frames *= window
        # weighted overlap-add: hop divides n_fft, so frame j's s-th hop-long slice lands in slot j + s
        ratio = n_fft // hop
        acc = np.zeros((span // hop, hop), dtype=np.float32)
        norm = np.zeros((span // hop, hop), dtype=np.float32)
        square = np.square(window)
        for s in range(ratio):
            acc[s : s + frames_n] += frames[:, s * hop : (s + 1) * hop]
            norm[s : s + frames_n] += square[s * hop : (s + 1) * hop]
        acc, norm = acc.reshape(-1), norm.reshape(-1)
        np.divide(acc, norm, out=acc, where=norm > 1e-10)
        result = np.zeros(len(piece), dtype=np.float32)
        kept = (frames_n - 1) * hop  # scipy.signal.istft's output length; noisereduce leaves the rest 0
        result[:kept] = acc[half : half + kept]
        return result
