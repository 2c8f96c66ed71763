"""The ``qwen3-asr`` engine: Qwen3-ASR on transformers' native classes, and its registry entry.

- ``options``: its ``engine_options`` (a pydantic model, checked at config load);
- ``checkpoints``: known checkpoint names, resolving one to a local directory, pulling
  one (``hushdrop models pull``), the transformers version check;
- ``text``: language names, the model's output format, sentences and estimated times;
- ``engine``: :class:`Qwen3AsrEngine`, which decodes windows in batches.

Importing the package loads neither torch nor transformers.
"""

from __future__ import annotations

from hushdrop.pipeline.engines.base import EngineEntry
from hushdrop.pipeline.engines.qwen3.checkpoints import (
    ALIASES,
    ALIGNER_CHECKPOINTS,
    ASR_CHECKPOINTS,
    canonical_name,
    model_statuses,
    pull_model,
    resolve_checkpoint,
)
from hushdrop.pipeline.engines.qwen3.engine import DecodeItem, Qwen3AsrEngine
from hushdrop.pipeline.engines.qwen3.options import ENGINE_NAME, MAX_WINDOW_S, Qwen3Options
from hushdrop.pipeline.engines.qwen3.text import (
    LANGUAGES,
    interpolate_segments,
    language_code,
    language_name,
    parse_output,
    split_sentences,
)

# One worker's peak memory with the 0.6B checkpoint in fp32, from the qwen3 CPU table in
# docs/benchmarks.md; every checkpoint is counted at that figure.
WORKER_BYTES = 4 * 10**9


ENTRY = EngineEntry(
    name=ENGINE_NAME,
    Options=Qwen3Options,
    languages=frozenset(LANGUAGES),
    load=Qwen3AsrEngine,
    model_statuses=model_statuses,
    is_catalogue_model=lambda name: canonical_name(name) is not None,
    worker_memory=lambda name: WORKER_BYTES,
    pull=pull_model,
)

__all__ = [
    "ALIASES",
    "ALIGNER_CHECKPOINTS",
    "ASR_CHECKPOINTS",
    "DecodeItem",
    "ENTRY",
    "LANGUAGES",
    "MAX_WINDOW_S",
    "Qwen3AsrEngine",
    "Qwen3Options",
    "interpolate_segments",
    "language_code",
    "language_name",
    "parse_output",
    "pull_model",
    "resolve_checkpoint",
    "split_sentences",
]
