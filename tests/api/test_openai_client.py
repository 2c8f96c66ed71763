"""The real ``openai`` Python client against a real ``hushdrop watch`` serving the API: each
response format of ``audio.transcriptions.create`` on tests/data/speech_en.wav, a translation
of speech_de.wav, the model list, an unknown model, a wrong token and a file that is not audio,
each answered as that client expects."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI
from openai.types.audio import Transcription, TranscriptionVerbose, TranslationVerbose

from tests.api.service import ApiService, duration_of, start_api_service
from tests.api.subtitle_checks import check_subtitles
from tests.harness import wait_for
from tests.helpers import ENGLISH_CONTENT, GERMAN_ONLY, SPEECH_DE, SPEECH_EN, SPEECH_EN_TEXT, lower_words, wer, words


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> ApiService:
    started = start_api_service(tmp_path_factory.mktemp("openai") / "site")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def client(service) -> OpenAI:
    return OpenAI(base_url=f"{service.url}/v1", api_key=service.token, max_retries=0, timeout=300)


def transcribe(client: OpenAI, **options):
    with open(SPEECH_EN, "rb") as recording:
        return client.audio.transcriptions.create(model="default", file=recording, **options)


def test_json_answers_the_transcript_and_keeps_no_recording(client, service):
    result = transcribe(client, response_format="json")
    assert isinstance(result, Transcription)
    assert wer(SPEECH_EN_TEXT, result.text) <= 0.2, result.text
    # the job went through the ledger like any other, and the original went by the profile's policy (shred)
    assert [j["state"] for j in service.run.jobs()] == ["done"]
    wait_for(lambda: not service.kept_recordings(), 30, "the request's recording to be shredded")


def test_text_answers_the_transcript_as_plain_text(client):
    text = transcribe(client, response_format="text")
    assert isinstance(text, str) and text.strip() and "\n" not in text.strip()
    assert wer(SPEECH_EN_TEXT, text) <= 0.2, text


def test_srt_answers_subtitles_that_parse_in_order(client, tmp_path):
    srt = transcribe(client, response_format="srt")
    texts = check_subtitles(srt, "srt", tmp_path, duration_of(SPEECH_EN))
    assert wer(SPEECH_EN_TEXT, " ".join(texts)) <= 0.2, srt


def test_verbose_json_with_word_and_segment_timestamps(client):
    result = transcribe(client, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert isinstance(result, TranscriptionVerbose)
    assert result.language == "english"
    assert result.duration == pytest.approx(duration_of(SPEECH_EN), abs=0.05)
    assert result.segments and result.words
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and all(s.start < s.end <= result.duration for s in result.segments)
    word_starts = [w.start for w in result.words]
    assert word_starts == sorted(word_starts) and all(0 <= w.start <= w.end <= result.duration for w in result.words)
    assert words(" ".join(w.word for w in result.words)) == words(result.text)
    assert wer(SPEECH_EN_TEXT, result.text) <= 0.2, result.text


def test_models_list_names_the_api_profile_and_an_unknown_model_is_refused_with_the_list(client, service):
    models = list(client.models.list())
    assert {"whisper-1", "default"} <= {m.id for m in models}, models
    assert all(m.object == "model" for m in models)
    jobs_before = len(service.run.jobs())
    with pytest.raises(openai.BadRequestError) as refused:
        with open(SPEECH_EN, "rb") as recording:
            client.audio.transcriptions.create(model="gpt-9-transcribe", file=recording)
    assert "whisper-1" in refused.value.body["message"] and refused.value.body["param"] == "model", refused.value.body
    assert len(service.run.jobs()) == jobs_before
    assert not service.kept_recordings()  # the refused request's file is not left in the inbox


def test_a_wrong_token_is_refused_in_openais_shape_and_starts_no_job(service):
    jobs_before = len(service.run.jobs())
    wrong = OpenAI(base_url=f"{service.url}/v1", api_key="hd-not-a-token-anyone-made", max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError) as refused:
        transcribe(wrong, response_format="json")
    assert refused.value.status_code == 401
    assert isinstance(refused.value.body, dict) and "token" in refused.value.body["message"], refused.value.body
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    assert len(service.run.jobs()) == jobs_before


def test_a_file_that_is_not_audio_is_a_bad_request_and_is_quarantined(client, service):
    data = b"%PDF-1.7\nthis is a document, not a recording\n" * 200
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.transcriptions.create(model="default", file=("minutes.wav", data), response_format="json")
    assert refused.value.status_code == 400
    assert isinstance(refused.value.body, dict) and refused.value.body["message"], refused.value.body
    # quarantined as a file from the folder would be: byte-identical, the ledger says so
    wait_for(lambda: any(p.read_bytes() == data for p in service.quarantined()), 30, "the file in quarantine")
    assert service.run.jobs()[-1]["state"] == "quarantined"


def test_translations_answer_english_text_of_german_speech(client):
    with open(SPEECH_DE, "rb") as recording:
        result = client.audio.translations.create(model="whisper-1", file=recording, response_format="verbose_json")
    assert isinstance(result, TranslationVerbose)
    assert result.language == "english" and result.segments
    found = lower_words(result.text)
    assert len(found & ENGLISH_CONTENT) >= 5 and not found & GERMAN_ONLY, result.text
