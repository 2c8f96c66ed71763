"""resample: mono float32 at the engine's rate (16 kHz)."""

from __future__ import annotations

from typing import Literal

from hushdrop.pipeline.audio import AudioFilter, PlainFilter
from hushdrop.pipeline.job import Job
from hushdrop.stages.base import FilterStage, StageOptions


class ResampleOptions(StageOptions):
    sample_rate: Literal[8000, 16000, 22050, 24000, 44100, 48000] = 16000


class Resample(FilterStage):
    name = "resample"
    Options = ResampleOptions

    def filters(self, job: Job) -> list[AudioFilter]:
        rate = self.options.sample_rate
        self.audio_of(job).set_rate(rate)
        return [PlainFilter("aresample", {"osr": rate, "filter_size": 64})]
