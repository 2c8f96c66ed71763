"""Every grammar rule's before/after examples, and the stage's language gating."""

from __future__ import annotations

import pytest

from hushdrop.pipeline.job import Job, Segment, Transcript, Word
from hushdrop.stages.grammar import (
    EXAMPLE_GLOSSARY, RULES, Grammar, GrammarContext, GrammarOptions, apply_glossary, apply_script, convert_script,
)

CASES = [(rule, before, after) for rule in RULES for before, after in rule.examples]


def test_every_rule_has_an_example():
    assert all(rule.examples for rule in RULES)


@pytest.mark.parametrize("rule,before,after", CASES, ids=[f"{r.name}-{i}" for i, (r, _, _) in enumerate(CASES)])
def test_rule_example(rule, before, after):
    language = "zh" if rule.languages is not None and "en" not in rule.languages else "en"
    assert rule.apply(before, GrammarContext(language=language, glossary=EXAMPLE_GLOSSARY)) == after


def job_with(text: str, language: str, glossary=()) -> Job:
    job = Job(source=__import__("pathlib").Path("x.wav"), glossary=list(glossary))
    job.transcript = Transcript(language=language, segments=[Segment(0.0, 1.0, text)])
    return job


def test_english_sentence_fixes_do_not_touch_chinese():
    grammar = Grammar()
    assert grammar.fix("hello there. how are you", "en") == "Hello there. How are you"
    assert grammar.fix("你好,我用Python写代码.", "zh") == "你好，我用 Python 写代码。"
    assert grammar.fix("hello there,friend", "zh") == "hello there,friend"


def test_fillers_only_when_switched_on():
    assert Grammar().fix("um, we uh go", "en") == "Um, we uh go"
    assert Grammar(GrammarOptions(remove_fillers=True)).fix("um, we uh go", "en") == "We go"


def test_disable_rule_and_unknown_rule_rejected():
    assert Grammar(GrammarOptions(disable=["capitalise_sentences"])).fix("hello. there", "en") == "hello. there"
    with pytest.raises(ValueError, match="unknown rule"):
        GrammarOptions(disable=["no_such_rule"])


def test_stage_uses_profile_glossary_and_drops_emptied_segments():
    job = job_with("we deployed it on kubernetes", "en", glossary=["Kubernetes"])
    job.transcript.segments.append(Segment(1.0, 2.0, "  "))
    Grammar().run(job)
    assert [s.text for s in job.transcript.segments] == ["We deployed it on Kubernetes"]


def test_repetition_loop_threshold_is_configurable():
    text = "we can we can we can now"
    assert Grammar().fix(text, "en") == "We can now"
    assert Grammar(GrammarOptions(repetition_min_repeats=4)).fix(text, "en") == "We can we can we can now"


# ---------------------------------------------------------------- Chinese script (profile `script`)


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


def test_grammar_keeps_the_engines_text_beside_its_fixes():
    job = job_with("hello   there , how are you", "en")
    Grammar().run(job)
    segment = job.transcript.segments[0]
    assert segment.text == "Hello there, how are you" and segment.raw_text == "hello   there , how are you"


def test_a_chinese_glossary_term_is_found_in_either_script():
    ctx = GrammarContext(language="zh", glossary=("季度复盘",))
    assert apply_glossary("我们做了季度復盤和季度 复盘", ctx) == "我们做了季度复盘和季度复盘"
    ctx = GrammarContext(language="zh", glossary=("季度復盤",))
    assert apply_glossary("今天的季度复盘", ctx) == "今天的季度復盤"
