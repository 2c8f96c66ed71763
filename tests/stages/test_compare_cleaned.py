"""transcribe's compare_cleaned: where dehum or denoise changed a recording, each window is read
both as recorded and as cleaned, and the reading kept (and why) is in the JSON output.

Real decoding with the bundled base model on a few seconds of the synthesised English clip,
with white noise and 50 Hz hum mixed in; the number of decodes is read from the record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.job import Job
from hushdrop.pipeline.outputs import render_json
from hushdrop.pipeline.process import Processor
from hushdrop.stages.transcribe import TranscribeOptions, choose_reading, compression_ratio
from tests.helpers import SPEECH_EN_TEXT, load_speech, make_settings, wer, write_wav

RATE = 16000
CHAIN = ["normalize", "resample", "dehum", "denoise"]


def _noisy(tmp_path, seconds: float = 9.0):
    """The clip's first seconds (ending in a pause) with white noise and 50 Hz hum (+100, 150 Hz)."""
    speech = load_speech()[: int(seconds * RATE)]
    rng = np.random.default_rng(7)
    power = float(np.mean(speech.astype(np.float64) ** 2))
    white = rng.standard_normal(len(speech)) * np.sqrt(power / 10 ** (8 / 10))  # 8 dB SNR
    t = np.arange(len(speech)) / RATE
    hum = sum(a * np.sin(2 * np.pi * 50 * k * t) for k, a in ((1, 1.0), (2, 0.5), (3, 0.25)))
    hum *= np.sqrt(power / 10 ** (10 / 10) / np.mean(hum**2))  # 10 dB below the speech
    return write_wav(tmp_path / "noisy.wav", speech + white + hum, RATE)


def _processor(tmp_path, **transcribe) -> tuple[Processor, object]:
    settings = make_settings(tmp_path, chain=[*CHAIN, {"transcribe": transcribe}])
    return Processor(settings), settings.profile("default")


def _record(job: Job) -> dict:
    return json.loads(render_json(job))


def test_a_noisy_window_is_read_twice_and_the_json_says_which_reading_was_kept_and_why(tmp_path):
    processor, profile = _processor(tmp_path)
    try:
        job = processor.run_chain(_noisy(tmp_path), profile)
    finally:
        processor.close()
    assert any("notching" in n for n in job.notes) and any("gating noise" in n for n in job.notes), job.notes
    record = _record(job)
    assert record["windows"], record
    for window in record["windows"]:
        assert window["decodes"] == 2
        assert window["kept"] in ("cleaned", "recorded") and window["reason"]
        assert set(window["evidence"]) == {"cleaned", "recorded"}
        for reading in window["evidence"].values():
            assert reading["avg_logprob"] < 0 and reading["words"] > 0 and reading["language"] == "en"
            # each text scored on both audios, and those scores decided
            assert -5 < reading["on_cleaned"] < 0 and -5 < reading["on_recorded"] < 0, reading
        assert "each text scored on both audios" in window["reason"], window
    # the transcript is the kept reading's text, and what the other reading said is on record too
    kept_texts = " ".join(w["evidence"][w["kept"]]["text"] for w in record["windows"])
    assert " ".join(record["text"].split()) == " ".join(kept_texts.split())
    assert wer(" ".join(SPEECH_EN_TEXT.split()[:22]), record["text"]) < 0.5, record["text"]
    assert job.as_recorded is None  # the audio before cleaning is let go once it is read
    assert any("read as recorded and as cleaned" in n for n in job.notes)
    assert Job.from_record(record).to_record()["windows"] == record["windows"]


def test_a_clean_recording_is_decoded_once(tmp_path, processor_session):
    path = write_wav(tmp_path / "clean.wav", load_speech()[: 9 * RATE], RATE)
    job = processor_session.run_chain(path, processor_session.settings.profile("default"))
    windows = _record(job)["windows"]
    assert windows and all(w["decodes"] == 1 and w["kept"] == "recorded" for w in windows), windows
    assert all(set(w["evidence"]) == {"recorded"} and "no cleaning stage" in w["reason"] for w in windows)


def test_comparing_can_be_turned_off(tmp_path):
    processor, profile = _processor(tmp_path, compare_cleaned=False)
    try:
        job = processor.run_chain(_noisy(tmp_path), profile)
    finally:
        processor.close()
    windows = _record(job)["windows"]
    assert windows and all(w["decodes"] == 1 and w["kept"] == "cleaned" for w in windows), windows
    assert all("compare_cleaned is off" in w["reason"] for w in windows)
    assert job.as_recorded is None


@pytest.mark.parametrize("options, field", [
    ({"compare_cleaned": "sometimes"}, "compare_cleaned"),
    ({"cleaned_margin": 5}, "cleaned_margin"),
])
def test_bad_compare_options_are_refused_at_config_load(tmp_path, options, field):
    with pytest.raises(ConfigError) as info:
        make_settings(tmp_path, chain=[*CHAIN, {"transcribe": options}])
    assert "transcribe" in str(info.value) and field in str(info.value)
    assert TranscribeOptions(compare_cleaned=False, cleaned_margin=0.2).cleaned_margin == 0.2
    assert TranscribeOptions().cleaned_margin == 0.05


