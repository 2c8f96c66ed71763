"""highpass: removes rumble and mains hum below the cutoff.

A Butterworth high-pass of the given order, built from cascaded second-order ffmpeg
``highpass`` sections with the Butterworth Q of each pole pair. The default (80 Hz,
6th order) takes a 50 Hz hum down by about 24 dB and leaves speech untouched.

Not in the default chain: Whisper hears through rumble, and the filter changed its words
on clean speech for the worse (docs/benchmarks.md). Add it for recordings dominated by
rumble; mains hum is ``dehum``'s job.
"""

from __future__ import annotations

import math

from pydantic import Field

from hushdrop.pipeline.audio import AudioFilter, PlainFilter
from hushdrop.pipeline.job import Job
from hushdrop.stages.base import FilterStage, StageOptions


class HighpassOptions(StageOptions):
    cutoff_hz: float = Field(80.0, gt=10.0, le=1000.0, description="-3 dB point")
    order: int = Field(6, ge=2, le=12, multiple_of=2, description="filter order (even)")


def butterworth_q_values(order: int) -> list[float]:
    """Q of each second-order section of an even-order Butterworth filter."""
    return [1.0 / (2.0 * math.sin((2 * k - 1) * math.pi / (2 * order))) for k in range(1, order // 2 + 1)]


class Highpass(FilterStage):
    name = "highpass"
    Options = HighpassOptions

    def filters(self, job: Job) -> list[AudioFilter]:
        return [
            PlainFilter("highpass", {"f": self.options.cutoff_hz, "width_type": "q", "width": round(q, 6)})
            for q in butterworth_q_values(self.options.order)
        ]
