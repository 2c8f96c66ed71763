"""The ``qwen3-asr`` engine: Qwen3-ASR on transformers' native classes, and its registry entry.

- ``options``: its ``engine_options`` (a pydantic model, checked at config load);
- ``checkpoints``: resolving a catalogue name or a path to a local directory, memory per
  worker, the transformers version check;
- ``text``: language names, the model's output format, sentences and estimated times;
- ``engine``: :class:`Qwen3AsrEngine`, which decodes windows in batches.

Importing the package loads neither torch nor transformers.
"""

from __future__ import annotations

from hushdrop.pipeline.engines.base import EngineEntry
from hushdrop.pipeline.engines import catalogue
from hushdrop.pipeline.engines.qwen3.checkpoints import model_statuses, resolve_checkpoint, worker_memory
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

ENTRY = EngineEntry(
    name=ENGINE_NAME,
    Options=Qwen3Options,
    languages=frozenset(LANGUAGES),
    load=Qwen3AsrEngine,
    model_statuses=model_statuses,
    is_catalogue_model=lambda name: catalogue.current().find(name, ENGINE_NAME) is not None,
    worker_memory=worker_memory,
    can_translate=False,  # it writes what is said, in the language said
)

__all__ = [
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
    "resolve_checkpoint",
    "split_sentences",
]
