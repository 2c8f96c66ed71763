"""Decoding and filtering audio with ffmpeg, and probing what a file contains.

Audio stages that are ffmpeg filters (normalize, highpass, resample) do not each
cost a decode/encode pass: they add filters to the job's ``Audio``, and the
filters pending when a stage first needs samples are rendered in one ffmpeg run
straight into a float32 file that is memory-mapped, not held in RAM several
times over. A filter that must measure first (loudness, for normalize) adds one
analysis pass that only reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import ffmpeg
import numpy as np

from pipeline.errors import RejectedInput
from pipeline.job import AudioFacts


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """The system's ffmpeg if there is one, else the binary from the imageio-ffmpeg wheel."""
    override = os.environ.get("HUSHDROP_FFMPEG")
    if override:
        return override
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# ---------------------------------------------------------------------------
# probing


def probe(path: Path) -> AudioFacts:
    """Describe ``path``'s container and first audio stream, or raise RejectedInput."""
    import av

    stage = "decode"
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RejectedInput(stage, f"cannot read {path.name}: {exc.strerror}") from exc
    if size == 0:
        raise RejectedInput(stage, f"{path.name} is empty (0 bytes); nothing to transcribe")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            audio_streams = list(container.streams.audio)
            has_video = any(s.type == "video" and not _is_cover_art(s) for s in container.streams)
            if not audio_streams:
                what = "a video with no audio track" if has_video else "a file with no audio stream"
                raise RejectedInput(stage, f"{path.name} is {what}; there is nothing to transcribe")
            stream = audio_streams[0]
            ctx = stream.codec_context
            duration = _duration_seconds(container, stream)
            return AudioFacts(
                path=str(path),
                size_bytes=size,
                container=container.format.name,
                codec=ctx.name,
                duration_s=duration,
                sample_rate=int(ctx.sample_rate or 0),
                channels=int(ctx.channels or 0),
                has_video=has_video,
            )
    except RejectedInput:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise RejectedInput(
            stage,
            f"{path.name} is not a recording ffmpeg can read ({_short(exc)}); "
            f"check that it is a complete audio or video file",
        ) from exc


