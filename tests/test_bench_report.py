"""docs/benchmarks.md regeneration: only the blocks between generated markers change.

``bench.run_all --report`` rewrites the page from bench/results/; hand-written sections
(the Mandarin prompt trick, issue 13's CPU throughput, ...) sit outside the markers and
must come back byte for byte. These tests feed the merge small strings and temp files,
never the held-out set or real results.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.run_all import DOC, MarkerError, generated_spans, merge_generated, update_page

REPO = DOC.parent.parent

HAND = (
    "## Mandarin: a hand-written section\n"
    "\n"
    "*Hand-written.* Odd bytes stay: trailing spaces   \n"
    "tabs\there, 以下是普通话的句子。, a fake marker in text <!-- generated: begin x --> and\n"
    "\n"
    "\n"
    "| a | b |\n|---|---|\n| 1.0 | 2.0 |\n"
)

PAGE = (
    "<!-- generated: begin overview -->\n"
    "\n# Benchmarks\n\nGenerated 2026-01-01.\n\n"
    "<!-- generated: end overview -->\n"
    "\n"
    "## A note between two generated blocks\n"
    "\n"
    "<!-- generated: begin speed -->\n"
    "\n## Speed\n\n| wall s |\n|---|\n| 143.9 |\n\n"
    "<!-- generated: end speed -->\n"
    "\n" + HAND
)


def test_regenerating_replaces_the_blocks_and_keeps_everything_else_byte_for_byte():
    merged = merge_generated(PAGE, {"overview": "# Benchmarks\n\nGenerated 2026-02-02.\n",
                                    "speed": "## Speed\n\n| wall s |\n|---|\n| 99.0 |"})

    assert "Generated 2026-02-02." in merged and "2026-01-01" not in merged
    assert "| 99.0 |" in merged and "143.9" not in merged
    assert merged.endswith("<!-- generated: end speed -->\n\n" + HAND)
    assert "<!-- generated: end overview -->\n\n## A note between two generated blocks\n\n" in merged
    # the same blocks again give the same page: nothing drifts outside the markers
    assert merge_generated(merged, {"overview": "# Benchmarks\n\nGenerated 2026-02-02.\n",
                                    "speed": "## Speed\n\n| wall s |\n|---|\n| 99.0 |"}) == merged


def test_merging_what_is_already_there_gives_the_page_back_unchanged():
    blocks = {name: PAGE[start:end] for name, (start, end) in generated_spans(PAGE).items()}
    assert merge_generated(PAGE, blocks) == PAGE


def test_blocks_not_generated_any_more_are_kept_and_new_ones_are_appended():
    merged = merge_generated(PAGE, {"overview": "# New", "accuracy": "## Accuracy\n\n| x |"})

    assert "| 143.9 |" in merged  # speed: on the page, not generated this time
    assert merged.startswith("<!-- generated: begin overview -->\n\n# New\n\n<!-- generated: end overview -->\n")
    assert merged.endswith(HAND + "\n<!-- generated: begin accuracy -->\n\n## Accuracy\n\n| x |\n\n"
                           "<!-- generated: end accuracy -->\n")


def test_a_new_page_is_the_blocks_between_their_markers():
    page = merge_generated(None, {"overview": "# Benchmarks", "speed": "## Speed"})
    assert list(generated_spans(page)) == ["overview", "speed"]
    assert merge_generated(page, {"overview": "# Benchmarks", "speed": "## Speed"}) == page


@pytest.mark.parametrize(
    "page",
    [
        "# Benchmarks\n\nan old page without markers\n",
        "<!-- generated: begin a -->\ntext\n",  # never ended
        "<!-- generated: begin a -->\n<!-- generated: begin b -->\n<!-- generated: end b -->\n",
        "<!-- generated: begin a -->\n<!-- generated: end b -->\n",
        "<!-- generated: begin a -->\n<!-- generated: end a -->\n" * 2,  # twice
    ],
)
def test_a_page_without_sound_markers_is_refused(page):
    with pytest.raises(MarkerError):
        merge_generated(page, {"a": "new"})


def test_update_page_rewrites_a_file_in_place(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_bytes(PAGE.encode("utf-8"))
    update_page(doc, {"overview": "# Benchmarks\n\nGenerated later.", "speed": "## Speed\n\nfaster"})
    text = doc.read_bytes().decode("utf-8")
    assert "Generated later." in text and "faster" in text and "143.9" not in text
    assert text.endswith("<!-- generated: end speed -->\n\n" + HAND)

    old = tmp_path / "old.md"
    old.write_text("# Benchmarks\n\n" + HAND, encoding="utf-8")
    with pytest.raises(MarkerError):
        update_page(old, {"overview": "x"})
    assert old.read_text(encoding="utf-8") == "# Benchmarks\n\n" + HAND


def test_the_real_page_has_sound_markers_around_the_generated_blocks():
    spans = generated_spans(DOC.read_text(encoding="utf-8"))
    assert list(spans) == ["overview", "accuracy", "speed"]


def test_run_all_help_works_without_the_heldout_set():
    result = subprocess.run([sys.executable, "-m", "bench.run_all", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--report" in result.stdout
