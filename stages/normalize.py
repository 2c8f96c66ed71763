"""normalize: raises a too-quiet recording to a loudness target: measure (ffmpeg ebur128), then one gain.

Only recordings quieter than ``raise_below_lufs`` are touched. Whisper gives the same
words for the same speech over a wide range of levels (its features are scaled to each
window's loudest frame), so a gain on a normally-levelled recording buys nothing and,
because beam search can flip a word on the smallest change of input, can cost
something; far below that range its features hit their fixed floor and it loses words.
That is what this stage is for (figures: docs/benchmarks.md).

The measurement is an analysis pass that only reads (on the mono mix the engine will
hear); the gain is fused into the one render with the other filter stages. The audio
stays float32 from there to the engine, so a peak pushed above 0 dBFS is not clipped
and no limiter is needed (a limiter would also pull the loudness below the target).
``ebur128`` measures integrated loudness (BS.1770) without ``loudnorm``'s 192 kHz
true-peak analysis, which this stage has no use for.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pydantic import Field

from hushdrop.pipeline.audio import AudioFilter, Expressions
from hushdrop.pipeline.errors import EnvironmentFault
from hushdrop.pipeline.job import Job
from hushdrop.stages.base import FilterStage, StageOptions


class NormalizeOptions(StageOptions):
    target_lufs: float = Field(-23.0, ge=-70.0, le=-5.0, description="integrated loudness a quiet recording is raised to")
    raise_below_lufs: float = Field(
        -50.0, ge=-70.0, le=0.0, description="recordings at least this loud are left as they are (0: normalise everything)"
    )


_ABSOLUTE_GATE = -70.0  # LUFS
_INTEGRATED = re.compile(r"Integrated loudness:\s*I:\s*(-?[\d.]+|-?inf|nan)\s*LUFS", re.S | re.I)
_PEAK = re.compile(r"Sample peak:\s*Peak:\s*(-?[\d.]+|-?inf|nan)\s*dBFS", re.S | re.I)


@dataclass
class LoudnessFilter:
    options: NormalizeOptions

    def analysis_expression(self) -> Expressions:
        # framelog=verbose keeps the per-frame lines out of the info log the summary is read from;
        # ffmpeg before 6.1 has no framelog=quiet
        return [("aformat", {"channel_layouts": "mono"}), ("ebur128", {"framelog": "verbose", "peak": "sample"})]

    @staticmethod
    def parse_measurement(stderr: str) -> dict:
        """The last summary ebur128 printed: some ffmpeg versions also print an empty one
        (-70 LUFS) for a filter instance dropped when the graph is configured again."""
        integrated, peak = _INTEGRATED.findall(stderr), _PEAK.findall(stderr)
        if not integrated:
            raise EnvironmentFault(
                "normalize",
                "ffmpeg did not report a loudness measurement (its ebur128 filter printed no summary); "
                "set `ffmpeg: bundled` in config.yaml to use the ffmpeg hushdrop ships and is tested with",
            )
        return {"input_i": float(integrated[-1]), "input_peak": float(peak[-1]) if peak else float("nan")}

    def expression(self, measurement: dict | None) -> Expressions:
        loudness = (measurement or {}).get("input_i", float("nan"))
        if not math.isfinite(loudness) or loudness <= _ABSOLUTE_GATE:
            # silence (nothing above BS.1770's -70 LUFS gate) has no loudness: leave the level alone
            return "anull", {}
        if loudness >= self.options.raise_below_lufs:
            return "anull", {}  # loud enough for the engine: a gain would only perturb it
        gain = self.options.target_lufs - loudness
        return "volume", {"volume": f"{gain:.2f}dB", "precision": "float"}


class Normalize(FilterStage):
    name = "normalize"
    Options = NormalizeOptions

    def filters(self, job: Job) -> list[AudioFilter]:
        return [LoudnessFilter(self.options)]
