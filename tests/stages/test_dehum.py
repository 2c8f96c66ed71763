"""dehum: finds mains hum where nobody speaks and notches it, leaves everything else alone."""

from __future__ import annotations

import numpy as np
import pytest

from scipy.signal import sosfilt

from hushdrop.stages.dehum import Dehum, DehumOptions, find_hum, notch_sections, settled_state
from tests.helpers import ffmpeg, load_speech, run_chain, snr_against, write_wav

RATE = 16000


def hum(mains_hz: float, length: int, harmonics=((1, 1.0), (2, 0.5), (3, 0.25))) -> np.ndarray:
    t = np.arange(length) / RATE
    return sum(a * np.sin(2 * np.pi * mains_hz * k * t + k) for k, a in harmonics).astype(np.float32)


def with_hum(speech: np.ndarray, mains_hz: float, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    h = hum(mains_hz, len(speech))
    h *= np.sqrt(np.mean(speech.astype(np.float64) ** 2) / np.mean(h.astype(np.float64) ** 2) / 10 ** (snr_db / 10))
    return (speech + h).astype(np.float32), h


@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_dehum_finds_the_mains_frequency_and_its_harmonics(mains_hz):
    noisy, _ = with_hum(load_speech(), mains_hz, 5.0)
    found = find_hum(noisy, RATE, DehumOptions())
    assert found is not None
    assert found.mains_hz == mains_hz
    assert found.harmonics == (mains_hz, 2 * mains_hz, 3 * mains_hz)


@pytest.mark.usefixtures("each_ffmpeg")
def test_dehum_removes_5db_hum_and_keeps_the_speech(tmp_path):
    speech = load_speech()
    noisy, _ = with_hum(speech, 50.0, 5.0)
    out, _, job = run_chain(write_wav(tmp_path / "hum.wav", noisy, RATE), RATE, [Dehum()], tmp_path)
    out = out[: len(speech)]
    before, after = snr_against(speech, noisy), snr_against(speech, out)
    assert before == pytest.approx(5.0, abs=0.1)
    # against the original: what is left is the notches' own mark on the voice near 50-150 Hz
    assert after - before >= 15.0, f"SNR {before:.1f} dB → {after:.1f} dB"
    # against the same notches run on the clean speech: the hum itself is gone, from the first sample
    sections = notch_sections((50.0, 100.0, 150.0), DehumOptions().notch_width_hz, RATE)
    notched_speech, _ = sosfilt(sections, speech.astype(np.float64), zi=settled_state(sections, speech, RATE))
    assert snr_against(notched_speech, out) >= 60.0
    assert any("50 Hz mains hum" in n and "notching 50, 100, 150 Hz" in n for n in job.notes)


def test_dehum_filters_in_blocks_without_a_seam(tmp_path):
    """Its blocks only bound memory: the notches' state carries across, so 5 s blocks give
    what one pass over the whole recording gives."""
    noisy, _ = with_hum(load_speech(), 50.0, 5.0)
    path = write_wav(tmp_path / "hum.wav", noisy, RATE)
    (tmp_path / "short").mkdir()
    blocks, _, _ = run_chain(path, RATE, [Dehum(DehumOptions(block_seconds=5.0))], tmp_path / "short")
    sections = notch_sections((50.0, 100.0, 150.0), DehumOptions().notch_width_hz, RATE)
    whole, _ = sosfilt(sections, noisy.astype(np.float64), zi=settled_state(sections, noisy, RATE))
    assert np.array_equal(blocks, whole.astype(np.float32))


@pytest.mark.parametrize("background", ["digital silence", "white noise 30 dB", "white noise 10 dB"])
@pytest.mark.usefixtures("each_ffmpeg")
def test_dehum_leaves_recordings_without_hum_untouched(tmp_path, background):
    speech = load_speech()
    if background != "digital silence":
        snr = float(background.split()[2])
        noise = np.random.default_rng(1).standard_normal(len(speech)).astype(np.float32)
        speech = speech + noise * np.sqrt(np.mean(speech**2) / 10 ** (snr / 10))
    path = write_wav(tmp_path / "plain.wav", speech, RATE)
    out, _, job = run_chain(path, RATE, [Dehum()], tmp_path)
    assert np.array_equal(out, speech.astype(np.float32))
    assert "dehum: no mains hum found" in job.notes


def test_dehum_ignores_hum_far_below_the_speech():
    noisy, _ = with_hum(load_speech(), 60.0, 60.0)
    assert find_hum(noisy, RATE, DehumOptions()) is None


@pytest.mark.usefixtures("each_ffmpeg")
def test_dehum_off_and_forced_mains(tmp_path):
    noisy, _ = with_hum(load_speech(), 60.0, 5.0)
    path = write_wav(tmp_path / "hum.wav", noisy, RATE)
    off, _, _ = run_chain(path, RATE, [Dehum(DehumOptions(mode="off"))], tmp_path)
    assert np.array_equal(off, noisy)
    assert find_hum(noisy, RATE, DehumOptions(mains_hz=50)) is None  # 60 Hz hum has no 50 Hz harmonics below 300 Hz


def eight_channel_192k(tmp_path, name: str, sources: str):
    """An 8-channel 192 kHz 24-bit WAV made by ffmpeg from lavfi ``sources`` (one mono signal on every channel)."""
    path = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", sources, "-af", "pan=7.1|" + "|".join(f"c{i}=c0" for i in range(8)),
           "-ar", "192000", "-c:a", "pcm_s24le", str(path))
    return path


@pytest.mark.usefixtures("each_ffmpeg")
def test_a_steady_300hz_tone_in_8_channels_at_192k_is_not_mains_hum(tmp_path):
    """300 Hz is a multiple of both 50 and 60 Hz, but a tone alone (and its own faint harmonics) is not hum."""
    path = eight_channel_192k(tmp_path, "tone300.wav", "sine=frequency=300:sample_rate=192000:duration=8")
    out, rate, job = run_chain(path, 192000, [Dehum()], tmp_path)
    assert rate == 192000 and len(out) == 8 * 192000
    assert "dehum: no mains hum found" in job.notes, job.notes
    assert not any("notching" in n for n in job.notes)


@pytest.mark.usefixtures("each_ffmpeg")
def test_mains_hum_in_8_channels_at_192k_is_still_found(tmp_path):
    hum_50 = "aevalsrc=0.3*sin(2*PI*50*t)+0.15*sin(2*PI*100*t)+0.08*sin(2*PI*150*t):s=192000:d=8"
    path = eight_channel_192k(tmp_path, "hum50.wav", hum_50)
    _, _, job = run_chain(path, 192000, [Dehum()], tmp_path)
    assert any("50 Hz mains hum" in n and "notching 50, 100, 150 Hz" in n for n in job.notes), job.notes


@pytest.mark.parametrize(
    "tones, mains",
    [
        ((300.0,), None),  # a lone multiple of both
        ((300.0, 600.0, 900.0), None),  # a tone and its own harmonics
        ((100.0, 150.0), 50.0),  # hum whose fundamental a small microphone does not pick up
        ((120.0, 240.0, 360.0), 60.0),  # a rectifier's buzz at twice the mains frequency
    ],
)
def test_only_a_mains_family_of_steady_tones_counts_as_hum(tones, mains):
    speech = load_speech()
    t = np.arange(len(speech)) / RATE
    steady = sum(0.1 * np.sin(2 * np.pi * f * t) for f in tones).astype(np.float32)
    found = find_hum(speech + steady, RATE, DehumOptions())
    if mains is None:
        assert found is None, found
    else:
        assert found is not None and found.mains_hz == mains, found
