"""normalize: EBU R128 loudness to a target with ffmpeg's loudnorm, measured first (two-pass)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field

from pipeline.audio import AudioFilter, FilterExpression
from pipeline.job import Job
from stages.base import FilterStage, StageOptions


class NormalizeOptions(StageOptions):
    target_lufs: float = Field(-23.0, ge=-70.0, le=-5.0, description="integrated loudness target")
    true_peak_db: float = Field(-2.0, ge=-9.0, le=0.0, description="maximum true peak, dBTP")
    loudness_range: float = Field(11.0, ge=1.0, le=50.0, description="target loudness range, LU")


@dataclass
class LoudnormFilter:
    options: NormalizeOptions

    def _base(self) -> dict:
        return {"I": self.options.target_lufs, "TP": self.options.true_peak_db, "LRA": self.options.loudness_range}

    def analysis_expression(self) -> FilterExpression:
        return "loudnorm", {**self._base(), "print_format": "json"}

    def expression(self, measurement: dict | None) -> FilterExpression:
        if not measurement or not _finite(measurement.get("input_i")):
            # digital silence has no loudness: leave the level alone
            return "anull", {}
        return "loudnorm", {
            **self._base(),
            "measured_I": measurement["input_i"],
            "measured_TP": measurement["input_tp"],
            "measured_LRA": measurement["input_lra"],
            "measured_thresh": measurement["input_thresh"],
            "offset": measurement["target_offset"],
            "linear": "true",
        }


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class Normalize(FilterStage):
    name = "normalize"
    Options = NormalizeOptions

    def filters(self, job: Job) -> list[AudioFilter]:
        return [LoudnormFilter(self.options)]
