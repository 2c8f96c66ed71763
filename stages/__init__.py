"""The stages a profile's chain can name, one module each; list order in YAML is run order."""

from __future__ import annotations

from stages.base import FilterStage, Stage, StageOptions
from stages.dehum import Dehum
from stages.denoise import Denoise
from stages.grammar import Grammar
from stages.highpass import Highpass
from stages.normalize import Normalize
from stages.resample import Resample
from stages.tag import Tag
from stages.transcribe import Transcribe

REGISTRY: dict[str, type[Stage]] = {
    stage.name: stage for stage in (Normalize, Highpass, Dehum, Denoise, Resample, Transcribe, Grammar, Tag)
}

# Denoising at 16 kHz costs a third of doing it at 48 kHz and the engine hears
# nothing above 8 kHz anyway, so the default chain resamples first. `highpass` is not in
# it: Whisper hears through rumble, and the filter changed its words on clean speech
# (docs/benchmarks.md); `dehum` removes mains hum, fundamental included, where there is some.
DEFAULT_CHAIN = ("normalize", "resample", "dehum", "denoise", "transcribe", "grammar", "tag")

__all__ = ["REGISTRY", "DEFAULT_CHAIN", "Stage", "FilterStage", "StageOptions"]
