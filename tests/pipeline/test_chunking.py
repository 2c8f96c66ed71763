from __future__ import annotations

import numpy as np

from hushdrop.pipeline.chunking import frame_energies, pack_regions, split_at_quiet_points
from hushdrop.pipeline.job import Segment, Word


def test_split_cuts_at_the_quiet_point_and_never_exceeds_limit():
    rate = 100
    audio = np.ones(rate * 100, dtype=np.float32)
    audio[rate * 55 : rate * 56] = 0.0  # a quiet second just before the 60 s limit
    ranges = split_at_quiet_points(audio, rate, max_seconds=60, search_seconds=10)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(audio)
    assert all(b - a <= 60 * rate for a, b in ranges)
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))
    assert 55 * rate <= ranges[0][1] <= 56 * rate


def test_frame_energies_are_mean_squares_of_whole_frames():
    samples = np.array([1, -1, 2, 2, 3, 0, 9], dtype=np.float32)
    assert frame_energies(samples, 2).tolist() == [1.0, 4.0, 4.5]  # the odd 7th sample is left out
    assert frame_energies(samples, 8).size == 0
    assert frame_energies(samples, 2, np.float32).dtype == np.float32
    long = np.random.default_rng(0).standard_normal(3_000_001).astype(np.float32)
    direct = np.square(long[: 3_000_000].astype(np.float64).reshape(-1, 480)).mean(axis=1)
    assert np.array_equal(frame_energies(long, 480), direct), "computing in blocks changes no value"


def test_25_minutes_split_into_engine_windows():
    rate = 16000
    audio = np.random.default_rng(0).standard_normal(rate * 60 * 25).astype(np.float32)
    ranges = split_at_quiet_points(audio, rate, max_seconds=1200)
    assert len(ranges) == 2 and sum(b - a for a, b in ranges) == len(audio)


def test_pack_regions_joins_speech_with_gaps_and_maps_times_back():
    rate = 10
    audio = np.arange(1, 1001, dtype=np.float32)
    regions = [(100, 200), (200, 230), (500, 530), (900, 1000)]
    windows = pack_regions(regions, audio, rate, max_seconds=17, gap_seconds=1)
    assert [w.length for w in windows] == [170, 100]
    first = windows[0].gather(audio)
    # adjacent regions stay joined; a one-second silence separates the others
    assert np.array_equal(first[:130], audio[100:230])
    assert np.all(first[130:140] == 0) and np.array_equal(first[140:170], audio[500:530])
    # the two adjacent regions are one stretch of the recording
    assert [(r.window_offset, r.source_offset, r.length) for r in windows[0].regions] == [(0, 100, 130), (140, 500, 30)]
    assert windows[0].to_source_span(0.0, 1.0, rate) == (10.0, 11.0)
    assert windows[0].to_source_span(9.5, 10.5, rate) == (19.5, 20.5)  # across the adjacent join: unchanged
    assert windows[0].to_source_span(15.0, 15.5, rate) == (51.0, 51.5)  # 1 s into the third region
    assert windows[0].to_source_span(13.5, 13.5, rate) == (50.0, 50.0)  # mid-silence: the next region's start
    assert windows[1].to_source_span(5.0, 6.0, rate) == (95.0, 96.0)


def _far_apart_window():
    """Two regions 27 s apart in the recording, side by side in one window with no pause.

    Window 0-3 s is recording 10-13 s; window 3-8 s is recording 40-45 s.
    """
    rate = 10
    audio = np.arange(1, 1001, dtype=np.float32)
    [window] = pack_regions([(100, 130), (400, 450)], audio, rate, max_seconds=30, gap_seconds=0)
    assert window.length == 80 and len(window.regions) == 2
    return window, rate


def test_a_word_across_a_join_belongs_to_the_region_holding_most_of_it():
    window, rate = _far_apart_window()
    # 0.5 s before the join, 0.6 s after: the second region's, and it starts there
    assert window.region_of(2.5, 3.6, rate) == 1
    assert window.to_source_span(2.5, 3.6, rate) == (40.0, 40.6)
    # 0.8 s before, 0.2 s after: the first region's, and it ends where that region ends
    assert window.region_of(2.2, 3.2, rate) == 0
    assert window.to_source_span(2.2, 3.2, rate) == (12.2, 13.0)
    assert window.to_source_span(0.5, 1.5, rate) == (10.5, 11.5)  # inside one region: unchanged
    assert window.to_source_span(3.2, 4.0, rate) == (40.2, 41.0)
    # no duration to weigh: a point on the join belongs to the region it opens
    assert window.to_source_span(3.0, 3.0, rate) == (40.0, 40.0)


def _words(*spec):
    return [Word(a, b, text, 0.9) for a, b, text in spec]