def _is_cover_art(stream) -> bool:
    disposition = getattr(stream, "disposition", None)
    try:
        import av

        return bool(disposition is not None and disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _duration_seconds(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:200] if text else type(exc).__name__


# ---------------------------------------------------------------------------
# filters


FilterExpression = tuple[str, dict]  # ffmpeg filter name and its options
Expressions = FilterExpression | list[FilterExpression]  # one filter, or several in order


def _as_list(expressions: Expressions) -> list[FilterExpression]:
    return list(expressions) if isinstance(expressions, list) else [expressions]


def describe_filter(expression: FilterExpression) -> str:
    name, options = expression
    return name + ("=" + ":".join(f"{k}={v}" for k, v in options.items()) if options else "")


class AudioFilter(Protocol):
    """One ffmpeg filter a stage contributes to the job's pending filter graph."""

    def expression(self, measurement: dict | None) -> Expressions: ...

    def analysis_expression(self) -> Expressions | None:
        """ffmpeg filter(s) that measure the input first (two-pass), or None."""

    def parse_measurement(self, stderr: str) -> dict:
        """Read what the analysis printed (at log level info); only called when there is one."""


@dataclass
class PlainFilter:
    name: str
    options: dict = field(default_factory=dict)

    def expression(self, measurement: dict | None) -> FilterExpression:
        return self.name, self.options

    def parse_measurement(self, stderr: str) -> dict:
        raise NotImplementedError("a plain filter measures nothing")

    def analysis_expression(self) -> FilterExpression | None:
        return None


@dataclass
class RenderRecord:
    filters: list[str]
    passes: int
    seconds: float


def _filtered(source: str, input_kwargs: dict, chain: list[FilterExpression]):
    stream = ffmpeg.input(source, **input_kwargs).audio
    for name, options in chain:
        stream = stream.filter(name, **options)
    return stream


@dataclass
class Audio:
    """The job's working audio: a source file and pending filters, rendered lazily.

    After rendering, ``samples`` is mono float32 at ``sample_rate`` (a read-only
    memory map of a file in the job's private temporary directory).
    """

    source: Path
    workdir: Path
    source_rate: int
    sample_rate: int = 0  # 0 = keep the source's rate when rendering
    pending: list[AudioFilter] = field(default_factory=list)
    renders: list[RenderRecord] = field(default_factory=list)
    _samples: np.ndarray | None = None
    _rate: int = 0
    _counter: int = 0

    def add_filter(self, audio_filter: AudioFilter) -> None:
        self.pending.append(audio_filter)

    def set_rate(self, rate: int) -> None:
        self.sample_rate = rate

    @property
    def decoded_seconds(self) -> float | None:
        if self._samples is None or not self._rate:
            return None
        return len(self._samples) / self._rate

    def samples(self) -> tuple[np.ndarray, int]:
        """Mono float32 samples and their rate, rendering pending filters first."""
        target_rate = self.sample_rate or self._rate or self.source_rate
        if self._samples is None or self.pending or target_rate != self._rate:
            self._render(target_rate)
        assert self._samples is not None
        return self._samples, self._rate

    def new_buffer(self, length: int) -> np.memmap | np.ndarray:
        """A writable float32 buffer on disk, so a stage's output is not a second copy in RAM."""
        if length == 0:
            return np.zeros(0, dtype=np.float32)
        return np.memmap(self._next_path(), dtype=np.float32, mode="w+", shape=(length,))

    def replace(self, samples: np.ndarray, rate: int) -> None:
        """Swap in processed samples (e.g. after denoising); a buffer from ``new_buffer`` is adopted as is."""
        if isinstance(samples, np.memmap) and Path(samples.filename).parent == self.workdir:
            samples.flush()
            path = Path(samples.filename)
            del samples
        else:
            path = self._next_path()
            np.asarray(samples, dtype=np.float32).tofile(path)
        self._map(path, rate)

    def _next_path(self) -> Path:
        self._counter += 1
        return self.workdir / f"audio-{self._counter}.f32"

    def _map(self, path: Path, rate: int) -> None:
        old = self._samples
        if path.stat().st_size == 0:
            self._samples = np.zeros(0, dtype=np.float32)
        else:
            self._samples = np.memmap(path, dtype=np.float32, mode="r")
        self._rate = rate
        if isinstance(old, np.memmap):
            old_path = Path(old.filename)
            del old
            old_path.unlink(missing_ok=True)

    def _input_args(self) -> tuple[str, dict]:
        if self._samples is None:
            return str(self.source), {}
        return str(Path(self._samples.filename)), {"f": "f32le", "ar": self._rate, "ac": 1}

    def _render(self, target_rate: int) -> None:
        started = time.perf_counter()
        source, input_kwargs = self._input_args()
        measurements: list[dict | None] = []
        passes = 0
        for index, f in enumerate(self.pending):
            analysis = f.analysis_expression()
            if analysis is None:
                measurements.append(None)
                continue
            before = [e for g, m in zip(self.pending[:index], measurements) for e in _as_list(g.expression(m))]
            measurements.append(self._analyse(source, input_kwargs, [*before, *_as_list(analysis)], f))
            passes += 1
        chain = [e for f, m in zip(self.pending, measurements) for e in _as_list(f.expression(m))]
        out_path = self._next_path()
        cmd = (
            ffmpeg.output(_filtered(source, input_kwargs, chain), str(out_path), f="f32le", acodec="pcm_f32le", ac=1, ar=target_rate)
            .global_args("-nostdin", "-hide_banner", "-loglevel", "error", "-vn", "-sn", "-dn")
            .overwrite_output()
            .compile(cmd=ffmpeg_exe())
        )
        self._run(cmd)
        passes += 1
        self._map(out_path, target_rate)
        self.renders.append(RenderRecord([describe_filter(e) for e in chain], passes, time.perf_counter() - started))
        self.pending = []

    def _analyse(self, source: str, input_kwargs: dict, chain: list[FilterExpression], audio_filter: AudioFilter) -> dict:
        cmd = (
            ffmpeg.output(_filtered(source, input_kwargs, chain), "-", f="null")
            .global_args("-nostdin", "-hide_banner", "-loglevel", "info", "-vn", "-sn", "-dn")
            .compile(cmd=ffmpeg_exe())
        )
        stderr = self._run(cmd)
        return audio_filter.parse_measurement(stderr)

    def _run(self, cmd: list[str]) -> str:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
        if proc.returncode != 0:
            raise RejectedInput(
                "decode",
                f"ffmpeg could not decode {self.source.name}: {_short(Exception(proc.stderr))}",
            )
        return proc.stderr
