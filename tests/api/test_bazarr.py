"""The requests Bazarr's Whisper provider sends (tests/api/bazarr_client.py, from Bazarr's
whisperai.py), against a real ``hushdrop watch`` serving the API: raw 16 kHz PCM made the
way Bazarr makes it, ``/detect-language`` read as Bazarr reads it, and ``/asr`` with
``encode=false`` and ``output=srt`` answering a valid SRT in the right language.

Bazarr has no token setting: beside hushdrop it needs ``api.loopback_without_token``; elsewhere
it carries the token in its endpoint URL (``http://bazarr:TOKEN@host:port``), which requests sends
as Basic credentials. Both are tested.
"""

from __future__ import annotations

import pytest

from hushdrop.pipeline.audio import ffmpeg_exe
from tests.api.bazarr_client import asr, bazarr_session, detect_language, detected, encode_audio_stream
from tests.api.service import ApiService, duration_of, start_api_service
from tests.api.subtitle_checks import check_subtitles
from tests.harness import wait_for
from tests.helpers import ENGLISH_CONTENT, GERMAN_ONLY, SPEECH_DE, SPEECH_EN, SPEECH_EN_TEXT, lower_words, wer


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> ApiService:
    started = start_api_service(tmp_path_factory.mktemp("bazarr") / "site", loopback_without_token=True)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def session():
    with bazarr_session() as opened:
        yield opened


@pytest.fixture(scope="module")
def pcm() -> dict[str, bytes]:
    """The two clips as Bazarr's ffmpeg call turns a video's audio into its request body."""
    made = {lang: encode_audio_stream(path, ffmpeg_exe()) for lang, path in (("en", SPEECH_EN), ("de", SPEECH_DE))}
    for lang, path in (("en", SPEECH_EN), ("de", SPEECH_DE)):
        assert made[lang] is not None
        assert len(made[lang]) == pytest.approx(duration_of(path) * 16000 * 2, abs=3200)  # raw s16le, mono, 16 kHz
    return made


@pytest.mark.parametrize("lang, name", [("en", "english"), ("de", "german")])
def test_detect_language_answers_what_bazarr_reads(service, session, pcm, lang, name):
    answer = detect_language(session, service.url, pcm[lang])
    assert answer.status_code == 200, answer.text
    results = detected(answer)
    # whisper_get_language(results["language_code"], results["detected_language"])
    assert (results["language_code"], results["detected_language"]) == (lang, name), results
    assert 0.5 < results["confidence"] <= 1


def test_asr_of_english_raw_pcm_answers_an_english_srt(service, session, pcm, tmp_path):
    answer = asr(session, service.url, pcm["en"], task="transcribe", language="en")
    assert answer.status_code == 200, answer.text
    texts = check_subtitles(answer.content.decode("utf-8"), "srt", tmp_path, duration_of(SPEECH_EN))
    assert wer(SPEECH_EN_TEXT, " ".join(texts)) <= 0.2, texts
    wait_for(lambda: not service.kept_recordings(), 30, "the request's recording to be shredded")


def test_asr_of_german_raw_pcm_with_the_video_name_answers_a_german_srt(service, session, pcm, tmp_path):
    answer = asr(session, service.url, pcm["de"], task="transcribe", language="de", video_name="/media/tv/Serie S01E01.mkv")
    assert answer.status_code == 200, answer.text
    assert "Serie S01E01" in service.run.output_sets()  # the outbox says which video it was
    found = lower_words(" ".join(check_subtitles(answer.content.decode("utf-8"), "srt", tmp_path, duration_of(SPEECH_DE))))
    assert len(found & GERMAN_ONLY) >= 5, found


def test_asr_translate_of_german_audio_answers_an_english_srt(service, session, pcm, tmp_path):
    # Bazarr asks this for English subtitles of a video whose audio is German
    answer = asr(session, service.url, pcm["de"], task="translate", language="de")
    assert answer.status_code == 200, answer.text
    found = lower_words(" ".join(check_subtitles(answer.content.decode("utf-8"), "srt", tmp_path, duration_of(SPEECH_DE))))
    assert len(found & ENGLISH_CONTENT) >= 5 and not found & GERMAN_ONLY, found


def test_a_token_in_bazarrs_endpoint_url_is_accepted_and_a_wrong_one_refused(service, session, pcm):
    with_token = service.url.replace("http://", f"http://bazarr:{service.token}@")
    refused_url = service.url.replace("http://", "http://bazarr:hd-not-a-token@")
    headers = {"X-Forwarded-For": "192.0.2.7"}  # as if through a proxy: not "this machine", so a token is needed
    assert session.post(f"{refused_url}/detect-language", params={"encode": "false"}, files={"audio_file": pcm["en"]},
                        headers=headers, timeout=(5, 300)).status_code == 401
    answer = session.post(f"{with_token}/detect-language", params={"encode": "false"}, files={"audio_file": pcm["en"]},
                          headers=headers, timeout=(5, 300))
    assert answer.status_code == 200 and detected(answer)["language_code"] == "en", answer.text


def test_detect_language_keeps_only_the_first_30_seconds_of_a_long_track(service, session, pcm):
    before = {j["id"] for j in service.run.jobs()}
    long_track = pcm["de"] * 3  # a film's whole track: Bazarr sends all of it
    answer = detect_language(session, service.url, long_track, video_name="/media/films/Lang.mkv")
    assert answer.status_code == 200 and detected(answer)["language_code"] == "de", answer.text
    [job] = [j for j in service.run.jobs() if j["id"] not in before]
    assert job["name"] == "Lang.wav" and job["size"] == 44 + 30 * 16000 * 2
    assert "Lang" not in service.run.output_sets()  # detection writes no outputs