def test_a_segment_run_across_a_distant_join_is_split_there():
    window, rate = _far_apart_window()
    seg = Segment(
        start=1.0,
        end=4.4,
        text="a new fence. Good morning everyone.",
        words=_words(
            (1.0, 1.3, "a"), (1.3, 1.8, "new"), (1.8, 2.9, "fence."),
            (2.8, 3.4, "Good"), (3.4, 3.9, "morning"), (3.9, 4.4, "everyone."),
        ),
        language="en",
        avg_logprob=-0.2,
    )
    first, second = window.map_segment(seg, rate)
    assert (first.start, first.end, first.text) == (11.0, 12.9, "a new fence.")
    assert (second.start, second.end, second.text) == (40.0, 41.4, "Good morning everyone.")
    assert [w.text for w in first.words] == ["a", "new", "fence."] and second.words[0].start == 40.0
    assert first.language == second.language == "en" and second.avg_logprob == -0.2
    # the words are the engine's, only dated
    assert [w.text for w in first.words + second.words] == [w.text for w in seg.words]


def test_a_segment_that_only_bleeds_across_a_join_is_dated_by_its_words():
    """The engine's segment times reach back over the join; its words say where it was spoken."""
    window, rate = _far_apart_window()
    words = _words((2.9, 3.5, "Good"), (3.5, 4.2, "morning."))
    seg = Segment(start=2.6, end=4.2, text="Good morning.", words=words, language="en")
    [mapped] = window.map_segment(seg, rate)
    assert (mapped.start, mapped.end, mapped.text) == (40.0, 41.2, "Good morning.")


def test_a_segment_split_in_a_language_without_spaces_is_rejoined_without_them():
    window, rate = _far_apart_window()
    words = _words((2.0, 2.5, "好的"), (2.5, 2.9, "。"), (3.1, 3.5, "大家"), (3.5, 4.0, "好"))
    seg = Segment(start=2.0, end=4.0, text="好的。大家好", words=words, language="zh")
    assert [s.text for s in window.map_segment(seg, rate)] == ["好的。", "大家好"]


def test_a_segment_without_word_times_is_kept_whole_inside_the_region_holding_most_of_it():
    window, rate = _far_apart_window()
    # 1.0 s before the join, 2.5 s after: the second region's, starting where it starts
    [late] = window.map_segment(Segment(start=2.0, end=5.5, text="x y z"), rate)
    assert (late.start, late.end, late.text, late.words) == (40.0, 42.5, "x y z", [])
    # 2.5 s before, 0.5 s after: the first region's, ending where it ends
    [early] = window.map_segment(Segment(start=0.5, end=3.5, text="x y z"), rate)
    assert (early.start, early.end) == (10.5, 13.0)


def test_pieces_adjacent_in_the_recording_are_never_split():
    """A speech region cut in two at a VAD block edge is one stretch: a segment across the cut stays whole."""
    rate = 10
    audio = np.arange(1, 1001, dtype=np.float32)
    [window] = pack_regions([(100, 130), (130, 160)], audio, rate, max_seconds=30)
    seg = Segment(start=2.0, end=4.0, text="one two", words=_words((2.0, 2.9, "one"), (3.1, 4.0, "two")))
    [mapped] = window.map_segment(seg, rate)
    assert (mapped.start, mapped.end, mapped.text) == (12.0, 14.0, "one two")


def test_a_window_splits_into_balanced_parts_only_at_its_joins():
    rate = 10
    audio = np.arange(1, 2001, dtype=np.float32)
    # four regions; the second and third follow each other without a pause (a VAD block edge)
    regions = [(0, 300), (400, 700), (700, 900), (1200, 1500)]
    (window,) = pack_regions(regions, audio, rate, max_seconds=200)
    parts = window.split(2)
    assert len(parts) == 2
    # the cut nearest half the speech (550 of 1100) that is a join: after 300, not inside the
    # stretch 400-900 (after 800), which is no pause at all
    assert [[(p.source_offset, p.length) for p in w.pieces] for w in parts] == [
        [(0, 300)],
        [(400, 300), (700, 200), (1200, 300)],
    ]
    assert sum(w.speech_length for w in parts) == window.speech_length
    for part in parts:
        assert part.pieces[0].window_offset == 0
        # each part gathers exactly the samples the whole window held for its pieces
        gathered = part.gather(audio)
        for p in part.pieces:
            assert np.array_equal(gathered[p.window_offset : p.window_offset + p.length], audio[p.source_offset : p.source_offset + p.length])
    # a time in a part maps back to the recording as it did in the whole window
    last = parts[-1]
    seg = Segment(start=1.0, end=2.0, text="x", words=[Word(start=1.0, end=2.0, text="x")])
    (mapped,) = last.map_segment(seg, rate)
    piece = last.pieces[0]
    assert mapped.start == (piece.source_offset + 10) / rate


def test_a_window_with_no_join_or_one_part_is_not_split():
    rate = 10
    audio = np.ones(5000, dtype=np.float32)
    (whole,) = pack_regions([(0, 3000)], audio, rate, max_seconds=400)  # one region, nothing to cut at
    assert whole.split(4) == [whole]
    (window,) = pack_regions([(0, 100), (300, 400)], audio, rate, max_seconds=400)
    assert window.split(1) == [window]
    assert len(window.split(5)) == 2  # no more parts than joins + 1
