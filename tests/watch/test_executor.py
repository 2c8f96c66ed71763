"""The dispatch loop's decisions, the same for every backend (pipeline.watch.executor).

Each test runs against the local pool and against Celery, built as `hushdrop watch` builds
them (``service.make_executor``), without starting any worker: what is under test is the
loop's own handling of the ledger, which must not depend on the backend.
"""

from __future__ import annotations

import pytest

from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.watch.service import make_executor
from tests.watch.conftest import cut_short, make, processing

BACKENDS = {
    "local": {},
    # the broker is never reached: a stale claim is settled from the ledger and the disk alone
    "celery": {"executor": "celery", "broker_url": "redis://:pw@127.0.0.1:9/0"},
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, tmp_path):
    if request.param == "celery":
        pytest.importorskip("celery")
    settings = make(tmp_path, **BACKENDS[request.param])
    ledger = Ledger(settings.ledger_path)
    yield settings, ledger, make_executor(settings, ledger)
    ledger.close()


def test_a_stale_claim_whose_outputs_are_all_written_is_committed_and_its_original_disposed_of(backend):
    settings, ledger, executor = backend
    row = processing(settings, ledger, "written.wav", seed=4)  # a worker nobody tracks (a lost message)
    outputs = cut_short(settings, ledger, row, linked=len(settings.profiles["default"].outputs))
    assert executor.recover_stale() == 1
    after = ledger.get(row.id)
    assert after.state == State.DONE, after  # not left committed until the next restart
    assert not row.spool_path.exists() and after.outputs == outputs
    assert "Hello there." in outputs[0].read_text() and all(path.exists() for path in outputs)


def test_a_stale_claim_without_outputs_runs_again_and_the_lost_run_counts(backend):
    settings, ledger, executor = backend
    row = processing(settings, ledger, "lost.wav", seed=5)
    assert executor.recover_stale() == 1
    after = ledger.get(row.id)
    assert after.state == State.CLAIMED and after.attempts == 1 and after.worker is None
    assert row.spool_path.exists()
    assert executor.recover_stale() == 0  # nothing stale is left


def test_progress_is_stored_as_the_worker_sends_it_and_readers_work_out_the_whole_run(settings, ledger):
    from hushdrop.pipeline.watch.status import collect

    row = processing(settings, ledger)
    ledger.progress(row.id, "transcribe", 0.5, 4, 8)  # half of the fifth of eight stages
    stored = ledger.get(row.id)
    assert (stored.stage, stored.progress, stored.stage_index, stored.stage_count) == ("transcribe", 0.5, 4, 8)
    assert stored.chain_progress() == (4 + 0.5) / 8
    (running,) = collect(settings)["in_flight"]
    assert running["stage"] == "transcribe" and running["progress"] == (4 + 0.5) / 8
