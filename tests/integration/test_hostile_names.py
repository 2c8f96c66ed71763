"""Hostile recording names through the real watcher: its text log, `hushdrop status` and the outputs.

Names an attacker with write access to the inbox can give a file: one with a newline and a
complete log line after it, one with a clear-screen sequence and a right-to-left override,
one with HTML, one with rich markup. Each must reach every place a person reads as text.
"""

from __future__ import annotations

import json
from pathlib import Path

from markdown_it import MarkdownIt

from hushdrop.pipeline.watch.ledger import Ledger, State
from tests.harness import cheap_wav, hushdrop
from tests.hostile import FORBIDDEN_ON_TERMINAL, FORGED_LINE, HTML_NAME, NEWLINE_NAME, TERMINAL_NAME

MARKUP_NAME = "[bold]loud[/bold] [link=file:x]click :warning:.wav"  # only a ledger row can hold "/"
WINDOW_TITLE_ERROR = "not audio \x1b]0;pwned\x07 \x9b2J"  # sets the window title; an 8-bit CSI


def add_hostile_rows(ledger: Ledger, spool: Path, left_alone: Path) -> None:
    """A running, a quarantined and an environment-waiting job with hostile names and errors,
    and an inbox entry left alone (``left_alone``), as the watcher would have recorded them."""
    def claimed(name: str) -> int:
        return ledger.add(profile="default", name=name, inbox_path=spool / name.replace("/", "_"),
                          spool_path=spool / "x", size=1, mtime_ns=1, state=State.CLAIMED)

    running = claimed(TERMINAL_NAME + MARKUP_NAME)
    ledger.start(running, "worker-1")
    ledger.progress(running, "transcribe\x1b[2J", 0.5, 4, 7)
    quarantined = claimed(NEWLINE_NAME)
    ledger.transition(quarantined, State.QUARANTINED, error_stage="probe", error=f"{WINDOW_TITLE_ERROR}: {NEWLINE_NAME}",
                      quarantine_path=spool / "q" / TERMINAL_NAME)
    waiting = claimed(TERMINAL_NAME)
    ledger.start(waiting, "worker-1")
    ledger.transition(waiting, State.FAILED, error_stage="decode", error=f"disk: {TERMINAL_NAME}", env_failures=2)
    ledger.facts.set(intake_problems=[{"path": str(left_alone), "reason": f"left alone: {WINDOW_TITLE_ERROR}"}])


def test_hostile_names_stay_one_visible_line_in_the_log_status_and_markdown(watch_run):
    run = watch_run()
    names = [NEWLINE_NAME, TERMINAL_NAME, HTML_NAME, "[bold]loud.wav"]
    for seed, name in enumerate(names):
        run.drop(name, cheap_wav(190 + seed))
    run.start("--once", wait_ready=False)
    assert run.proc.wait(120) == 0, run.log_text()
    assert sorted(run.done_names()) == sorted(names)

    # the text log: the forged line is part of its record's line, shown with its newline escaped
    log = run.log_text()
    assert f"claimed {run.inbox}/call\\n{FORGED_LINE}.wav" in log, log
    assert not any(line.startswith(FORGED_LINE) for line in log.splitlines()), log
    assert "call\\x1b[2J\\u202egnp.wav" in log and not FORBIDDEN_ON_TERMINAL.search(log.replace("\n", "")), log

    # the Markdown transcript names the recording as text, even where HTML is rendered
    md = next(p for p in run.outputs() if p.suffix == ".md" and "img" in p.name)
    rendered = MarkdownIt("commonmark").render(md.read_text())
    assert "<img" not in rendered and "<h1>&lt;img src=x onerror=alert(1)&gt;.wav</h1>" in rendered, rendered

    ledger = Ledger(run.workdir / "ledger.sqlite3")
    try:
        left_alone = run.inbox / f"x{TERMINAL_NAME}.part"
        left_alone.write_bytes(b"")
        add_hostile_rows(ledger, run.workdir / "spool", left_alone)
    finally:
        ledger.close()
    status = hushdrop(run.config_path, "status")
    assert status.returncode == 3, status.stderr  # not running; and no markup error from a name
    out = status.stdout
    assert not FORBIDDEN_ON_TERMINAL.search(out.replace("\n", "")), out  # no ESC, BEL, CSI, bidi override
    assert out.count("\n") == len(out.splitlines())  # no line break but the ones status writes
    assert "call\\x1b[2J\\u202egnp.wav" in out and f"call\\n{FORGED_LINE}.wav" in out
    assert "[bold]loud.wav" in out and MARKUP_NAME in out  # names, not markup
    assert "not audio \\x1b]0;pwned\\x07 \\x9b2J" in out and "transcribe\\x1b[2J" in out
    assert "xcall\\x1b[2J\\u202egnp.wav.part: left alone: not audio \\x1b]0;pwned" in out
    machine = hushdrop(run.config_path, "status", "--json")
    assert machine.returncode == 3 and not FORBIDDEN_ON_TERMINAL.search(machine.stdout.replace("\n", ""))
    record = json.loads(machine.stdout)
    assert {j["name"] for j in record["recent_done"]} >= {NEWLINE_NAME, HTML_NAME}  # JSON keeps the exact names
    assert record["in_flight"][0]["name"] == TERMINAL_NAME + MARKUP_NAME
