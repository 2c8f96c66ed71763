"""In-process fixtures for watch-mode decisions: a real config and SQLite ledger in tmp_path,
real files in a real inbox and spool. No subprocess: a failure points at a function."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hushdrop.pipeline.audio import AudioFacts
from hushdrop.pipeline.config import Settings, parse_config
from hushdrop.pipeline.job import Job, Segment, Transcript, Word
from hushdrop.pipeline.outputs import commit_outputs, plan_outputs, write_outputs
from hushdrop.pipeline.watch.intake import claim
from hushdrop.pipeline.watch.ledger import JobRow, Ledger, State
from tests.harness import cheap_wav


def make(root: Path, **top) -> Settings:
    raw = {
        "profiles": {
            "default": {"settle_seconds": 0},
            "again": {"folder": "again", "duplicates": "reprocess", "originals": "delete"},
        },
        **top,
    }
    settings = parse_config(raw, root / "config.yaml")
    (settings.inbox / "again").mkdir(parents=True, exist_ok=True)
    return settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make(tmp_path)


@pytest.fixture
def ledger(settings: Settings):
    ledger = Ledger(settings.ledger_path)
    yield ledger
    ledger.close()


def claimed(settings: Settings, ledger: Ledger, name: str = "talk.wav", seed: int = 1, profile: str = "default",
            data: bytes | None = None) -> JobRow:
    """A small real recording dropped into ``profile``'s folder and claimed by the real intake."""
    folder = settings.inbox / (settings.profiles[profile].folder or "")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(cheap_wav(seed) if data is None else data)
    return claim(settings, ledger, path, settings.profiles[profile], os.lstat(path))


def processing(settings: Settings, ledger: Ledger, name: str = "talk.wav", seed: int = 1, profile: str = "default") -> JobRow:
    return ledger.start(claimed(settings, ledger, name, seed, profile).id, "worker-1:1")


def cut_short(settings: Settings, ledger: Ledger, row: JobRow, linked: int) -> list[Path]:
    """What a commit of processing ``row`` leaves when the process dies after ``linked`` of its
    outputs took their names: the real commit (plan, temp files, identities recorded, links), then
    the names it would not have reached yet taken back to the temporary names a dead process
    leaves (recovery removes those strays last). Returns the planned paths, in link order."""
    plan = plan_outputs(transcript_job(str(row.spool_path)), settings.outbox / row.profile,
                        settings.profiles[row.profile].outputs, name=row.name)
    ledger.plan_outputs(row.id, plan.paths)
    written = write_outputs(transcript_job(str(row.spool_path)), plan, name=row.name,
                            before_link=lambda paths, ids: ledger.plan_outputs(row.id, paths, ids))
    for path in written[linked:]:
        path.rename(path.with_name(f".hushdrop-{path.name}.tmp"))
    return written


def committed(settings: Settings, ledger: Ledger, name: str = "talk.wav", seed: int = 1) -> JobRow:
    """A job whose outputs were committed when the service stopped, before its original was
    disposed of: what a restart finds in state ``committed``."""
    row = processing(settings, ledger, name, seed)
    written = commit_outputs(
        transcript_job(str(row.spool_path)), settings.outbox / row.profile, settings.profiles[row.profile].outputs, name=row.name,
    )
    return ledger.transition(row.id, State.COMMITTED, expect=State.PROCESSING, outputs=written, stage="committed", progress=1.0)


def transcript_job(source: str = "/spool/x/talk.wav") -> Job:
    """What a worker sends back: a transcript document without audio."""
    job = Job(source=Path(source), profile="default")
    job.facts = AudioFacts(source, 100, "wav", "pcm_s16le", 2.0, 16000, 1)
    job.engine_info = {"engine": "whisper", "model": "base"}
    job.transcript = Transcript("en", 0.9, [Segment(0.0, 1.5, "Hello there.", [Word(0.0, 0.6, "Hello", 0.9), Word(0.7, 1.5, "there.", 0.8)])])
    return job
