"""ASR engines: the registry, and each process's loaded engines (one per spec, reused for every job).

``ENGINES`` maps an engine's name to its :class:`EngineEntry`: its ``engine_options``
model, its languages, how to load it and which models it has. Adding an engine means
adding its entry here; the config loader, the ``transcribe`` stage and ``hushdrop
models`` ask the entry and never name an engine themselves. Models known by name are in
``catalogue`` (one table for every engine); ``hub`` pulls and verifies them.
"""

from __future__ import annotations

import threading
from hushdrop.pipeline.engines import qwen3, whisper
from hushdrop.pipeline.engines.base import SAMPLE_RATE, DecodeRequest, Engine, EngineEntry, EngineSpec
from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.models import ModelStatus

# the contract (pipeline/engines/base.py) is imported from there; these are what a caller needs
__all__ = [
    "SAMPLE_RATE",
    "DecodeRequest",
    "Engine",
    "EngineSpec",
    "ENGINES",
    "ENGINE_NAMES",
    "engine_for",
    "list_models",
    "load_engine",
]

ENGINES: dict[str, EngineEntry] = {entry.name: entry for entry in (whisper.ENTRY, qwen3.ENTRY)}
ENGINE_NAMES = tuple(ENGINES)

_cache: dict[EngineSpec, Engine] = {}
_lock = threading.Lock()


def engine_for(name: str) -> EngineEntry:
    """The registry entry of engine ``name``, or ModelError naming the engines there are."""
    entry = ENGINES.get(name)
    if entry is None:
        raise ModelError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINE_NAMES)}")
    return entry


def load_engine(spec: EngineSpec) -> Engine:
    """Return this process's engine for ``spec``, loading it on first use only."""
    with _lock:
        engine = _cache.get(spec)
        if engine is None:
            engine = engine_for(spec.engine).load(spec)
            _cache[spec] = engine
        return engine


def list_models() -> list[ModelStatus]:
    """Every model hushdrop knows of, and whether it can be used right now: each engine's
    registry entry lists its own (`hushdrop models`, `hushdrop doctor`)."""
    return [status for entry in ENGINES.values() for status in entry.model_statuses()]
