"""Running a stage chain on a job: the one place that times, records and wraps errors.

``Chain`` holds a profile's stage instances; it is built and opened once per worker
process (so the ASR model is loaded once) and closed in reverse order. ``run``
is a pure job: (job) -> job, no folders, no ledger.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from hushdrop.pipeline.errors import HushdropError, StageError
from hushdrop.pipeline.job import Job, StageRecord
from hushdrop.stages import FilterStage, Stage
from hushdrop.stages.transcribe import Transcribe


class Chain:
    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)
        self._opened: list[Stage] = []

    def open(self) -> None:
        for stage in self.stages:
            stage.open()
            self._opened.append(stage)

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()

    def engine_info(self) -> dict[str, Any] | None:
        """The ASR engine this chain runs: engine, model, device and compute_type.

        None without a transcribe stage, or before ``open`` has loaded its engine.
        """
        for stage in self.stages:
            if isinstance(stage, Transcribe):
                described = stage.engine_info()
                if described is None:
                    return None
                return {key: described.get(key) for key in ("engine", "model", "device", "compute_type")}
        return None

    def run(self, job: Job) -> Job:
        for stage in self.stages:
            job.progress(stage.name, 0.0)
            renders_before = len(job.audio.renders) if job.audio else 0
            started = time.perf_counter()
            try:
                stage.run(job)
            except HushdropError:
                raise
            except MemoryError as exc:
                raise StageError(stage.name, "ran out of memory; try fewer workers or a smaller model") from exc
            except Exception as exc:  # a bug or an unexpected library error: keep the stage name
                raise StageError(stage.name, f"{type(exc).__name__}: {exc}") from exc
            seconds = time.perf_counter() - started
            self._record_renders(job, renders_before, stage, seconds)
            job.progress(stage.name, 1.0)
        # render anything still pending so an all-filter chain still does its work
        if job.audio is not None and job.audio.pending:
            renders_before = len(job.audio.renders)
            job.audio.samples()
            self._record_renders(job, renders_before, None, 0.0)
        return job

    @staticmethod
    def _record_renders(job: Job, renders_before: int, stage: Stage | None, seconds: float) -> None:
        """Charge ffmpeg passes to a 'decode' record, not to the stage that asked for samples."""
        new = job.audio.renders[renders_before:] if job.audio else []
        render_seconds = sum(r.seconds for r in new)
        for render in new:
            job.stages.append(
                StageRecord(
                    name="decode",
                    options={"filters": render.filters, "passes": render.passes},
                    seconds=round(render.seconds, 4),
                    notes=["one ffmpeg run for every filter stage before it"],
                )
            )
        if stage is not None:
            notes = ["ffmpeg filter, fused into the next decode"] if isinstance(stage, FilterStage) else []
            job.stages.append(
                StageRecord(
                    name=stage.name,
                    options=stage.options.model_dump(mode="json"),
                    seconds=round(max(0.0, seconds - render_seconds), 4),
                    notes=notes,
                )
            )
