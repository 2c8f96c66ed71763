"""Qwen3-ASR checkpoints: resolving a name or a path to a local directory, and the transformers check.

Checkpoints are always loaded from local directories: either a path, or a catalogue name
(``pipeline/engines/catalogue.py``) pulled and verified once with ``hushdrop models pull NAME``
(``pipeline/engines/hub.py``, the only place hushdrop reaches the network).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hushdrop.pipeline.engines import catalogue, hub
from hushdrop.pipeline.engines.qwen3.options import ENGINE_NAME
from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.models import ModelStatus

MIN_TRANSFORMERS = "5.13"

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def is_loadable(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        any(path.glob(pattern)) for pattern in _WEIGHT_PATTERNS
    )


def fingerprint(path: Path) -> str:
    """A cheap identity for a checkpoint: its config plus weight file names and sizes."""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for pattern in _WEIGHT_PATTERNS:
        for f in sorted(path.glob(pattern)):
            digest.update(f"{f.name}:{f.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def resolve_checkpoint(model: str, role: str = "model") -> Path:
    """A loadable local directory for ``model`` (a catalogue name, or a path), or ModelError."""
    cat = catalogue.current()
    entry = cat.find(model, ENGINE_NAME)
    if entry is not None:
        return hub.installed(entry, cat)
    path = Path(model).expanduser()
    if is_loadable(path):
        return path
    what = "is not a complete checkpoint (needs config.json and *.safetensors)" if path.is_dir() else "does not exist"
    suggestion = next(e.name for e in cat.of_engine(ENGINE_NAME) if e.role == ("aligner" if role == "aligner" else "asr"))
    raise ModelError(
        f"qwen3-asr {role} {model!r}: {path} {what}. Get a checkpoint one of two ways: "
        f"(1) run `hushdrop models pull {suggestion}` and set `{role}: {suggestion}`, or "
        f"(2) copy a downloaded checkpoint directory to this machine and set "
        f"`{role}: /path/to/that/directory`. hushdrop never downloads models while transcribing."
    )


def model_statuses() -> list[ModelStatus]:
    """Whether each catalogue Qwen3-ASR checkpoint is pulled here."""
    return hub.catalogue_statuses(ENGINE_NAME)


def worker_memory(name: str) -> int:
    """Bytes one CPU worker holds with checkpoint ``name``: its catalogue figure, else the 0.6B's."""
    cat = catalogue.current()
    entry = cat.find(name, ENGINE_NAME)
    if entry is None or not entry.memory_int8:
        entry = cat.find("qwen3-asr-0.6b", ENGINE_NAME)
    assert entry is not None
    return entry.memory_int8


def check_transformers() -> str:
    """The installed transformers version, or ModelError if it cannot run Qwen3-ASR."""
    upgrade = f'upgrade it: pip install "transformers>={MIN_TRANSFORMERS}"'
    try:
        import transformers
        from packaging.version import InvalidVersion, Version
    except ImportError as exc:
        raise ModelError(f"the qwen3-asr engine needs transformers>={MIN_TRANSFORMERS} and torch ({exc})") from exc
    version = str(transformers.__version__)
    try:
        too_old = Version(version) < Version(MIN_TRANSFORMERS)
    except InvalidVersion:
        too_old = False  # a dev build; the import below is the real test
    if too_old:
        raise ModelError(f"the qwen3-asr engine needs transformers>={MIN_TRANSFORMERS}, found {version}; {upgrade}")
    try:
        from transformers import (  # noqa: F401
            Qwen3ASRForConditionalGeneration,
            Qwen3ASRForTokenClassification,
            Qwen3ASRProcessor,
        )
    except ImportError as exc:
        raise ModelError(f"transformers {version} has no Qwen3-ASR classes ({exc}); {upgrade}") from exc
    return version
