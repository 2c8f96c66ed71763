"""A profile's ``task: translate``: German speech becomes English text with the real bundled
Whisper base, the outputs say it is a translation and from which language, the text stages
treat it as English, and a config asks it only of an engine (and model) that can translate.

The German clip is tests/data/speech_de.wav, made by tests/data/make_speech.sh from
tests/data/speech_de.txt.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.engines import ENGINES
from hushdrop.pipeline.errors import ConfigError, RejectedInput
from hushdrop.pipeline.job import Job, Segment, Transcript
from hushdrop.pipeline.outputs import render_md, render_srt
from hushdrop.pipeline.script import apply_script
from hushdrop.stages.grammar import Grammar, GrammarOptions
from hushdrop.stages.transcribe import Transcribe, TranscribeOptions
from tests.harness import hushdrop
from tests.helpers import ENGLISH_CONTENT, GERMAN_ONLY, SPEECH_DE, lower_words, make_settings


def write_config(root: Path, profiles: dict) -> Path:
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"profiles": profiles}))
    return config


def test_run_translates_german_speech_into_english_and_marks_the_outputs(tmp_path):
    config = write_config(tmp_path, {"default": {"task": "translate", "subtitle_names": "language", "originals": "keep"}})
    recording = tmp_path / "drop" / "speech_de.wav"
    recording.parent.mkdir()
    shutil.copy(SPEECH_DE, recording)

    proc = hushdrop(config, "run", str(recording))

    assert proc.returncode == 0, proc.stderr
    assert "language de, translated into English" in proc.stdout
    outbox = tmp_path / "outbox" / "default"
    # the subtitles are English ones, and named so for a media player
    assert sorted(p.name for p in outbox.iterdir()) == sorted(
        ["speech_de.txt", "speech_de.en.srt", "speech_de.en.vtt", "speech_de.json", "speech_de.md"]
    )
    record = json.loads((outbox / "speech_de.json").read_text())
    found = lower_words(record["text"])
    assert len(found & ENGLISH_CONTENT) >= 5, record["text"]
    assert not found & GERMAN_ONLY, record["text"]
    # the language spoken is recorded; the text's language and the task beside it
    assert (record["task"], record["language"], record["text_language"]) == ("translate", "de", "en")
    assert record["segments"] and {s["language"] for s in record["segments"]} == {"en"}
    md = (outbox / "speech_de.md").read_text()
    assert "- **Language:** de (" in md
    assert "- **Translation:** into English (en) from de" in md
    # a record read back (a remote worker's answer, the page's edit) is still a translation
    again = Job.from_record(record)
    assert again.task == "translate" and again.text_language == "en" and again.transcript.language == "de"
    assert render_md(again) == md
    assert recording.read_bytes() == SPEECH_DE.read_bytes()


def test_transcribe_keeps_the_same_clip_german(tmp_path, processor_session):
    """The control: the same clip, the same chain, ``task: transcribe`` (the default)."""
    recording = tmp_path / "speech_de.wav"
    shutil.copy(SPEECH_DE, recording)
    profile = processor_session.settings.profiles["default"]
    assert profile.task == "transcribe"

    job = processor_session.run_chain(recording, profile)

    assert (job.task, job.transcript.language, job.text_language) == ("transcribe", "de", "de")
    found = lower_words(job.transcript.text)
    assert len(found & GERMAN_ONLY) >= 4, job.transcript.text
    assert job.to_record()["task"] == "transcribe"
    assert "Translation" not in render_md(job)


def translated_job(text: str, spoken: str, task: str = "translate") -> Job:
    return Job(
        source=Path("call.wav"),
        task=task,
        transcript=Transcript(language=spoken, segments=[Segment(0.0, 8.0, text, language=None)]),
    )


def test_text_stages_treat_a_translation_as_english():
    """Spoken Chinese translated into English: grammar's English rules apply, the Chinese
    script is not converted, subtitles are laid out as English; transcribed, the same text
    is treated as Chinese."""
    text = "i met her at the 學校 near the station and we talked about the weather for a long time before lunch."
    translated, transcribed = translated_job(text, "zh"), translated_job(text, "zh", task="transcribe")
    for job in (translated, transcribed):
        Grammar(GrammarOptions()).run(job)
        apply_script(job, "simplified")

    assert translated.transcript.segments[0].text.startswith("I met her at the 學校")  # capitalised as English, script kept
    assert transcribed.transcript.segments[0].text.startswith("i met her at the 学校")  # no English rule; simplified
    as_english = translated_job(translated.transcript.segments[0].text, "en", task="transcribe")
    assert render_srt(translated) == render_srt(as_english)


def test_config_refuses_translate_where_the_engine_or_model_cannot(tmp_path):
    qwen_chain = ["normalize", "resample", {"transcribe": {"engine": "qwen3-asr"}}]
    cases = {
        "own": {"default": {}, "q": {"task": "translate", "chain": qwen_chain}},
        # inherited from default: reported for the profile whose engine cannot
        "inherited": {"default": {"task": "translate"}, "q": {"chain": qwen_chain}},
    }
    for what, profiles in cases.items():
        with pytest.raises(ConfigError) as caught:
            parse_config({"profiles": profiles}, tmp_path / "config.yaml")
        assert caught.value.problems == [
            "profiles.q: task: translate: the qwen3-asr engine cannot translate into English (engines that can: "
            "whisper); use task: transcribe"
        ], what

    turbo = {"default": {"task": "translate", "chain": ["resample", {"transcribe": {"model": "turbo"}}]}}
    with pytest.raises(ConfigError) as caught:
        parse_config({"profiles": turbo}, tmp_path / "config.yaml")
    [problem] = caught.value.problems
    assert problem.startswith("profiles.default: task: translate: model large-v3-turbo cannot translate")
    assert "base" in problem and "small" in problem

    # the task is the profile's: an engine option may not say otherwise
    options_task = {"default": {"chain": ["resample", {"transcribe": {"engine_options": {"task": "translate"}}}]}}
    with pytest.raises(ConfigError) as caught:
        parse_config({"profiles": options_task}, tmp_path / "config.yaml")
    [problem] = caught.value.problems
    assert "engine_options" in problem and "set the profile's `task: translate` instead of engine_options.task" in problem

    config = write_config(tmp_path, cases["own"])
    proc = hushdrop(config, "config", "check")
    assert proc.returncode != 0
    assert "profiles.q: task: translate: the qwen3-asr engine cannot translate into English" in proc.stdout + proc.stderr


def test_whether_an_engine_translates_is_its_registry_entry(tmp_path, monkeypatch):
    """Config check and the transcribe stage ask the entry's ``can_translate``, not a name."""
    assert make_settings(tmp_path, task="translate").profiles["default"].task == "translate"
    monkeypatch.setitem(ENGINES, "whisper", replace(ENGINES["whisper"], can_translate=False))

    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, task="translate")
    assert "the whisper engine cannot" in caught.value.problems[0]
    stage = Transcribe(TranscribeOptions())
    with pytest.raises(RejectedInput, match="the whisper engine cannot translate"):
        stage.request(Job(source=Path("x.wav"), task="translate"))
    assert stage.request(Job(source=Path("x.wav"))).task == "transcribe"


def test_the_page_shows_a_translation_as_english_from_the_language_spoken(tmp_path):
    from hushdrop.pipeline.watch.ledger import Ledger
    from tests.web.conftest import add_done_job, client_for, sample_job, web_settings

    settings = web_settings(tmp_path / "site", task="translate")
    job = sample_job(texts=("Good morning.", "I go to the park with my dog."), language="en")
    job.task, job.transcript.language = "translate", "de"
    with client_for(settings) as client:
        ledger = Ledger(settings.ledger_path)
        try:
            job_id = add_done_job(settings, ledger, job)
        finally:
            ledger.close()
        page = client.get(f"/jobs/{job_id}").text
        search = client.get("/search?q=park").text
    assert re.search(r"<dd>de <small>\([^)]*\)</small> → en <small>\(translated into English\)</small></dd>", page), page
    assert "de → en" in search, search