def _evidence(words: int, logprob: float | None, text: str | None = None) -> dict:
    """A reading's evidence; unless given, its text is its own (two readings that say the same words
    are decided before any confidence is compared)."""
    text = f"some words read at {logprob}" if text is None else text
    return {"words": words, "avg_logprob": logprob, "compression_ratio": compression_ratio(text), "text": text}


def test_the_reading_with_words_wins_then_the_one_that_does_not_loop_then_the_more_confident():
    assert choose_reading(_evidence(0, None, ""), _evidence(3, -0.9), 0.0)[0] == "recorded"
    assert choose_reading(_evidence(3, -0.9), _evidence(0, None, ""), 0.0)[0] == "cleaned"
    looping = "the same words again " * 20
    assert compression_ratio(looping) > 2.4
    kept, reason = choose_reading(_evidence(80, -0.1, looping), _evidence(3, -0.9), 0.0)
    assert kept == "recorded" and "repeats itself" in reason
    assert choose_reading(_evidence(3, -0.3), _evidence(3, -0.5), 0.0)[0] == "cleaned"
    assert choose_reading(_evidence(3, -0.3), _evidence(3, -0.5), 0.25)[0] == "recorded"
    assert choose_reading(_evidence(3, -0.5), _evidence(3, -0.3), -0.25)[0] == "cleaned"
    assert choose_reading(_evidence(3, None, "one text"), _evidence(3, None, "another"), 0.2)[0] == "cleaned"  # no evidence: as before


def test_words_heard_only_in_the_cleaned_audio_are_kept_only_where_the_engine_thinks_them_speech():
    silent_as_recorded = _evidence(0, None, "")
    likely_speech = {**_evidence(12, -0.6), "no_speech_prob": 0.2}
    kept, reason = choose_reading(likely_speech, silent_as_recorded, 0.2)
    assert (kept, reason) == ("cleaned", "only the cleaned reading has words")
    likely_not = {**likely_speech, "no_speech_prob": 0.63}
    kept, reason = choose_reading(likely_not, silent_as_recorded, 0.2)
    assert kept == "recorded" and "no-speech probability 0.63" in reason and "none kept" in reason
    assert choose_reading({**likely_speech, "no_speech_prob": 0.5}, silent_as_recorded, 0.2)[0] == "cleaned"
    # words heard as recorded stay, whatever the engine's doubt: they are what the engine alone would write
    kept, reason = choose_reading(silent_as_recorded, likely_not, 0.2)
    assert (kept, reason) == ("recorded", "only the recorded reading has words")


def test_where_the_two_audios_were_heard_in_different_languages_the_surer_language_wins():
    cleaned = {**_evidence(3, -0.2), "language": "vi", "language_probability": 0.41}
    recorded = {**_evidence(3, -0.9), "language": "zh", "language_probability": 0.62}
    kept, reason = choose_reading(cleaned, recorded, 0.2)
    assert kept == "recorded" and "zh 0.62 against vi 0.41" in reason
    kept, reason = choose_reading({**cleaned, "language_probability": 0.9}, recorded, 0.2)
    assert kept == "cleaned" and "vi 0.90 against zh 0.62" in reason
    # the same language: the log-probabilities decide, as before
    assert choose_reading({**cleaned, "language": "zh"}, recorded, 0.2)[0] == "cleaned"



def test_where_the_engine_scored_each_text_on_both_audios_the_likelier_text_over_both_wins():
    """Each reading is the best its decoder found on its own audio; scored on both audios, each has
    that advantage once, and the text likelier over the two together is kept, whatever each
    decoding's own confidence said. Where a score is missing, the decodings' confidences decide."""
    def scored(logprob, on_cleaned, on_recorded):
        text = f"words scored {on_cleaned} and {on_recorded}"
        return {**_evidence(3, logprob, text), "on_cleaned": on_cleaned, "on_recorded": on_recorded}

    # the cleaned decoding far surer of itself, but its text the less likely over both audios
    kept, reason = choose_reading(scored(-0.2, -0.6, -1.3), scored(-0.9, -0.8, -0.9), 0.2)
    assert kept == "recorded" and "each text scored on both audios" in reason and "-0.85 against -0.95" in reason
    # the cleaned text likelier over both by more than the margin wins, the decodings' confidences equal
    assert choose_reading(scored(-0.5, -0.6, -0.9), scored(-0.5, -0.8, -0.8), 0.02)[0] == "cleaned"
    kept, reason = choose_reading(scored(-0.5, -0.6, -0.9), scored(-0.5, -0.8, -0.8), 0.1)  # a near tie
    assert kept == "recorded" and "as likely or more" in reason
    # one score missing (an engine that cannot score): the decodings' own confidences and the margin
    assert choose_reading(scored(-0.3, -0.6, None), scored(-0.5, -0.8, -0.8), 0.1)[0] == "cleaned"
    assert choose_reading(scored(-0.45, -0.6, None), scored(-0.5, -0.8, -0.8), 0.1)[0] == "recorded"
    # two readings that say the same words: the recorded one, nothing to score
    kept, reason = choose_reading(_evidence(3, -0.1, "the same words"), _evidence(3, -0.9, "the same words"), 0.05)
    assert kept == "recorded" and "say the same words" in reason
    # words, loops and languages still come first
    assert choose_reading(scored(-0.5, -0.1, -0.1), {**_evidence(0, None, ""), "on_cleaned": None, "on_recorded": None}, 0.2)[0] == "cleaned"
