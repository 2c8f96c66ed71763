"""Reading config.yaml into :class:`Settings`, every problem reported at once with its place.

The place is the file, the profile, the stage and the field
(``config.yaml: profiles.meetings.chain[3] (denoise).mode: …``), so a bad config is
rejected before any job starts, never halfway through one.

A profile that is not ``default`` inherits every key it does not set from ``default``;
a problem in an inherited key is reported once, under ``default``. Relative paths are
resolved against the config file's folder, so a copied config works in its new place.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hushdrop.pipeline.config.schema import DEFAULT_PROFILE, Profile, Settings, StageSpec
from hushdrop.pipeline.engines import catalogue
from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.text import option_error_text
from hushdrop.stages import DEFAULT_CHAIN, REGISTRY


def folder_overlaps(settings: Settings) -> list[str]:
    """The inbox, outbox, workdir, spool and move targets must not contain one another:
    hushdrop takes every file in the inbox and removes its own temp files in the others."""
    named = [("inbox", settings.inbox), ("outbox", settings.outbox), ("workdir", settings.workdir)]
    if settings.spool is not None:
        named.append(("spool", settings.spool))
    for profile in settings.profiles.values():
        if profile.originals.move_to is not None:
            named.append((f"profiles.{profile.name}.originals.move", profile.originals.move_to))
    problems = []
    for i, (a_key, a_named) in enumerate(named):
        for b_key, b_named in named[i + 1:]:
            # as written, and as the filesystem resolves them (a link to the inbox is the inbox)
            for a, b in ((a_named, b_named), (Path(os.path.realpath(a_named)), Path(os.path.realpath(b_named)))):
                if a_key == "workdir" and b_key != "inbox" and b_key != "outbox" and b.is_relative_to(a) and a != b:
                    continue  # the spool and a move target may live inside the workdir (the defaults do)
                if a == b or a.is_relative_to(b) or b.is_relative_to(a):
                    problems.append(f"{a_key} ({a_named}) and {b_key} ({b_named}) overlap: give each its own folder")
                    break
    return problems


def profile_document(profile: Profile) -> dict[str, Any]:
    """A profile as plain JSON data (what a remote worker needs to rebuild it exactly)."""
    document = profile.model_dump(mode="json", exclude={"chain"})
    document["chain"] = [{spec.name: spec.as_dict()["options"]} for spec in profile.chain]
    return document


def profile_from_document(document: dict[str, Any]) -> Profile:
    """The profile :func:`profile_document` described; a ConfigError says what does not fit."""
    problems: list[str] = []
    where = f"profiles.{document.get('name', '?')}"
    chain = _parse_chain(document.get("chain"), f"{where}.chain", problems)
    if problems:
        raise ConfigError("the task's profile", problems)
    try:
        return Profile.model_validate({**document, "chain": chain})
    except ValidationError as exc:
        raise ConfigError("the task's profile", [f"{where}: {exc}"]) from None


def _parse_chain(entries: Any, where: str, problems: list[str]) -> list[StageSpec]:
    if not isinstance(entries, list) or not entries:
        problems.append(f"{where}: must be a list of stage names, e.g. [normalize, resample, transcribe]")
        return []
    specs: list[StageSpec] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            name, raw = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, raw = next(iter(entry.items()))
            raw = raw or {}
        else:
            problems.append(f"{where}[{i}]: write a stage as `name` or `name: {{option: value}}`")
            continue
        stage = REGISTRY.get(name)
        if stage is None:
            problems.append(f"{where}[{i}]: unknown stage {name!r}; stages: {', '.join(REGISTRY)}")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where}[{i}] ({name}): options must be a mapping, got {raw!r}")
            continue
        try:
            specs.append(StageSpec(name=name, options=stage.Options.model_validate(raw)))
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "options"
                problems.append(f"{where}[{i}] ({name}).{field}: {option_error_text(err, stage.Options)}")
    return specs


def _resolve(base: Path, value: Any) -> Path:
    """An absolute, normalised path; symbolic links are kept as written, so that `watch` can
    refuse an inbox reached through one instead of silently following it."""
    path = Path(str(value)).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else base / path))


def parse_config(raw: Any, source: Path) -> Settings:
    """Validate an already-loaded YAML document; ``source`` is used for paths and messages."""
    where = str(source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(where, ["the file must be a mapping of settings (inbox:, outbox:, profiles: …)"])
    raw = copy.deepcopy(raw)
    problems: list[str] = []
    raw_profiles = raw.pop("profiles", None) or {}
    if not isinstance(raw_profiles, dict):
        raise ConfigError(where, ["profiles: must be a mapping of profile name to settings"])
    base_profile = raw_profiles.get(DEFAULT_PROFILE) or {}
    if not isinstance(base_profile, dict):
        base_profile = {}
    profiles: dict[str, Profile] = {}
    for name in [DEFAULT_PROFILE, *[n for n in raw_profiles if n != DEFAULT_PROFILE]]:
        own = raw_profiles.get(name) or {}
        if not isinstance(own, dict):
            problems.append(f"profiles.{name}: must be a mapping of settings")
            continue
        merged = {**{k: v for k, v in base_profile.items() if k != "folder"}, **own}
        merged.setdefault("folder", "" if name == DEFAULT_PROFILE else name)
        inherited = name != DEFAULT_PROFILE and set(merged) - set(own) - {"folder"}
        # a problem in an inherited key is reported once, under `default`, not again here
        chain_problems: list[str] = []
        chain = _parse_chain(merged.pop("chain", list(DEFAULT_CHAIN)), f"profiles.{name}.chain", chain_problems)
        if not (inherited and "chain" in inherited):
            problems += chain_problems
        try:
            profile = Profile.model_validate({**merged, "name": name, "chain": chain})
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                top = str(err["loc"][0]) if err["loc"] else ""
                if top == "chain" and chain_problems:
                    continue  # a stage's own error was reported; the chain's shape follows from it
                if inherited and top in inherited:
                    continue
                problems.append(f"profiles.{name}{'.' + loc if loc else ''}: {option_error_text(err, Profile)}")
            continue
        if profile.originals.move_to is not None:
            profile.originals.move_to = _resolve(source.parent, profile.originals.move_to)
        profiles[name] = profile
    folders: dict[str, str] = {}
    for profile in profiles.values():
        if profile.folder in folders:
            problems.append(
                f"profiles.{profile.name}.folder: {profile.folder!r} is already the folder of "
                f"profile {folders[profile.folder]!r}"
            )
        folders[profile.folder] = profile.name
    settings = None
    try:
        base = source.parent
        for key in ("inbox", "outbox", "workdir"):
            if key in raw:
                raw[key] = _resolve(base, raw[key])
            else:
                raw[key] = _resolve(base, Settings.model_fields[key].default)
        if raw.get("spool"):
            raw["spool"] = _resolve(base, raw["spool"])
        settings = Settings.model_validate({**raw, "source": source, "profiles": profiles or {}})
        problems += folder_overlaps(settings)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            problems.append(f"{loc}: {option_error_text(err, Settings)}")
    if problems:
        raise ConfigError(where, problems)
    assert settings is not None
    catalogue.use(catalogue.for_settings(settings))  # model names now mean this config's models
    return settings


def load_config(path: str | Path) -> Settings:
    source = Path(path).expanduser().resolve()
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(source), ["file not found; create it or pass --config PATH"]) from None
    except OSError as exc:
        raise ConfigError(str(source), [f"cannot read it: {exc.strerror}"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(source), [f"{place}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    return parse_config(raw, source)
