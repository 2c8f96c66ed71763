"""Subtitle cues from word times: readable lengths, sensible cuts, CJK without spaces."""

from __future__ import annotations

import re

from hushdrop.pipeline.job import Segment, Word
from hushdrop.pipeline.subtitles import CueRules, build_cues, tokenize, width

RULES = CueRules()

# a run-on sentence of the kind Whisper returns as one 40-second segment
LONG_TEXT = (
    "So the first thing we looked at this quarter was the onboarding flow, and honestly it was "
    "worse than we thought because people kept dropping off at the second screen where we ask "
    "for the billing address before they have even seen the product, which nobody on the team "
    "really wanted but legal insisted on it last year. We moved it to the end of the flow and "
    "the completion rate went from about forty percent to nearly seventy percent in two weeks, "
    "so next we want to do the same thing for the mobile app and then look at the emails."
)


def timed_words(text: str, start: float, end: float, pause_after: dict[int, float] | None = None) -> list[Word]:
    """Word times spread over [start, end] by length, with optional pauses after some words."""
    pieces = text.split()
    pause_after = pause_after or {}
    speech = (end - start) - sum(pause_after.values())
    total = sum(len(p) + 1 for p in pieces)
    words, t = [], start
    for i, piece in enumerate(pieces):
        d = speech * (len(piece) + 1) / total
        words.append(Word(round(t, 3), round(t + d * 0.9, 3), piece, 0.9))
        t += d + pause_after.get(i, 0.0)
    return words


def check_readable(cues, line_limit: int):
    assert cues
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2, cue
        assert all(width(line) <= line_limit for line in cue.lines), cue
        assert cue.end - cue.start <= 7.0 + 1e-9, cue
        assert cue.end > cue.start
    for a, b in zip(cues, cues[1:]):
        assert a.end <= b.start + 1e-9, (a, b)  # in order, never overlapping


def test_a_40_second_segment_becomes_several_readable_cues():
    segment = Segment(3.0, 43.0, LONG_TEXT, timed_words(LONG_TEXT, 3.0, 43.0), language="en")
    assert len(LONG_TEXT) > 400
    cues = build_cues([segment], "en")
    check_readable(cues, 42)
    assert len(cues) >= 6
    assert cues[0].start == 3.0 and abs(cues[-1].end - 43.0) < 0.5
    # every word is there once, in order: the cues are the segment's text cut, nothing lost or added
    assert " ".join(" ".join(c.lines) for c in cues) == LONG_TEXT
    # a cut lands after the sentence end rather than in the middle of a phrase
    assert any(c.lines[-1].endswith("last year.") for c in cues)
    # most cues are well filled, not scraps
    assert sum(sum(map(len, c.lines)) >= 40 for c in cues) >= len(cues) - 2


def test_a_pause_ends_a_cue_and_the_cut_prefers_it():
    text = "We agreed on the budget for the spring campaign then after the break we talked about hiring"
    words = timed_words(text, 0.0, 9.0, pause_after={8: 1.5})  # 1.5 s after "campaign"
    cues = build_cues([Segment(0.0, 9.0, text, words)], "en")
    check_readable(cues, 42)
    assert cues[0].text.replace("\n", " ") == "We agreed on the budget for the spring campaign"
    assert cues[1].start == words[9].start

    # a shorter pause does not force a cut, but where the text must be cut anyway it is chosen
    text = ("we went through every ticket in the backlog with the whole support team "
            "and then we picked the twelve that come up most often")
    pieces = text.split()
    at = pieces.index("team")
    words = timed_words(text, 0.0, 9.0, pause_after={at: 0.7})
    cues = build_cues([Segment(0.0, 9.0, text, words)], "en")
    check_readable(cues, 42)
    assert cues[0].text.replace("\n", " ").endswith("whole support team")


def test_times_come_from_the_words_even_when_grammar_changed_the_text():
    # the engine heard "um so we trained it in py torch", grammar wrote the text below
    words = [Word(0.0, 0.4, "um"), Word(0.5, 0.7, "so"), Word(0.8, 1.0, "we"), Word(1.0, 1.5, "trained"),
             Word(1.5, 1.6, "it"), Word(1.6, 1.7, "in"), Word(8.0, 8.3, "py"), Word(8.3, 8.9, "torch.")]
    cues = build_cues([Segment(0.0, 8.9, "So we trained it in PyTorch.", words)], "en")
    # the 6 s pause before "py torch" splits the cue; "PyTorch." takes the time of "py" + "torch."
    assert [c.text for c in cues] == ["So we trained it in", "PyTorch."]
    assert cues[0].start == 0.5 and cues[1].start == 8.0 and cues[1].end == 8.9


def test_without_word_times_the_segment_is_split_proportionally():
    segment = Segment(10.0, 40.0, LONG_TEXT[:300])
    cues = build_cues([segment], "en")
    check_readable(cues, 42)
    assert cues[0].start == 10.0 and cues[-1].end == 40.0
    # spread by length: each cue's share of the time is about its share of the letters
    letters = sum(len(re.sub(r"\W", "", c.text)) for c in cues)
    for c in cues:
        share = len(re.sub(r"\W", "", c.text)) / letters
        assert abs((c.end - c.start) / 30.0 - share) < 0.02


def test_chinese_lines_are_counted_in_characters_and_get_no_spaces():
    text = ("今天我们开会讨论一下第三季度的销售情况，大家都准备好了吗？我们先从华东区开始，然后再看华南区的数据，"
            "最后总结一下下个季度的计划和目标，还有新产品上线的时间安排。")
    words = [Word(round(i * 0.25, 3), round(i * 0.25 + 0.2, 3), c) for i, c in enumerate(text) if c.isalnum()]
    segment = Segment(0.0, words[-1].end, text, words, language="zh")
    cues = build_cues([segment], "zh")
    check_readable(cues, 36)
    assert len(cues) >= 3
    for cue in cues:
        assert all(len(line) <= 18 for line in cue.lines), cue
        assert " " not in cue.text
    assert "".join("".join(c.lines) for c in cues) == text  # nothing added between characters
    # cuts fall after Chinese punctuation
    assert all(c.lines[-1][-1] in "，。？" for c in cues)


def test_mixed_chinese_and_latin_keeps_its_own_spaces():
    text = "我们用 Python 写了 3 个 API 接口"
    assert "".join((" " if t.space else "") + t.text for t in tokenize(text)) == text
    cues = build_cues([Segment(0.0, 3.0, text, language="zh")], "zh")
    assert [c.text for c in cues] == [text]


def test_a_short_cue_is_held_a_little_but_never_over_the_next():
    segments = [
        Segment(1.0, 1.3, "Yes.", [Word(1.0, 1.3, "Yes.")]),
        Segment(1.6, 2.5, "Go ahead.", [Word(1.6, 1.9, "Go"), Word(1.9, 2.5, "ahead.")]),
        Segment(5.0, 5.2, "Okay.", [Word(5.0, 5.2, "Okay.")]),
    ]
    cues = build_cues(segments, "en", until=5.5)
    assert [(c.start, c.end) for c in cues] == [(1.0, 1.6), (1.6, 2.5), (5.0, 5.5)]


def test_opening_and_closing_punctuation_stay_with_their_words():
    tokens = tokenize('He said "fine" (twice) — then left.')
    assert [t.text for t in tokens] == ["He", "said", '"fine"', "(twice)", "—", "then", "left."]
    assert [t.text for t in tokenize("“你好”，再见。")] == ["“你", "好”，", "再", "见。"]
