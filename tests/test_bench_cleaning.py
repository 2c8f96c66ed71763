"""bench.cleaning's verdict over repeated runs: the target judged on the means of several runs of the
same files, since one run of the engine samples anew where a reading fails its checks. These tests
feed the table counted errors, never the held-out set or real results."""

from __future__ import annotations

from bench.cleaning import Store, repeat_table
from bench.common import Counts


def errors(n: int, ref: int = 100, clips: int = 10) -> Counts:
    return Counts(ref=ref, sub=n, clips=clips)


def one_run(bare_en: int, chain_en: int, bare_zh: int, chain_zh: int) -> dict:
    return {
        "bare": {("en", "white+5dB"): errors(bare_en), ("zh", "white+5dB"): errors(bare_zh)},
        "chain": {("en", "white+5dB"): errors(chain_en), ("zh", "white+5dB"): errors(chain_zh)},
    }


def rows_of(table: str) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[0] == "white+5dB":
            rows[cells[1]] = cells
    return rows


def test_a_group_one_run_misses_holds_on_the_means_and_the_spread_is_shown():
    # run 1 alone: the chain is 3 points worse on en; over three runs it is 0.33 worse on average
    runs = [one_run(20, 23, 50, 45), one_run(24, 22, 52, 46), one_run(22, 22, 51, 47)]
    table = repeat_table(runs)
    rows = rows_of(table)
    assert rows["en"][2] == "10"
    assert rows["en"][3] == "22.0 (20.0–24.0)"
    assert rows["en"][4] == "22.3 (22.0–23.0)"
    assert rows["en"][5] == "yes"
    assert rows["**pooled**"][3] == "36.5 (35.0–38.0)"  # (20+50)/200, (24+52)/200, (22+51)/200
    assert rows["**pooled**"][4] == "34.2 (34.0–34.5)"
    assert rows["**pooled**"][5] == "yes"
    assert table.endswith("Target missed, on the means, in: none")


def test_a_group_worse_on_the_means_and_a_pooled_tie_are_misses():
    runs = [one_run(20, 21, 50, 49), one_run(20, 21, 50, 49)]
    table = repeat_table(runs)
    rows = rows_of(table)
    assert rows["en"][5] == "**no**"  # 21.0 > 20.0 + 0.5
    assert rows["zh"][5] == "yes"
    assert rows["**pooled**"][5] == "**no**"  # 70 errors each way: equal is not strictly better
    assert table.endswith("Target missed, on the means, in: white+5dB en, white+5dB pooled")


def test_each_repetition_has_its_own_cache_and_the_second_bare_run_is_bare_twices():
    names = [Store.of("bare", "fp", r).dir.name for r in (1, 2, 3)]
    assert len(set(names)) == 3
    assert names[0].startswith("cleaning-bare-fp-")
    assert names[1].startswith("cleaning-bare-again-fp-")  # the store --bare-twice fills
    assert names[2].startswith("cleaning-bare-run3-fp-")
    assert Store.of("chain", "fp", 2).dir.name.startswith("cleaning-chain-again-fp-")
