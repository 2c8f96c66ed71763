"""normalize, highpass, resample, denoise: each on real signals through real ffmpeg.

Every test runs with each ffmpeg present (the bundled one, and the system's when there is one).
"""

from __future__ import annotations


import numpy as np
import pyloudnorm
import pytest

from hushdrop.stages.denoise import Denoise, DenoiseOptions, estimate_snr_db
from hushdrop.stages.highpass import Highpass, HighpassOptions, butterworth_q_values
from hushdrop.stages.normalize import Normalize, NormalizeOptions
from hushdrop.stages.resample import Resample
from tests.helpers import load_speech, run_chain, snr_against, tone, write_wav

pytestmark = pytest.mark.usefixtures("each_ffmpeg")


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


def speech_at(rate: int) -> np.ndarray:
    speech = load_speech()
    if rate == 16000:
        return speech
    return np.interp(np.arange(int(len(speech) * rate / 16000)) * 16000 / rate, np.arange(len(speech)), speech).astype(np.float32)


@pytest.mark.parametrize("gain_db", [-20.0, 0.0])
@pytest.mark.parametrize("target", [-23.0, -16.0])
def test_normalize_reaches_target_loudness_within_1_lu(tmp_path, gain_db, target):
    rate = 48000
    speech = speech_at(rate) * (10 ** (gain_db / 20)) * 0.5
    path = write_wav(tmp_path / "in.wav", speech, rate)
    before = pyloudnorm.Meter(rate).integrated_loudness(speech)
    options = NormalizeOptions(target_lufs=target, raise_below_lufs=0.0)  # normalise whatever the level
    out, out_rate, _ = run_chain(path, rate, [Normalize(options)], tmp_path)
    after = pyloudnorm.Meter(out_rate).integrated_loudness(out)
    assert out_rate == rate
    assert abs(after - target) <= 1.0, f"{before:.1f} LUFS became {after:.1f}, wanted {target}"


def test_normalize_raises_only_a_too_quiet_recording(tmp_path):
    rate = 48000
    meter = pyloudnorm.Meter(rate)
    speech = speech_at(rate)
    normal = speech * 10 ** ((-30.0 - meter.integrated_loudness(speech)) / 20)
    quiet = speech * 10 ** ((-60.0 - meter.integrated_loudness(speech)) / 20)
    out, _, _ = run_chain(write_wav(tmp_path / "normal.wav", normal, rate), rate, [Normalize()], tmp_path)
    assert np.array_equal(out, normal.astype(np.float32))
    out, _, _ = run_chain(write_wav(tmp_path / "quiet.wav", quiet, rate), rate, [Normalize()], tmp_path)
    assert abs(meter.integrated_loudness(out) - (-23.0)) <= 1.0


def test_normalize_leaves_digital_silence_alone(tmp_path):
    path = write_wav(tmp_path / "silence.wav", np.zeros(48000 * 3, dtype=np.float32), 48000)
    out, _, _ = run_chain(path, 48000, [Normalize()], tmp_path)
    assert len(out) == 48000 * 3
    assert np.max(np.abs(out)) == 0.0


def test_highpass_default_removes_50hz_hum_keeps_1khz(tmp_path):
    rate = 48000
    levels = {}
    for freq in (50, 1000):
        path = write_wav(tmp_path / f"tone{freq}.wav", tone(freq, 4.0, rate), rate)
        out, _, _ = run_chain(path, rate, [Highpass()], tmp_path)
        steady = slice(rate, 3 * rate)  # skip the filter's settling at the edges
        levels[freq] = rms_db(out[steady]) - rms_db(tone(freq, 4.0, rate)[steady])
    assert levels[50] <= -20.0, f"50 Hz only dropped {levels[50]:.1f} dB"
    assert abs(levels[1000]) <= 1.0, f"1 kHz changed by {levels[1000]:.2f} dB"


def test_highpass_order_sets_butterworth_sections():
    assert butterworth_q_values(2) == pytest.approx([2 ** -0.5])
    assert butterworth_q_values(4) == pytest.approx([1.306563, 0.541196], abs=1e-6)  # the textbook 4th-order pair
    assert butterworth_q_values(6) == pytest.approx([1.931852, 0.707107, 0.517638], abs=1e-6)
    assert len(Highpass(HighpassOptions(order=8)).filters(None)) == 4  # one ffmpeg section per pole pair
    with pytest.raises(ValueError):
        HighpassOptions(order=5)


