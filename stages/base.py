"""The stage contract.

A stage is a small class with a ``name``, a pydantic ``Options`` model (unknown
fields rejected, every field with a default), ``open()``/``close()`` for heavy
resources and ``run(job)``. The chain (pipeline/chain.py) opens stages in chain order, closes them
in reverse, and records each stage's seconds and options; a stage fails by
raising ``StageError`` (or ``RejectedInput``) with a message a person can act on.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from hushdrop.pipeline.audio import Audio, AudioFilter
from hushdrop.pipeline.errors import StageError
from hushdrop.pipeline.job import Job


class StageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage:
    name: ClassVar[str]
    Options: ClassVar[type[StageOptions]] = StageOptions

    def __init__(self, options: StageOptions | None = None):
        self.options = options if options is not None else self.Options()

    def open(self) -> None:
        """Acquire expensive resources (a model); called once per worker process."""

    def close(self) -> None:
        """Release what ``open`` acquired."""

    def run(self, job: Job) -> None:
        raise NotImplementedError

    def fail(self, message: str) -> StageError:
        return StageError(self.name, message)

    def audio_of(self, job: Job) -> Audio:
        if job.audio is None:
            raise self.fail("no audio to work on: this stage must come after the file is opened")
        return job.audio


class FilterStage(Stage):
    """A stage that is an ffmpeg filter: it is fused with its neighbours into one ffmpeg run."""

    def filters(self, job: Job) -> list[AudioFilter]:
        raise NotImplementedError

    def run(self, job: Job) -> None:
        audio = self.audio_of(job)
        for audio_filter in self.filters(job):
            audio.add_filter(audio_filter)
