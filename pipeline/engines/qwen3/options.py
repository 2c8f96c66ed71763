"""qwen3-asr's ``engine_options``: its decoding settings, checked when config.yaml is loaded."""

from __future__ import annotations

import math

from pydantic import Field

from hushdrop.pipeline.engines.base import EngineOptions

ENGINE_NAME = "qwen3-asr"
MAX_WINDOW_S = 1200.0  # the model's per-call limit
ALIGNER_MAX_S = 300.0  # the forced aligner's per-call limit


class Qwen3Options(EngineOptions):
    """Decoding settings; any of them can be overridden per job via ``DecodeRequest.options``."""

    engine = ENGINE_NAME

    batch_size: int = Field(8, ge=1, description="pieces decoded together in one model call")
    chunk_length_s: float = Field(MAX_WINDOW_S, gt=0, le=MAX_WINDOW_S, description="longest audio per model call")
    # the generation budget: fast speech is about 3-5 tokens a second, this leaves headroom
    tokens_per_second: float = Field(6.0, gt=0)
    token_margin: int = Field(32, ge=0)
    max_new_tokens_cap: int = Field(8192, ge=1)
    repetition_penalty: float = Field(1.15, ge=1.0, description="only for the re-decode of a looping window")
    no_repeat_ngram_size: int = Field(10, ge=0, description="only for the re-decode of a looping window")
    context: str = Field("", description="free text put before the glossary terms in the prompt")

    def max_new_tokens(self, seconds: float) -> int:
        """The token budget for ``seconds`` of audio: a window that uses it all up is a runaway."""
        return max(1, min(self.max_new_tokens_cap, math.ceil(self.tokens_per_second * seconds) + self.token_margin))