def test_resample_gives_16k_mono_float32_and_keeps_pitch(tmp_path):
    rate = 44100
    left, right = tone(440, 2.0, rate), tone(440, 2.0, rate)
    import soundfile

    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), rate)
    out, out_rate, _ = run_chain(path, rate, [Resample()], tmp_path)
    assert out_rate == 16000 and out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 32000) <= 16
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * 16000 / len(out)
    assert abs(peak_hz - 440) < 2


def test_fused_filters_cost_one_render(tmp_path):
    rate = 48000
    path = write_wav(tmp_path / "in.wav", speech_at(rate) * 0.3, rate)
    _, out_rate, job = run_chain(path, rate, [Normalize(), Highpass(), Resample()], tmp_path)
    decodes = [s for s in job.stages if s.name == "decode"]
    assert out_rate == 16000
    assert len(decodes) == 1, "normalize+highpass+resample must share one ffmpeg render"
    assert decodes[0].options["passes"] == 2  # ebur128 measures, then one render does everything


def noisy_speech(snr_db: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    clean = load_speech()
    noise = np.random.default_rng(seed).standard_normal(len(clean)).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean, clean + noise


def test_denoise_improves_5db_white_noise_and_the_default_leaves_a_floor(tmp_path):
    clean, noisy = noisy_speech(5.0)
    path = write_wav(tmp_path / "noisy.wav", noisy, 16000)
    before = snr_against(clean, noisy)
    assert before == pytest.approx(5.0, abs=0.1)
    (tmp_path / "full").mkdir()
    (tmp_path / "default").mkdir()
    full, _, _ = run_chain(path, 16000, [Denoise(DenoiseOptions(prop_decrease=1.0))], tmp_path / "full")
    gentle, _, job = run_chain(path, 16000, [Denoise()], tmp_path / "default")
    at_full, by_default = snr_against(clean, full[: len(clean)]), snr_against(clean, gentle[: len(clean)])
    assert at_full - before >= 6.0, f"full gate: SNR {before:.1f} dB → {at_full:.1f} dB"
    assert by_default - before >= 4.0, f"default gate: SNR {before:.1f} dB → {by_default:.1f} dB"
    # prop_decrease 0.75 keeps a quarter of a gated bin's level, so less noise goes than at full strength
    assert by_default < at_full - 0.5, (by_default, at_full)
    assert any("gating noise" in n for n in job.notes)


def test_denoise_auto_leaves_clean_speech_untouched(tmp_path):
    clean = load_speech()
    path = write_wav(tmp_path / "clean.wav", clean, 16000)
    out, _, job = run_chain(path, 16000, [Denoise()], tmp_path)
    assert np.array_equal(out, clean)
    assert any("skipped" in n for n in job.notes)


def test_denoise_modes(tmp_path):
    clean, noisy = noisy_speech(5.0)
    assert estimate_snr_db(clean, 16000) > 15 > estimate_snr_db(noisy, 16000)
    path = write_wav(tmp_path / "clean.wav", clean, 16000)
    always, _, _ = run_chain(path, 16000, [Denoise(DenoiseOptions(mode="always"))], tmp_path)
    assert not np.array_equal(always, clean)
    noisy_path = write_wav(tmp_path / "noisy.wav", noisy, 16000)
    off, _, _ = run_chain(noisy_path, 16000, [Denoise(DenoiseOptions(mode="off"))], tmp_path)
    assert np.array_equal(off, noisy.astype(np.float32))


def test_default_cleaning_leaves_a_clean_recording_as_recorded(tmp_path):
    """On clean speech at a normal level the engine must hear exactly what was recorded:
    every change of input flips some of Whisper's words (docs/benchmarks.md)."""
    from hushdrop.pipeline.config import parse_config

    profile = parse_config({"profiles": {"default": {}}}, tmp_path / "config.yaml").profiles["default"]
    cleaning = [s.build() for s in profile.chain if s.name not in ("transcribe", "grammar", "tag")]
    assert [s.name for s in cleaning] == ["normalize", "resample", "dehum", "denoise"]
    speech = load_speech()
    speech = speech * 10 ** ((-30.0 - pyloudnorm.Meter(16000).integrated_loudness(speech)) / 20)
    out, rate, job = run_chain(write_wav(tmp_path / "clean.wav", speech, 16000), 16000, cleaning, tmp_path)
    assert rate == 16000
    assert np.array_equal(out, speech.astype(np.float32))
    assert "dehum: no mains hum found" in job.notes
