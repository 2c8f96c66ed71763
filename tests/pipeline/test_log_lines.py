"""Log lines and terminal text: no name or error message can forge a log line or drive a terminal."""

from __future__ import annotations

import json
import logging
import os
import re
import time

import pytest

from hushdrop.pipeline import logs
from hushdrop.pipeline.text import terminal_text
from tests.hostile import FORBIDDEN_ON_TERMINAL, FORGED_LINE, NEWLINE_NAME, TERMINAL_NAME

RECORD_START = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} ")


def test_terminal_text_shows_every_control_and_bidi_character_as_an_escape():
    hostile = "a\nb\rc\td\x00e\x1b[2Jf\x7fg\x9bh\u202ei\u2066j\u200fk\u061cl\u2028m" + os.fsdecode(b"\xff")
    assert terminal_text(hostile) == (
        "a\\nb\\rc\\td\\x00e\\x1b[2Jf\\x7fg\\x9bh\\u202ei\\u2066j\\u200fk\\u061cl\\u2028m\\xff"
    )
    every_character = "".join(map(chr, range(0x110000)))
    assert not FORBIDDEN_ON_TERMINAL.search(terminal_text(every_character))
    assert not re.search(r"[\ud800-\udfff]", terminal_text(every_character))  # printable as UTF-8
    plain = "Team call 03 — 会议 😀 مرحبا café \\ [bold]"
    assert terminal_text(plain) == plain


@pytest.fixture
def log_output(capsys):
    """Install hushdrop's log handler (as ``watch`` does) on the captured stderr; put the old one back after."""
    logger = logging.getLogger(logs.LOGGER)
    saved = (list(logger.handlers), logger.level, logger.propagate)

    def setup(fmt: str):
        logs.setup(fmt)
        return lambda: capsys.readouterr().err

    yield setup
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_a_newline_in_a_name_is_one_text_log_line_with_the_newline_shown(log_output):
    read = log_output("text")
    logs.job_log(7).info("claimed %s", NEWLINE_NAME)
    logs.job_log(8).warning("quarantined %s: not audio", TERMINAL_NAME)
    lines = read().splitlines()  # splitlines: every line break a log viewer may honour
    assert len(lines) == 2, lines
    assert lines[0].endswith(f"job=7 claimed call\\n{FORGED_LINE}.wav")
    assert lines[1].endswith("job=8 quarantined call\\x1b[2J\\u202egnp.wav: not audio")
    assert all(RECORD_START.match(line) for line in lines)
    assert not any(FORBIDDEN_ON_TERMINAL.search(line) for line in lines)


def test_an_exception_carrying_a_name_cannot_start_a_text_log_line(log_output):
    read = log_output("text")
    try:
        raise OSError(f"cannot read {NEWLINE_NAME}\x1b[2J")
    except OSError:
        logs.job_log(9).exception("job failed")
    lines = read().splitlines()
    assert RECORD_START.match(lines[0]) and lines[0].endswith("job=9 job failed")
    assert len(lines) > 2 and all(line.startswith("    ") for line in lines[1:]), lines  # the traceback, indented
    assert any(line.endswith(f"OSError: cannot read call\\n{FORGED_LINE}.wav\\x1b[2J") for line in lines[1:]), lines
    assert not any(FORBIDDEN_ON_TERMINAL.search(line) for line in lines)


def test_the_json_log_keeps_a_hostile_name_exactly_on_one_line(log_output):
    read = log_output("json")
    logs.job_log(7).info("claimed %s", NEWLINE_NAME + TERMINAL_NAME)
    lines = read().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["msg"] == f"claimed {NEWLINE_NAME}{TERMINAL_NAME}"  # escaped once, by JSON
    assert "\x1b" not in lines[0] and "\\\\n" not in lines[0]
    assert time.time() - json.loads(lines[0])["ts"] < 60
