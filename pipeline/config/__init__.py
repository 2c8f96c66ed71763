"""config.yaml: global settings and profiles, validated when loaded.

``schema`` says what the file may hold (pydantic models that reject unknown keys);
``load`` reads it, applies inheritance from the ``default`` profile and resolves
relative paths, reporting every problem at once with its place. Import from here:
``from hushdrop.pipeline.config import Settings, load_config``.
"""

from hushdrop.pipeline.config.load import (
    folder_overlaps,
    load_config,
    parse_config,
    profile_document,
    profile_from_document,
)
from hushdrop.pipeline.config.schema import (
    AUDIO_EXTENSIONS,
    DEFAULT_PROFILE,
    MAX_WORKERS,
    OUTPUT_FORMATS,
    OriginalsPolicy,
    Profile,
    Settings,
    StageSpec,
    TimeLimits,
    WebSettings,
    known_languages,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_PROFILE",
    "MAX_WORKERS",
    "OUTPUT_FORMATS",
    "OriginalsPolicy",
    "Profile",
    "Settings",
    "StageSpec",
    "TimeLimits",
    "WebSettings",
    "folder_overlaps",
    "known_languages",
    "load_config",
    "parse_config",
    "profile_document",
    "profile_from_document",
]
