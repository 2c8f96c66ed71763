"""ASR engines, loaded once per worker process and reused for every job."""

from __future__ import annotations

import threading
from typing import Callable

from hushdrop.pipeline.engines.base import (
    SAMPLE_RATE,
    DecodeRequest,
    Engine,
    EngineCapabilities,
    EngineResult,
    EngineSpec,
)
from hushdrop.pipeline.errors import ModelError

__all__ = [
    "SAMPLE_RATE",
    "DecodeRequest",
    "Engine",
    "EngineCapabilities",
    "EngineResult",
    "EngineSpec",
    "ENGINE_NAMES",
    "load_engine",
    "loaded_engines",
]


def _load_whisper(spec: EngineSpec) -> Engine:
    from hushdrop.pipeline.engines.whisper import WhisperEngine

    return WhisperEngine(spec)


def _load_qwen3(spec: EngineSpec) -> Engine:
    from hushdrop.pipeline.engines.qwen3 import Qwen3AsrEngine

    return Qwen3AsrEngine(spec)


_LOADERS: dict[str, Callable[[EngineSpec], Engine]] = {
    "whisper": _load_whisper,
    "qwen3-asr": _load_qwen3,
}
ENGINE_NAMES = tuple(_LOADERS)

_cache: dict[EngineSpec, Engine] = {}
_lock = threading.Lock()


def load_engine(spec: EngineSpec) -> Engine:
    """Return this process's engine for ``spec``, loading it on first use only."""
    with _lock:
        engine = _cache.get(spec)
        if engine is None:
            loader = _LOADERS.get(spec.engine)
            if loader is None:
                raise ModelError(
                    f"unknown engine {spec.engine!r}; choose one of: {', '.join(ENGINE_NAMES)}"
                )
            engine = loader(spec)
            _cache[spec] = engine
        return engine


def loaded_engines() -> list[Engine]:
    with _lock:
        return list(_cache.values())
