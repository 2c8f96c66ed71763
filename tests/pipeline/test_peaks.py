"""Waveform peaks for the web page, and a job's own language: both through the real chain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hushdrop.pipeline.outputs import render_json
from hushdrop.pipeline.peaks import PEAK_COUNT, decode, encode, peaks
from tests.helpers import SPEECH_EN, make_settings


def test_peaks_are_the_max_abs_of_equal_bins_read_in_blocks():
    rng = np.random.default_rng(7)
    samples = (rng.standard_normal(3_000_017) * 0.1).astype(np.float32)
    samples[1_500_000] = -0.99
    values = peaks(samples)
    edges = np.linspace(0, len(samples), PEAK_COUNT + 1).astype(int)
    expected = np.clip([np.abs(samples[a:b]).max() for a, b in zip(edges[:-1], edges[1:], strict=True)], 0, 1)
    assert len(values) == PEAK_COUNT and np.allclose(values, expected)
    assert values.max() == pytest.approx(0.99)
    assert list(peaks(np.array([0.5, -0.25], dtype=np.float32))) == [0.5, 0.25]
    assert len(peaks(np.zeros(0, dtype=np.float32))) == 0


def test_peaks_survive_their_encoding_to_a_byte_each():
    values = np.array([0.0, 0.5, 1.0, 0.2], dtype=np.float32)
    assert np.allclose(decode(encode(values)), values, atol=1 / 255)
    assert len(encode(np.ones(PEAK_COUNT))) < 3 * PEAK_COUNT // 2  # about 2.7 KB in the JSON


def test_a_job_gets_the_peaks_of_its_decoded_audio_and_its_own_language(processor_session, tmp_path):
    settings = make_settings(tmp_path)
    profile = settings.profile("default")  # language: auto
    job = processor_session.run_chain(SPEECH_EN, profile, language="en")
    assert job.language == "en" and job.transcript.language == "en"
    wave = job.waveform
    assert wave["count"] == PEAK_COUNT and wave["seconds"] == pytest.approx(31.92, abs=0.05)
    values = decode(wave["peaks"])
    assert len(values) == PEAK_COUNT and 0.05 < values.max() <= 1.0
    quiet = (values < 0.02).mean()
    assert 0.02 < quiet < 0.6  # pauses between the sentences are there, and so is the speech
    record = json.loads(render_json(job))
    assert record["waveform"] == wave
    assert processor_session.run_chain(SPEECH_EN, profile).language == "auto"  # no override: the profile's
