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


def test_the_rule_table_recomputes_each_way_of_choosing_from_the_recorded_evidence():
    """One window read twice: the cleaned decoding barely surer of itself (round 6's margin keeps the
    recorded reading), its text the likelier on both audios (the shipped rule keeps it)."""
    from bench.cleaning import rule_table

    def reading(text: str, logprob: float, on_cleaned: float, on_recorded: float) -> dict:
        return {"text": text, "words": len(text.split()), "avg_logprob": logprob, "compression_ratio": 1.0,
                "language": "en", "language_probability": 0.9, "on_cleaned": on_cleaned, "on_recorded": on_recorded}

    window = {"decodes": 2, "kept": "recorded", "evidence": {
        "cleaned": reading("the cat sat on the mat", -0.30, -0.40, -0.60),
        "recorded": reading("the bat sat on a hat", -0.35, -0.90, -0.70)}}
    chain = {"text": "the bat sat on a hat", "windows": [window]}
    results = {"conditions": ["white+5dB"], "clips": {"c1": {
        "language": "en", "reference": "the cat sat on the mat", "duration_s": 3.0,
        "runs": {"white+5dB": {"bare": {"text": "the bat sat on a hat"}, "chain": chain}}}}}
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                         for line in rule_table(results).splitlines()[2:])}
    assert rows["bare"][1] == "50.0"  # 3 of 6 words wrong
    assert rows["each decoding's own confidence, margin 0.2 (round 6)"][1:3] == ["50.0", "1"]  # no better than bare: pooled missed
    assert rows["both texts scored on both audios, margin 0.05 (shipped)"][1:3] == ["0.0", "0"]
    assert rows["both texts scored on the cleaned audio"][1] == "0.0"
    assert rows["both texts scored on the recorded audio"][1] == "0.0"
