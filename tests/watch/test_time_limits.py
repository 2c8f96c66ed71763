"""Time limits per run and per stage (``time_limits``): the decision, and the local pool enforcing it.

The decision (:func:`pipeline.watch.dispatch.overrun`) is a pure function of the config and a
run's clock, shared by both executors. The local pool is tested with its real worker
processes: a stage made to hang by an ffmpeg that blocks in ``open()`` on a FIFO — the issue's
own way to hang a worker — given through ``HUSHDROP_FFMPEG``, the setting the tests already use
to choose an ffmpeg. It blocks only for files whose name starts with ``hang-``; every other
render goes to the real ffmpeg.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from hushdrop.pipeline.audio import bundled_ffmpeg
from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.watch.dispatch import RunClock, overrun
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.watch.protocol import OPENING_STAGE
from hushdrop.pipeline.watch.scheduler import requeue_due_retries
from hushdrop.pipeline.watch.worker import descendants, stop_process_tree
from tests.harness import cheap_wav, wait_for
from tests.watch.conftest import claimed, make

LIMITS = {"stage_floor_seconds": 60, "stage_factor": 4, "job_floor_seconds": 300, "job_factor": 6}


# -- the decision -----------------------------------------------------------------------------


def test_a_run_within_its_limits_is_left_alone(tmp_path):
    settings = make(tmp_path, time_limits=LIMITS)
    clock = RunClock.begin(1000.0).advance("transcribe", 120.0, 1010.0)
    assert overrun(settings, clock, 1010.0 + 479.0) is None  # 4 × 2 min = 8 min for the stage


def test_a_stage_past_its_limit_is_named_with_the_limit_and_the_recording(tmp_path):
    settings = make(tmp_path, time_limits=LIMITS)
    clock = RunClock.begin(1000.0).advance("denoise", 60.0, 1005.0)
    assert overrun(settings, clock, 1005.0 + 240.5) == "stage 'denoise' ran past its 4 min limit (recording of 1 min)"


def test_a_short_recording_gets_the_floor_and_an_unknown_length_too(tmp_path):
    settings = make(tmp_path, time_limits=LIMITS)
    short = RunClock.begin(0.0).advance("dehum", 2.0, 0.0)
    assert overrun(settings, short, 59.0) is None
    assert overrun(settings, short, 60.5) == "stage 'dehum' ran past its 1 min limit (recording of 2 s)"
    opening = RunClock.begin(0.0)
    assert opening.stage == OPENING_STAGE
    assert overrun(settings, opening, 61.0) == "stage 'open' ran past its 1 min limit (the recording's length was not known yet)"


def test_a_new_stage_starts_its_own_time_but_the_job_limit_counts_from_the_start(tmp_path):
    settings = make(tmp_path, time_limits=LIMITS)
    clock = RunClock.begin(0.0).advance("normalize", 60.0, 1.0)
    clock = clock.advance("transcribe", None, 200.0)  # a later report without the duration keeps it
    assert clock.duration_s == 60.0 and clock.stage_started_at == 200.0
    assert clock.advance("transcribe", None, 300.0).stage_started_at == 200.0  # same stage: same start
    assert overrun(settings, clock, 359.0) is None  # 159 s into the stage (limit 4 min), 359 s into the job (6 min)
    clock = clock.advance("grammar", None, 359.0)
    assert overrun(settings, clock, 360.5) == "the job ran past its 6 min limit, in stage 'grammar' (recording of 1 min)"


def test_a_lying_header_buys_no_more_than_max_duration_hours(tmp_path):
    settings = make(tmp_path, time_limits=LIMITS, max_duration_hours=1)
    for claimed_seconds in (10 * 24 * 3600.0, 3600.5):
        clock = RunClock.begin(0.0).advance("dehum", claimed_seconds, 0.0)
        assert overrun(settings, clock, 4 * 3600 + 1) == "stage 'dehum' ran past its 4 h limit (recording of 1 h)"
    for nonsense in (float("nan"), float("inf"), -5.0):
        clock = RunClock.begin(0.0).advance("dehum", nonsense, 0.0)
        assert overrun(settings, clock, 61.0).endswith("(the recording's length was not known yet)")


def test_the_limits_are_checked_when_the_config_is_loaded(tmp_path):
    with pytest.raises(ConfigError, match="a job's limit must be at least a stage's"):
        make(tmp_path, time_limits={"stage_floor_seconds": 600, "job_floor_seconds": 60})
    with pytest.raises(ConfigError, match="time_limits.stage_factor"):
        make(tmp_path, time_limits={"stage_factor": 0})
    defaults = make(tmp_path).time_limits
    # generous for CPU Whisper on a slow, busy box: ten times the recording for a stage
    assert defaults.stage_seconds(3600) == 36000 and defaults.stage_seconds(1) == 600
    assert defaults.job_seconds(3600) == 43200 and defaults.job_seconds(1) == 1800


# -- stopping a process tree ----------------------------------------------------------------------


def test_stopping_a_worker_kills_what_it_started_too(tmp_path):
    import subprocess
    import sys

    # a parent that ignores SIGTERM (as a local worker does) with a child blocked on a FIFO
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    parent = subprocess.Popen([
        sys.executable, "-c",
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"subprocess.Popen(['cat', {str(fifo)!r}]); print('started', flush=True); time.sleep(3600)",
    ], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "started"
    children = wait_for(lambda: descendants(parent.pid), 10, "the child to start")
    stop_process_tree(parent.pid)
    assert parent.wait(10) == -9
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in children), 10, "the child to die")


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


# -- the local pool, with real worker processes ---------------------------------------------------


def hanging_ffmpeg(root: Path) -> tuple[Path, Path]:
    """An ffmpeg that blocks for ever in open() on a FIFO nobody writes, for files named hang-*;
    the real ffmpeg for everything else. Returns (the script, the FIFO)."""
    fifo = root / "nobody-writes-this"
    os.mkfifo(fifo)
    script = root / "ffmpeg"
    script.write_text(
        "#!/bin/sh\n"
        f"case \"$*\" in */hang-*) exec cat '{fifo}' ;; esac\n"
        f"exec '{bundled_ffmpeg()}' \"$@\"\n"
    )
    script.chmod(0o755)
    return script, fifo


def processes_reading(path: Path) -> list[int]:
    """Live processes whose command line names ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(path).encode() in (entry / "cmdline").read_bytes() and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def hanging(tmp_path, monkeypatch):
    script, fifo = hanging_ffmpeg(tmp_path)
    monkeypatch.setenv("HUSHDROP_FFMPEG", str(script))
    return fifo


