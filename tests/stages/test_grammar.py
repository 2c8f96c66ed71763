"""Every grammar rule's before/after examples, and the stage's language gating."""

from __future__ import annotations

import pytest

from hushdrop.pipeline.job import Job, Segment, Transcript
from hushdrop.stages.grammar import EXAMPLE_GLOSSARY, RULES, Grammar, GrammarContext, GrammarOptions, apply_glossary

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


def test_a_segment_that_goes_on_the_sentence_before_it_is_not_capitalised():
    """Whisper splits a long sentence into segments; only a segment after a finished sentence starts one."""
    job = job_with("i will say nothing of the circumstances", "en")
    job.transcript.segments += [
        Segment(1.0, 2.0, "which led me to leave, i think."),
        Segment(2.0, 3.0, "round his neck he wore a cloak"),
        Segment(3.0, 4.0, "  "),  # emptied: the sentence before it still runs on
        Segment(4.0, 5.0, "over his shoulders. then he left!\u201d"),
        Segment(5.0, 6.0, "he came back"),
    ]
    Grammar().run(job)
    assert [s.text for s in job.transcript.segments] == [
        "I will say nothing of the circumstances",
        "which led me to leave, I think.",
        "Round his neck he wore a cloak",
        "over his shoulders. Then he left!\u201d",
        "He came back",
    ]


def test_repetition_loop_threshold_is_configurable():
    text = "we can we can we can now"
    assert Grammar().fix(text, "en") == "We can now"
    assert Grammar(GrammarOptions(repetition_min_repeats=4)).fix(text, "en") == "We can we can we can now"


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


def _job_saying(*texts: str) -> Job:
    job = job_with(texts[0], "en")
    job.transcript.segments = [Segment(float(i), i + 1.0, t) for i, t in enumerate(texts)]
    return job


def test_a_sentence_said_a_third_time_in_a_row_is_a_loop_and_is_kept_once():
    job = _job_saying("Hello?", "Hello?", "Come in.", "Come in.", "come in", "Come in!", "Bye.")
    Grammar().run(job)
    assert [s.text for s in job.transcript.segments] == ["Hello?", "Hello?", "Come in.", "Bye."]
    assert [s.start for s in job.transcript.segments] == [0.0, 1.0, 2.0, 6.0]  # the first of the run, with its time
    assert any("3 segment(s) dropped" in n for n in job.notes), job.notes
    # the same sentence again after another is speech, not a loop; the threshold and the rule's switch apply
    job = _job_saying("One.", "Two.", "One.", "Two.")
    Grammar().run(job)
    assert len(job.transcript.segments) == 4 and not job.notes
    for options in (GrammarOptions(repetition_min_repeats=5), GrammarOptions(disable=["collapse_repetition_loops"])):
        job = _job_saying(*["Come in."] * 4)
        Grammar(options).run(job)
        assert len(job.transcript.segments) == 4
