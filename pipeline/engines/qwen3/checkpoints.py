"""Qwen3-ASR checkpoints: known names, where they live, pulling one, and the transformers check.

Checkpoints are always loaded from local directories: either a path, or a known name
pulled once into ``cache_dir()/models`` with ``hushdrop models pull NAME``
(:func:`pull_model`, the only place hushdrop reaches the network for Qwen3-ASR).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from hushdrop.pipeline.engines.qwen3.options import ENGINE_NAME
from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.models import ModelStatus, cache_dir

MIN_TRANSFORMERS = "5.13"
ASR_CHECKPOINTS = ("Qwen/Qwen3-ASR-0.6B-hf", "Qwen/Qwen3-ASR-1.7B-hf")
ALIGNER_CHECKPOINTS = ("Qwen/Qwen3-ForcedAligner-0.6B-hf",)
ALIASES = {
    "qwen3-asr-0.6b": "Qwen/Qwen3-ASR-0.6B-hf",
    "qwen3-asr-1.7b": "Qwen/Qwen3-ASR-1.7B-hf",
    "qwen3-forcedaligner-0.6b": "Qwen/Qwen3-ForcedAligner-0.6B-hf",
    "qwen3-aligner-0.6b": "Qwen/Qwen3-ForcedAligner-0.6B-hf",
}

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_NOT_READY_HINT = "run `hushdrop models pull {name}` or set model: /path"


def canonical_name(name: str) -> str | None:
    """The hub name for a known checkpoint name or alias, else None."""
    lowered = name.strip().lower()
    for known in (*ASR_CHECKPOINTS, *ALIGNER_CHECKPOINTS):
        if lowered == known.lower():
            return known
    return ALIASES.get(lowered)


def checkpoint_dir(name: str) -> Path:
    """Where ``hushdrop models pull`` puts a known checkpoint."""
    return cache_dir() / "models" / name


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
    """A loadable local directory for ``model`` (a known name or a path), or ModelError."""
    known = canonical_name(model)
    path = checkpoint_dir(known) if known else Path(model).expanduser()
    if is_loadable(path):
        return path
    what = "is not a complete checkpoint (needs config.json and *.safetensors)" if path.is_dir() else "does not exist"
    pull_name = known or (ALIGNER_CHECKPOINTS[0] if role == "aligner" else ASR_CHECKPOINTS[0])
    raise ModelError(
        f"qwen3-asr {role} {model!r}: {path} {what}. Get a checkpoint one of two ways: "
        f"(1) on a machine with network access run `hushdrop models pull {pull_name}`, or "
        f"(2) copy a downloaded checkpoint directory (e.g. of {pull_name}) to this machine and set "
        f"`{role}: /path/to/that/directory`. hushdrop never downloads models while transcribing."
    )


def model_statuses() -> list[ModelStatus]:
    """Whether each known Qwen3-ASR checkpoint is in the cache and loadable."""
    statuses = []
    for name in (*ASR_CHECKPOINTS, *ALIGNER_CHECKPOINTS):
        path = checkpoint_dir(name)
        if is_loadable(path):
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            statuses.append(ModelStatus(ENGINE_NAME, name, True, str(path), f"pulled, {size / 1e9:.2f} GB", optional=True))
        else:
            statuses.append(ModelStatus(ENGINE_NAME, name, False, "-", _NOT_READY_HINT.format(name=name), optional=True))
    return statuses


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def pull_model(name: str) -> Path:
    """Download a known checkpoint once into ``cache_dir()/models/<name>`` and return its path.

    It downloads into a sibling staging directory (resumable) and renames it into place
    when complete, so a loader never finds half a checkpoint.
    """
    known = canonical_name(name)
    if known is None:
        choices = ", ".join([*ASR_CHECKPOINTS, *ALIGNER_CHECKPOINTS, *ALIASES])
        raise ModelError(f"unknown qwen3-asr checkpoint {name!r}; choose one of: {choices}")
    dest = checkpoint_dir(known)
    if is_loadable(dest):
        return dest
    manual = (
        f"On a machine with network access run `hushdrop models pull {known}` (or "
        f"`huggingface-cli download {known} --local-dir DIR`), copy the directory here and set "
        f"`model: /path/to/DIR` in the profile, or place it at {dest}."
    )
    if _offline():
        raise ModelError(f"cannot pull {known}: HF_HUB_OFFLINE is set, so no download is attempted. {manual}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelError(f"cannot pull {known}: huggingface_hub is not installed ({exc}). {manual}") from exc
    staging = dest.parent / f".{dest.name}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        snapshot_download(repo_id=known, local_dir=str(staging))
    except Exception as exc:  # connection, auth, disk: all end the same way for the user
        raise ModelError(f"could not download {known}: {type(exc).__name__}: {exc}. {manual}") from exc
    if not is_loadable(staging):
        raise ModelError(f"download of {known} into {staging} is incomplete (no config.json or weights). {manual}")
    shutil.rmtree(staging / ".cache", ignore_errors=True)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(staging, dest)
    return dest


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