def test_a_hanging_stage_is_stopped_retried_then_quarantined_naming_it_and_the_queue_goes_on(tmp_path, hanging):
    from hushdrop.pipeline.watch.service import make_executor

    settings = make(
        tmp_path, max_attempts=2, retry_backoff_seconds=0.2,
        time_limits={"stage_floor_seconds": 4, "stage_factor": 1, "job_floor_seconds": 60, "job_factor": 2},
    )
    ledger = Ledger(settings.ledger_path)
    executor = make_executor(settings, ledger)
    try:
        stuck = claimed(settings, ledger, "hang-1.wav", seed=1)
        # 30 s long: its stages may take 30 s each (the limit scales with the duration), a busy machine's margin
        normal = claimed(settings, ledger, "normal.wav", data=cheap_wav(2, seconds=30))
        executor.start()
        wait_for(lambda: any(w["ready"] for w in executor.workers_info()), 120, "a worker to load the model")
        first_worker = executor.workers_info()[0]["pid"]
        started = time.monotonic()
        executor.wake()

        def settled():
            requeue_due_retries(ledger, executor.wake)  # what the service's scheduler does every few seconds
            rows = [ledger.get(stuck.id), ledger.get(normal.id)]
            return all(r.state in (State.DONE, State.QUARANTINED) for r in rows) and rows

        stuck_row, normal_row = wait_for(settled, 180, "both jobs to settle", interval=0.2)
        assert normal_row.state == State.DONE and normal_row.attempts == 1, normal_row  # the queue went on
        assert all(p.exists() for p in normal_row.outputs) and normal_row.outputs
        assert stuck_row.state == State.QUARANTINED and stuck_row.attempts == 2, stuck_row  # each stop counted
        assert stuck_row.error_stage == "dehum"  # the first stage that needs the decoded samples
        assert stuck_row.error == "stage 'dehum' ran past its 4 s limit (recording of 0.5 s); the worker was stopped"
        note = stuck_row.quarantine_path.with_name(stuck_row.quarantine_path.name + ".error.txt").read_text()
        assert re.search(r"^stage: +dehum$", note, re.M) and "stage 'dehum' ran past its 4 s limit" in note, note
        assert stuck_row.quarantine_path.read_bytes() == cheap_wav(1)
        # two runs of at least 4 s each; not the 30 s of a shutdown, nor for ever
        assert 8 <= time.monotonic() - started < 150
        # the stuck ffmpeg died with its worker, and another worker took the stopped one's place
        wait_for(lambda: not processes_reading(hanging), 10, "the stuck ffmpeg to be gone")
        assert first_worker not in {w["pid"] for w in executor.workers_info()}
        wait_for(lambda: any(w["ready"] for w in executor.workers_info()), 120, "a fresh worker")
        assert executor.fatal is None
    finally:
        executor.stop(grace=5)
        ledger.close()
