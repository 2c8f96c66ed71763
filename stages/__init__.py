"""The stages a profile's chain can name, one module each; list order in YAML is run order."""

from __future__ import annotations

if __name__ != "hushdrop.stages":  # imported as a bare top-level `stages`: a second copy of every module
    raise ImportError(f"hushdrop's stages package is imported as hushdrop.stages, not as {__name__!r}")


from hushdrop.stages.base import FilterStage, Stage, StageOptions
from hushdrop.stages.dehum import Dehum
from hushdrop.stages.denoise import Denoise
from hushdrop.stages.grammar import Grammar
from hushdrop.stages.highpass import Highpass
from hushdrop.stages.normalize import Normalize
from hushdrop.stages.resample import Resample
from hushdrop.stages.tag import Tag
from hushdrop.stages.transcribe import Transcribe

REGISTRY: dict[str, type[Stage]] = {
    stage.name: stage for stage in (Normalize, Highpass, Dehum, Denoise, Resample, Transcribe, Grammar, Tag)
}

# The default chain resamples to the engine's 16 kHz before the stages that work on samples:
# the engine hears nothing above 8 kHz, and dehum and denoise then look at a third of the
# samples of a 48 kHz recording. `highpass` is not in it: Whisper hears through rumble, and
# the filter changed its words on clean speech (docs/benchmarks.md); `dehum` removes mains
# hum, fundamental included, where there is some.
DEFAULT_CHAIN = ("normalize", "resample", "dehum", "denoise", "transcribe", "grammar", "tag")

__all__ = ["REGISTRY", "DEFAULT_CHAIN", "Stage", "FilterStage", "StageOptions"]
