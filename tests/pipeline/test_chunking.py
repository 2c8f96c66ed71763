from __future__ import annotations

import numpy as np

from pipeline.chunking import pack_regions, split_at_quiet_points


def test_split_cuts_at_the_quiet_point_and_never_exceeds_limit():
    rate = 100
    audio = np.ones(rate * 100, dtype=np.float32)
    audio[rate * 55 : rate * 56] = 0.0  # a quiet second just before the 60 s limit
    ranges = split_at_quiet_points(audio, rate, max_seconds=60, search_seconds=10)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(audio)
    assert all(b - a <= 60 * rate for a, b in ranges)
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))
    assert 55 * rate <= ranges[0][1] <= 56 * rate


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
    assert windows[0].to_source_time(0.0, rate) == 10.0
    assert windows[0].to_source_time(15.0, rate) == 51.0  # 1 s into the third region
    assert windows[0].to_source_time(13.5, rate) == 50.0  # in the gap: the next region's start
    assert windows[1].to_source_time(5.0, rate) == 95.0


def test_a_word_cannot_straddle_a_join():
    rate = 10
    audio = np.arange(1, 1001, dtype=np.float32)
    # two regions 27 s apart in the recording, side by side in the window (no pause)
    [window] = pack_regions([(100, 130), (400, 450)], audio, rate, max_seconds=30, gap_seconds=0)
    assert window.length == 80
    # a word timed 2.5-3.6 s in the window seems to begin in the first region ...
    assert window.to_source_time(2.5, rate) == 12.5
    # ... but it ends in the second, so that is where it starts
    assert window.to_source_span(2.5, 3.6, rate) == (40.0, 40.6)
    assert window.to_source_span(0.5, 1.5, rate) == (10.5, 11.5)  # inside one piece: unchanged
    assert window.to_source_span(3.2, 4.0, rate) == (40.2, 41.0)
