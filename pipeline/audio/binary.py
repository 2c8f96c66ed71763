"""Which ffmpeg binary renders, and what to tell a user whose binary fails.

One known binary renders: by default the one pinned in the imageio-ffmpeg wheel, which the
tests run against. The ``ffmpeg`` setting opts into the system's or another one;
``pipeline.ffmpeg_check`` says whether it can run the chain.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path

from hushdrop.pipeline.errors import DECODE_STAGE, EnvironmentFault


@lru_cache(maxsize=1)
def bundled_ffmpeg() -> str:
    """The ffmpeg binary shipped inside the imageio-ffmpeg wheel.

    Looked up in the wheel itself, so imageio's own ``IMAGEIO_FFMPEG_EXE`` cannot
    quietly swap in another binary; imageio's public lookup is the fallback.
    """
    import imageio_ffmpeg

    try:
        from imageio_ffmpeg._definitions import FNAME_PER_PLATFORM, get_platform
        from imageio_ffmpeg._utils import _get_bin_dir

        exe = os.path.join(_get_bin_dir(), FNAME_PER_PLATFORM.get(get_platform(), ""))
        if os.path.isfile(exe):
            return exe
    except (ImportError, AttributeError, OSError):
        pass
    return imageio_ffmpeg.get_ffmpeg_exe()


def resolve_ffmpeg(choice: str = "bundled", base: Path | None = None) -> str:
    """The ffmpeg binary that the ``ffmpeg`` setting names: ``bundled``, ``system`` or a path.

    A relative path is taken from ``base`` (the folder of config.yaml). The
    ``HUSHDROP_FFMPEG`` environment variable overrides the setting, so the tests can
    run the stages against every ffmpeg present.
    """
    override = os.environ.get("HUSHDROP_FFMPEG")
    if override:
        return override
    if choice == "bundled":
        return bundled_ffmpeg()
    if choice == "system":
        found = shutil.which("ffmpeg")
        if found is None:
            raise EnvironmentFault(
                DECODE_STAGE,
                "config.yaml says `ffmpeg: system`, but there is no ffmpeg on PATH; install one or set `ffmpeg: bundled`",
            )
        return found
    path = Path(choice).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return str(path)


def ffmpeg_exe() -> str:
    """The ffmpeg used where no setting is at hand: ``HUSHDROP_FFMPEG``, else the bundled one."""
    return resolve_ffmpeg("bundled")


def fix_hint(exe: str) -> str:
    """What to do when the ffmpeg at ``exe`` cannot run hushdrop's chain."""
    try:
        bundled = os.path.samefile(exe, bundled_ffmpeg())
    except OSError:
        bundled = False
    if bundled:
        return "reinstall the ffmpeg hushdrop ships with (pip install --force-reinstall imageio-ffmpeg)"
    return "set `ffmpeg: bundled` in config.yaml to use the ffmpeg hushdrop ships and is tested with"


__all__ = ["bundled_ffmpeg", "ffmpeg_exe", "fix_hint", "resolve_ffmpeg"]
