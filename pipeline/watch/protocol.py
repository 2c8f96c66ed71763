"""The messages between the coordinator (the watcher process) and a worker.

A backend moves these; it adds nothing to them. The local pool sends the dataclasses
themselves over a pipe; Celery sends their plain data (:func:`to_dict`, JSON on the wire)
as the task's only argument and its result, and each side rebuilds them with
:func:`from_dict`. docs/watch.md ("Coordinator ↔ worker protocol") says who sends what,
when, and the invariants.

coordinator → worker: :class:`RunJob`, :class:`Stop`
worker → coordinator: :class:`Ready` or :class:`CannotStart` (once, after loading),
:class:`Progress` (any number), then one :class:`Finished` or :class:`Failed` per RunJob.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Union

from hushdrop.pipeline.errors import ENVIRONMENT_ERRNOS
from hushdrop.pipeline.job import Job


class Fault(StrEnum):
    """Whose fault a failure is; it decides retry or quarantine (``pipeline.watch.finish``)."""

    RECORDING = "recording"  # the file cannot be transcribed as it is: quarantine at once
    TRANSIENT = "transient"  # may not happen again (a worker crash): retry, bounded by max_attempts
    ENVIRONMENT = "environment"  # the machine (disk full, permissions, a broken tool): retry for hours


OPENING_STAGE = "open"  # what a run is in before its chain's first stage: reading the file, building the chain


def fault_of_os_error(exc: OSError) -> Fault:
    """Disk full, read-only, permission, I/O errors: the environment. Anything else: transient."""
    return Fault.ENVIRONMENT if exc.errno in ENVIRONMENT_ERRNOS else Fault.TRANSIENT


@dataclass(frozen=True)
class RunJob:
    """Run the profile's chain on the claimed original at ``spool_relative`` inside the spool
    (only read, never changed); each worker finds it in its own view of the spool folder.

    ``profile_document`` and ``time_limits`` travel to a worker with a config of its own (a
    remote one): the profile as :func:`pipeline.config.profile_document` writes it, and the
    coordinator's ``time_limits``. None: the worker shares the coordinator's config.
    """

    kind: ClassVar[str] = "run-job"
    job_id: int
    attempt: int
    spool_relative: str
    profile: str
    language: str | None = None  # this job's language override (an upload's choice), None: the profile's
    content_hash: str | None = None  # SHA-256 taken at the claim; a remote worker checks its copy against it
    profile_document: dict[str, Any] | None = None
    time_limits: dict[str, Any] | None = None
    task: str | None = None  # an API request's task (translate), None: the profile's
    prompt: str | None = None  # an API request's words, added to the profile's glossary for this job


@dataclass(frozen=True)
class Stop:
    """Finish nothing more: close the chains and exit."""

    kind: ClassVar[str] = "stop"


@dataclass(frozen=True)
class Ready:
    """The worker loaded its model and takes jobs; ``info``: pid, engine, model, device, compute_type."""

    kind: ClassVar[str] = "ready"
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CannotStart:
    """The worker could not load (its last word before it exits)."""

    kind: ClassVar[str] = "cannot-start"
    reason: str


@dataclass(frozen=True)
class Progress:
    """Where a running job is: in ``stage``, ``fraction`` (0–1) of the way through it; the
    stage is number ``stage_index`` (from 0) of the ``stage_count`` in its chain, for readers
    that show the whole run. Before the chain's first stage the stage is
    ``OPENING_STAGE`` at index 0. ``duration_s``: the recording's length once the worker has
    read it (it scales the job's time limits, ``pipeline.watch.dispatch.overrun``)."""

    kind: ClassVar[str] = "progress"
    job_id: int
    stage: str
    fraction: float
    stage_index: int = 0
    stage_count: int = 1
    duration_s: float | None = None


@dataclass(frozen=True)
class Finished:
    """The chain ran: ``job`` is what it found (no audio), as its record in plain data
    (:meth:`pipeline.job.Job.to_record`, the JSON output's form). Nothing is written yet."""

    kind: ClassVar[str] = "finished"
    job_id: int
    job: Job
    attempt: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "job": self.job.to_record(), "attempt": self.attempt}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Finished":
        return cls(job_id=data["job_id"], job=Job.from_record(data["job"]), attempt=data.get("attempt"))


@dataclass(frozen=True)
class Failed:
    """The chain (or the worker around it) failed in ``stage``; ``fault`` decides what happens next."""

    kind: ClassVar[str] = "failed"
    job_id: int
    stage: str
    message: str
    fault: Fault
    attempt: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Failed":
        return cls(**{**data, "fault": Fault(data["fault"])})


ToWorker = Union[RunJob, Stop]
FromWorker = Union[Ready, CannotStart, Progress, Finished, Failed]
Message = Union[ToWorker, FromWorker]

MESSAGES: dict[str, type] = {cls.kind: cls for cls in (RunJob, Stop, Ready, CannotStart, Progress, Finished, Failed)}


def to_dict(message: Message) -> dict[str, Any]:
    """``{"kind": …, **fields}``: plain data for JSON."""
    custom = getattr(message, "to_dict", None)
    return {"kind": message.kind, **(custom() if custom else asdict(message))}


def from_dict(data: dict[str, Any]) -> Message:
    data = dict(data)
    cls = MESSAGES[data.pop("kind")]
    custom = getattr(cls, "from_dict", None)
    return custom(data) if custom else cls(**data)


def to_json(message: Message) -> str:
    # ensure_ascii: a name with undecodable bytes (a surrogate escape) survives as \\udcXX
    return json.dumps(to_dict(message))


def from_json(text: str) -> Message:
    return from_dict(json.loads(text))
