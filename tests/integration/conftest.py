"""Fixtures for the integration tests; the harness itself lives in tests/harness.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness import (  # noqa: F401 - re-exported for the tests of this folder
    FORMATS, REPO, WatchRun, base_config, cheap_wav, hushdrop, make_config, sha, wait_for,
)


@pytest.fixture
def watch_run(tmp_path: Path):
    runs: list[WatchRun] = []

    def make(**top: Any) -> WatchRun:
        run = WatchRun(tmp_path / f"site{len(runs) + 1}", base_config(**top))
        runs.append(run)
        return run

    yield make
    for run in runs:
        if run.proc is not None and run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(10)


# `hushdrop run` in its own process, for the one-shot CLI tests
