"""The Chinese script a profile asks for (pipeline.script), with OpenCC: converted once, at the
end of every chain."""

from __future__ import annotations

from pathlib import Path

from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.job import Job, Segment, Transcript, Word
from hushdrop.pipeline.script import apply_script, convert_script
from tests.helpers import SPEECH_EN


def job_with(text: str, language: str) -> Job:
    job = Job(source=Path("x.wav"))
    job.transcript = Transcript(language=language, segments=[Segment(0.0, 1.0, text)])
    return job


def test_traditional_text_becomes_simplified_and_event_tags_stay_as_written():
    assert convert_script("這是一個測試", "simplified") == "这是一个测试"
    # Whisper's Traditional is Taiwan-style: the particle 著 becomes 着, the 著 of 著名 stays
    assert convert_script("我們換著喝，很著名", "simplified") == "我们换着喝，很著名"
    text = "[音樂] 這是一個測試 (掌聲) (也就是說) ♪ 頭髮 [music]"
    assert convert_script(text, "simplified") == "[音樂] 这是一个测试 (掌聲) (也就是说) ♪ 头发 [music]"
    assert convert_script("这是一个测试 [音乐]", "traditional") == "這是一個測試 [音乐]"
    assert convert_script("里面的头发", "tw") == "裡面的頭髮" and convert_script("里面的头发", "hk") == "裏面的頭髮"
    assert convert_script("這是一個測試", "keep") == "這是一個測試"


def test_apply_script_converts_zh_and_yue_only_and_keeps_the_raw_text():
    job = job_with("這是一個測試", "zh")
    job.transcript.segments[0].words = [Word(0.0, 0.5, "這是"), Word(0.5, 1.0, "一個測試")]
    job.transcript.segments += [
        Segment(1.0, 2.0, "我哋聽日見", language="yue"),
        Segment(2.0, 3.0, "ok, 這 is English", language="en"),
        Segment(3.0, 4.0, "日本語の文章です", language="ja"),
    ]
    apply_script(job, "traditional")  # already traditional: unchanged, but raw_text recorded
    apply_script(job, "simplified")
    zh, yue, en, ja = job.transcript.segments
    assert (zh.text, zh.raw_text) == ("这是一个测试", "這是一個測試")
    assert [w.text for w in zh.words] == ["这是", "一个测试"]
    assert yue.text == "我哋听日见" and yue.raw_text == "我哋聽日見"
    assert (en.text, en.raw_text) == ("ok, 這 is English", None)
    assert (ja.text, ja.raw_text) == ("日本語の文章です", None)  # Japanese kanji are not Chinese script
    assert job.script == "simplified"


def test_the_profiles_script_is_applied_once_at_the_end_of_the_chain(processor_session, tmp_path):
    # English speech decoded as Chinese: the engine writes some Chinese characters (謝謝) among the English
    settings = parse_config({"profiles": {"default": {"language": "zh", "script": "simplified"}}}, tmp_path / "config.yaml")
    job = processor_session.run_chain(SPEECH_EN, settings.profiles["default"])
    assert job.script == "simplified" and job.transcript.segments
    for segment in job.transcript.segments:
        assert segment.raw_text is not None and segment.text == convert_script(segment.raw_text, "simplified")
    assert "謝" not in " ".join(s.text for s in job.transcript.segments)
