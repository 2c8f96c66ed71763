"""Which ffmpeg hushdrop runs, and whether it can run the chain's filters.

hushdrop renders with one known binary: the one pinned in the imageio-ffmpeg
wheel, unless the ``ffmpeg`` setting names the system's or another. A distro's
ffmpeg can be older and lack a filter or an option the stages use, and then every
recording would fail in the same way. ``check_ffmpeg`` finds that out before any
recording is touched (``watch`` start, ``doctor``): it checks that the binary has
the demuxer of every container hushdrop reads (each recording is read with its
container's demuxer forced), runs each filter the filter stages produce, exactly
as they produce it, on a generated tone, and then one whole render of a real file
through the same code a job uses.

- ``check_ffmpeg(path) -> list[str]``: what is wrong, each with how to fix it; empty
  when the binary can run the chain.
- ``describe_ffmpeg(choice, base) -> FfmpegInfo``: the path, its version and where the
  choice came from, for ``hushdrop doctor``.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hushdrop.pipeline.audio.binary import bundled_ffmpeg, fix_hint, resolve_ffmpeg
from hushdrop.pipeline.audio.containers import ALLOWED
from hushdrop.pipeline.audio.failures import chain_problem, meaningful_line
from hushdrop.pipeline.audio.filters import FilterExpression, as_list, describe_filter
from hushdrop.pipeline.audio.working import Audio
from hushdrop.pipeline.errors import StageError

# The oldest release line the filter chain is written for (Ubuntu 22.04 ships 4.4).
MIN_VERSION = (4, 4)
_VERSION = re.compile(r"^ffmpeg version (\S+)", re.M)
_TIMEOUT = 60.0


@dataclass(frozen=True)
class FfmpegInfo:
    path: str
    version: str  # as the binary reports it; "" when it would not say
    origin: str  # how it was chosen: "HUSHDROP_FFMPEG", "bundled", "system" or "configured path"


def describe_ffmpeg(choice: str = "bundled", base: Path | None = None) -> FfmpegInfo:
    """The ffmpeg the ``ffmpeg`` setting ``choice`` selects: its path, version and origin."""
    if os.environ.get("HUSHDROP_FFMPEG"):
        origin = "HUSHDROP_FFMPEG"
    else:
        origin = choice if choice in ("bundled", "system") else "configured path"
    path = resolve_ffmpeg(choice, base)
    version, _ = ffmpeg_version(path)
    return FfmpegInfo(path=path, version=version, origin=origin)


def ffmpeg_version(path: str) -> tuple[str, str | None]:
    """(version, None), or ("", why it could not be read)."""
    try:
        proc = subprocess.run(
            [path, "-hide_banner", "-version"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return "", f"`{path} -version` did not answer in {_TIMEOUT:g} s"
    except OSError as exc:
        return "", exc.strerror or str(exc)
    found = _VERSION.search(proc.stdout)
    if proc.returncode != 0 or not found:
        said = meaningful_line(proc.stderr or proc.stdout)
        return "", f"`{path} -version` failed ({said})"
    return found.group(1), None


def version_numbers(version: str) -> tuple[int, ...] | None:
    """(major, minor) of a release (``5.1.9-0+deb12u1``, ``n7.1``); None for a git build (``N-112233-g…``)."""
    found = re.match(r"n?(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else None


def _listing(path: str, flag: str) -> str | None:
    """What ``ffmpeg -hide_banner FLAG`` prints (``-filters``, ``-demuxers``), or None if it would not say."""
    try:
        proc = subprocess.run(
            [path, "-hide_banner", flag],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _filter_names(path: str) -> set[str] | None:
    listing = _listing(path, "-filters")
    if listing is None:
        return None
    # " ... ebur128           A->N       EBU R128 scanner."
    return {parts[1] for line in listing.splitlines() if len(parts := line.split()) >= 3 and "->" in parts[2]}


def _demuxer_names(path: str) -> set[str] | None:
    """Every demuxer the binary lists (``mov,mp4,…`` counts as each name), or None if it would not say."""
    listing = _listing(path, "-demuxers")
    if listing is None:
        return None
    # " D   mov,mp4,m4a,3gp,3g2,mj2 QuickTime / MOV"; a device has a "d" flag, after a space in some versions
    names: set[str] = set()
    for line in listing.splitlines():
        tokens = line.split()
        if len(tokens) >= 3 and tokens[0].startswith("D") and set(tokens[0]) <= set("DEd."):
            names.update((tokens[2] if tokens[1] == "d" else tokens[1]).split(","))
    return names or None


def missing_demuxers(path: str) -> str | None:
    """A sentence naming the containers hushdrop reads that the ffmpeg at ``path`` cannot, or None."""
    names = _demuxer_names(path)
    if names is None:
        return None
    missing = [c for c in ALLOWED if c.demuxer not in names]
    if not missing:
        return None
    kinds = ", ".join(f"{c.kind} (`{c.demuxer}`)" for c in missing)
    return f"it has no demuxer for {kinds}, so recordings in {'that format' if len(missing) == 1 else 'those formats'} cannot be read"


def chain_expressions() -> list[tuple[str, FilterExpression]]:
    """(stage name, filter expression) for every filter the registered filter stages produce.

    Taken from the stages themselves, with options that make each filter do its
    work (normalize set to apply a real gain), so the check cannot drift from the chain.
    """
    from hushdrop.pipeline.job import Job
    from hushdrop.stages import REGISTRY, FilterStage
    from hushdrop.stages.normalize import NormalizeOptions

    found: list[tuple[str, FilterExpression]] = []
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="hushdrop-ffmpeg-check-") as tmp:
        for name, cls in REGISTRY.items():
            if not issubclass(cls, FilterStage):
                continue
            stage = cls(NormalizeOptions(raise_below_lufs=0.0)) if name == "normalize" else cls()
            job = Job(source=Path(tmp) / "tone.wav")
            job.audio = Audio(source=job.source, workdir=Path(tmp), source_rate=48000)
            stage.run(job)
            for audio_filter in job.audio.pending:
                analysis = audio_filter.analysis_expression()
                measured = {"input_i": -40.0, "input_peak": -20.0} if analysis is not None else None
                for expression in [*(as_list(analysis) if analysis else []), *as_list(audio_filter.expression(measured))]:
                    key = describe_filter(expression)
                    if key not in seen:
                        seen.add(key)
                        found.append((name, expression))
    return found


def _write_test_wav(path: Path, seconds: float = 2.0, rate: int = 48000) -> None:
    """A stereo 16-bit tone with a quiet level, written without ffmpeg."""
    t = np.arange(int(seconds * rate)) / rate
    left = 0.01 * np.sin(2 * math.pi * 440 * t)
    right = 0.01 * np.sin(2 * math.pi * 660 * t)
    frames = (np.stack([left, right], axis=1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames.tobytes())


def _render_problem(path: str) -> str | None:
    """Render a real file through normalize, highpass and resample as a job does; what went wrong, or None."""
    from hushdrop.pipeline.job import Job
    from hushdrop.pipeline.chain import Chain
    from hushdrop.stages.highpass import Highpass
    from hushdrop.stages.normalize import Normalize, NormalizeOptions
    from hushdrop.stages.resample import Resample

    with tempfile.TemporaryDirectory(prefix="hushdrop-ffmpeg-check-") as tmp:
        source = Path(tmp) / "tone.wav"
        _write_test_wav(source)
        work = Path(tmp) / "work"
        work.mkdir()
        job = Job(source=source)
        job.audio = Audio(source=source, workdir=work, source_rate=48000, ffmpeg=path, source_seconds=2.0, max_seconds=60.0)
        try:
            Chain([Normalize(NormalizeOptions(raise_below_lufs=0.0)), Highpass(), Resample()]).run(job)
            samples, rate = job.audio.samples()
            length, finite, loudest = len(samples), bool(np.isfinite(samples).all()), float(np.abs(samples).max(initial=0.0))
        except StageError as exc:
            return exc.message
        finally:
            job.audio = None
    if rate != 16000 or abs(length - 32000) > 160:
        return f"a 2 s test file rendered to {length} samples at {rate} Hz instead of 32000 at 16000 Hz"
    if not finite or loudest <= 0.01:  # the tone was raised to -23 LUFS: far above its -40 dBFS
        return "a test render came out silent or not finite: the loudness gain was not applied"
    return None


def check_ffmpeg(path: str) -> list[str]:
    """What keeps the ffmpeg at ``path`` from running hushdrop's chain; empty when nothing does.

    Checks that it runs, its version, that it has the demuxer of every allowed
    container, that every filter the filter stages use exists and accepts the
    options they give it, and one real render of a file.
    """
    fix = fix_hint(path)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return [f"there is no runnable ffmpeg at {path}; {fix}"]
    version, error = ffmpeg_version(path)
    if error is not None:
        return [f"{path} does not run as ffmpeg: {error}; {fix}"]
    problems = []
    numbers = version_numbers(version)
    if numbers is not None and numbers < MIN_VERSION:
        oldest = ".".join(map(str, MIN_VERSION))
        problems.append(f"ffmpeg {version} at {path} is older than {oldest}, the oldest hushdrop's filters are written for; {fix}")
    lacking = missing_demuxers(path)
    if lacking is not None:
        problems.append(f"ffmpeg {version} at {path} cannot read every container hushdrop takes: {lacking}; {fix}")
    names = _filter_names(path)
    for stage, expression in chain_expressions():
        filter_name = expression[0]
        if names is not None and filter_name not in names:
            problems.append(f"ffmpeg {version} at {path} has no `{filter_name}` filter, which the {stage} stage uses; {fix}")
            continue
        problem = chain_problem(path, [expression], 16000)
        if problem is not None:
            problems.append(
                f"ffmpeg {version} at {path} cannot run `{describe_filter(expression)}` for the {stage} stage ({problem}); {fix}"
            )
    if not problems:
        problem = _render_problem(path)
        if problem is not None:
            problems.append(f"ffmpeg {version} at {path} failed a test render: {problem}; {fix}")
    return problems


__all__ = ["FfmpegInfo", "MIN_VERSION", "bundled_ffmpeg", "check_ffmpeg", "describe_ffmpeg", "ffmpeg_version", "version_numbers"]
