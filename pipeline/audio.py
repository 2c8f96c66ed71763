"""Decoding and filtering audio with ffmpeg, and probing what a file contains.

Audio stages that are ffmpeg filters (normalize, highpass, resample) do not each
cost a decode/encode pass: they add filters to the job's ``Audio``, and the
filters pending when a stage first needs samples are rendered in one ffmpeg run
straight into a float32 file that is memory-mapped, not held in RAM several
times over. A filter that must measure first (loudness, for normalize) adds one
analysis pass that only reads.

Every file is read as that file and nothing else: ffmpeg is given ``file:`` and an
absolute path with only the ``file`` protocol allowed, and PyAV an open file
object, so a recording named ``concat:a.wav|b.wav`` is read, not ``a.wav`` and
``b.wav``. Before either opens it, the file's own first bytes must name a container
on hushdrop's allow-list (``containers.container_of``), and that container's
demuxer is forced: ffmpeg never probes, so a concat list, a playlist, an SDP file
or an image sequence is refused as bad input and no demuxer opens another file.

One known ffmpeg binary renders: by default the one pinned in the imageio-ffmpeg
wheel, which the tests run against. The ``ffmpeg`` setting opts into the system's
or another one; ``pipeline.ffmpeg_check`` says whether it can run the chain.

A recording is bounded by what it decodes to, not by what its header claims: the
render stops one second past ``max_duration_hours`` and such a recording is
refused, the job's temporary audio is held under ``max_temp_gb``, and the free
space of the temporary folder is checked before ffmpeg writes and watched while it
does.

A failure is charged to whoever caused it. A full or read-only disk, a missing
permission, an ffmpeg that crashes or lacks one of our filters or options is an
``EnvironmentFault``: the job waits and is tried again. A recording ffmpeg cannot
decode is a ``RejectedInput``. Either message quotes the line in which ffmpeg
names the error.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from hushdrop.pipeline.containers import DEMUXER_OPTIONS, Container, container_of
from hushdrop.pipeline.errors import ENVIRONMENT_ERRNOS, EnvironmentFault, RejectedInput, StageError

_STAGE = "decode"


# ---------------------------------------------------------------------------
# which ffmpeg


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
                _STAGE, "config.yaml says `ffmpeg: system`, but there is no ffmpeg on PATH; install one or set `ffmpeg: bundled`"
            )
        return found
    path = Path(choice).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return str(path)


def ffmpeg_exe() -> str:
    """The ffmpeg used where no setting is at hand: ``HUSHDROP_FFMPEG``, else the bundled one."""
    return resolve_ffmpeg("bundled")


def plain_file(path: Path) -> str:
    """``path`` as an ffmpeg input or output that can only mean that file."""
    return "file:" + str(path.absolute())


# only the file protocol: no concat:, subfile:, pipe:, and no network from a playlist
_PLAIN_FILE_ONLY = {"protocol_whitelist": "file"}


def demuxer_options(container: Container) -> dict[str, str]:
    """The input options that make ffmpeg read a file as ``container`` and nothing else."""
    return {"f": container.demuxer, **DEMUXER_OPTIONS.get(container.demuxer, {}), **_PLAIN_FILE_ONLY}


def open_recording(path: Path) -> tuple[int, Container]:
    """Open ``path`` to read it as a recording: its descriptor and its container, or the error.

    No link is followed, a FIFO that appeared in the file's place cannot block the
    open, and the container comes from the file's own bytes before any library
    reads it. The caller closes the descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise RejectedInput(_STAGE, f"cannot read {path.name}: {exc.strerror}") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RejectedInput(_STAGE, f"{path.name} is a symbolic link; hushdrop never follows links") from exc
        raise os_fault(exc, f"cannot read {path.name}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RejectedInput(_STAGE, f"{path.name} is not a regular file")
        if info.st_size == 0:
            raise RejectedInput(_STAGE, f"{path.name} is empty (0 bytes); nothing to transcribe")
        return fd, container_of(fd, path.name)
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):  # reading our own open file failed: the disk or the share
            raise os_fault(exc, f"cannot read {path.name}") from exc
        raise


# ---------------------------------------------------------------------------
# probing


@dataclass
class AudioFacts:
    """What the original recording is, as probed before any processing."""

    path: str
    size_bytes: int
    container: str
    codec: str
    duration_s: float
    sample_rate: int
    channels: int
    has_video: bool = False
    decoded_s: float | None = None  # what could actually be decoded; less than duration_s if truncated


def probe(path: Path) -> AudioFacts:
    """Describe ``path``'s container and first audio stream, or raise RejectedInput.

    The file is opened here, its container decided from its own bytes, and PyAV
    reads the open file with that container's demuxer: its name is never parsed as
    a protocol or a URL, and ffmpeg never guesses the format.
    """
    import av

    fd, kind = open_recording(path)
    handle = os.fdopen(fd, "rb")
    size = os.fstat(fd).st_size
    options = {k: v for k, v in demuxer_options(kind).items() if k != "f"}
    try:
        with handle, av.open(handle, format=kind.demuxer, options=options, metadata_errors="ignore") as container:
            format_name = container.format.name
            audio_streams = list(container.streams.audio)
            has_video = any(s.type == "video" and not _is_cover_art(s) for s in container.streams)
            if not audio_streams:
                what = "a video with no audio track" if has_video else "a file with no audio stream"
                raise RejectedInput(_STAGE, f"{path.name} is {what}; there is nothing to transcribe")
            stream = audio_streams[0]
            ctx = stream.codec_context
            duration = _duration_seconds(container, stream)
            return AudioFacts(
                path=str(path),
                size_bytes=size,
                container=format_name,
                codec=ctx.name,
                duration_s=duration,
                sample_rate=int(ctx.sample_rate or 0),
                channels=int(ctx.channels or 0),
                has_video=has_video,
            )
    except RejectedInput:
        raise
    except av.error.FFmpegError as exc:
        if exc.errno in _MACHINE_ERRNOS:
            raise os_fault(OSError(exc.errno, os.strerror(exc.errno)), f"cannot read {path.name}") from exc
        raise RejectedInput(
            _STAGE,
            f"{path.name} is not a recording ffmpeg can read: {pyav_reason(exc)}; check that it is a complete audio or video file",
        ) from exc
    except OSError as exc:  # reading the open file failed: the disk or the share, not the recording
        raise os_fault(exc, f"cannot read {path.name}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise RejectedInput(
            _STAGE,
            f"{path.name} is not a recording ffmpeg can read: its header could not be parsed ({type(exc).__name__}); "
            f"check that it is a complete audio or video file",
        ) from exc


def pyav_reason(exc: BaseException) -> str:
    """A sentence for a PyAV error, without its raw ``[Errno …]`` number."""
    import av

    if isinstance(exc, av.error.InvalidDataError):
        return "ffmpeg finds no audio or video format it knows in it (a damaged or unfinished file, or not a media file)"
    if isinstance(exc, av.error.EOFError):
        return "it ends before its header does (cut short while copying or recording?)"
    if isinstance(exc, (av.error.DecoderNotFoundError, av.error.DemuxerNotFoundError)):
        return "its format or codec is not one ffmpeg can decode"
    if isinstance(exc, av.error.PatchWelcomeError):
        return "it uses a feature of its format that ffmpeg does not support"
    text = getattr(exc, "strerror", None) or str(exc)
    text = re.sub(r"\[Errno -?\d+\]\s*", "", text).strip().rstrip(".")
    return (text[:1].lower() + text[1:])[:200] or type(exc).__name__


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


# ---------------------------------------------------------------------------
# whose fault: the machine's or the recording's

_MACHINE_ERRNOS = ENVIRONMENT_ERRNOS
_ERRNO_HINTS = {
    errno.ENOSPC: "the disk is full: free some space there (the job waits and tries again)",
    errno.EDQUOT: "the disk quota is used up: free some space there (the job waits and tries again)",
    errno.EROFS: "that filesystem is read-only: point `workdir` at a writable folder, or remount it",
    errno.EACCES: "hushdrop's user lacks the permission: check the owner and mode of the file and of `workdir`",
    errno.EPERM: "hushdrop's user lacks the permission: check the owner and mode of the file and of `workdir`",
    errno.EIO: "the disk or network share reported an I/O error: check it",
    errno.ENOMEM: "the machine ran out of memory: try fewer workers",
    errno.EMFILE: "the process ran out of file handles: raise its limit (ulimit -n) or run fewer workers",
    errno.ENFILE: "the system ran out of file handles: raise its limit or run fewer workers",
}


def os_fault(exc: OSError, what: str) -> EnvironmentFault:
    """An error of the machine (our folders, the disk, the share) as an EnvironmentFault."""
    hint = _ERRNO_HINTS.get(exc.errno or 0, "the recording is not at fault; the job waits and tries again")
    return EnvironmentFault(_STAGE, f"{what}: {exc.strerror or exc}; {hint}")


# ffmpeg's own words for a machine fault, and what to do about it
_MACHINE_LINES = (
    (re.compile(r"No space left on device|Disk quota exceeded", re.I), errno.ENOSPC),
    (re.compile(r"Read-only file system", re.I), errno.EROFS),
    (re.compile(r"Permission denied|Operation not permitted", re.I), errno.EACCES),
    (re.compile(r"Cannot allocate memory|Out of memory", re.I), errno.ENOMEM),
    (re.compile(r"Input/output error", re.I), errno.EIO),
    (re.compile(r"Too many open files", re.I), errno.EMFILE),
)
# an ffmpeg that lacks what hushdrop asks of it, whatever the input
_TOOL_LINES = re.compile(
    r"Unrecognized option|No such filter|Option \S*\s*not found|Filter not found|Unknown encoder|Unknown input format|"
    r"Requested output format .* is not|Unable to find a suitable output format|Protocol not found",
    re.I,
)
# a recording ffmpeg cannot decode
_INPUT_LINES = re.compile(
    r"Invalid data found when processing input|could not find codec parameters|moov atom not found|"
    r"Error while decoding|decoding for stream \d+ failed|Invalid (?:frame|packet|sample|chunk|header)|"
    r"does not contain any stream|matches no streams|Header missing|invalid (?:sync|header|block)|corrupt|"
    r"truncat|End of file|partial file|not on whitelist|Decoder \(codec .*\) not found|"
    r"Error opening input|Unsupported codec",
    re.I,
)
_ERRORISH = re.compile(r"error|invalid|fail|cannot|could not|can't|not found|unable|no such|unsupported|unknown|corrupt", re.I)
_CONTEXT = re.compile(r"^\[([^\]@]+?) @ 0x[0-9a-f]+\]\s*", re.I)


def _error_lines(stderr: str) -> list[str]:
    """ffmpeg's messages, one per line, with the ``[demuxer @ 0x…]`` address dropped.

    Indented lines are left out: they are ffmpeg's dump of the input's streams and
    tags (a tag's text is the recording's, not ffmpeg's error).
    """
    lines = []
    for raw in stderr.splitlines():
        if not raw.strip() or raw[:1].isspace():
            continue
        line = _CONTEXT.sub(lambda m: m.group(1).strip() + ": ", raw.strip())
        lines.append(line[:240])
    return lines


_LOST_OUTPUT = re.compile(r"Error (?:writing trailer|closing file)", re.I)


def _lost_output(stderr: str) -> bool:
    """Whether ffmpeg failed to write its output although it exited with status 0 (some
    versions do when the last write, at the trailer, hits a full disk)."""
    lines = _error_lines(stderr)
    return any(_first(lines, pattern) for pattern, _ in _MACHINE_LINES) or _first(lines, _LOST_OUTPUT) is not None


def _first(lines: list[str], pattern: re.Pattern) -> str | None:
    return next((line for line in lines if pattern.search(line)), None)


def meaningful_line(stderr: str) -> str:
    """The first line in which ffmpeg names an error, else its last line."""
    lines = _error_lines(stderr)
    for pattern in (*(p for p, _ in _MACHINE_LINES), _TOOL_LINES, _INPUT_LINES, _ERRORISH):
        line = _first(lines, pattern)
        if line:
            return line
    return lines[-1] if lines else "ffmpeg said nothing"


def fix_hint(exe: str) -> str:
    try:
        bundled = os.path.samefile(exe, bundled_ffmpeg())
    except OSError:
        bundled = False
    if bundled:
        return "reinstall the ffmpeg hushdrop ships with (pip install --force-reinstall imageio-ffmpeg)"
    return "set `ffmpeg: bundled` in config.yaml to use the ffmpeg hushdrop ships and is tested with"


def tool_fault(exe: str, line: str) -> EnvironmentFault:
    return EnvironmentFault(_STAGE, f"the ffmpeg at {exe} cannot run hushdrop's filters ({line}); {fix_hint(exe)}")


def classify_failure(
    exe: str,
    returncode: int,
    stderr: str,
    name: str,
    workdir: Path | None = None,
    chain: list[FilterExpression] | None = None,
    rate: int = 16000,
) -> StageError:
    """The error for an ffmpeg run that failed on the recording ``name``.

    A signal, a machine error or an option this ffmpeg lacks is an EnvironmentFault;
    a decoding error of the input a RejectedInput. When ffmpeg's words do not settle
    it, ``chain`` is run on a generated tone with the same binary: if our filters
    fail there too, the binary is at fault, otherwise the recording is.
    """
    lines = _error_lines(stderr)
    if returncode < 0:
        try:
            killed_by = signal.Signals(-returncode).name
        except ValueError:
            killed_by = f"signal {-returncode}"
        said = f" (its last words: {lines[-1]})" if lines else ""
        return EnvironmentFault(
            _STAGE,
            f"ffmpeg ({exe}) was killed by {killed_by} while decoding {name}{said}: it crashed, ran out of memory "
            f"or was stopped; the recording is not at fault and the job will be tried again",
        )
    for pattern, code in _MACHINE_LINES:
        line = _first(lines, pattern)
        if line:
            where = f" (temporary folder: {workdir.parent})" if workdir is not None and code in (errno.ENOSPC, errno.EROFS) else ""
            return EnvironmentFault(
                _STAGE, f"ffmpeg failed on {name} because of the machine, not the recording: {line}{where}; {_ERRNO_HINTS[code]}"
            )
    line = _first(lines, _TOOL_LINES)
    if line:
        return tool_fault(exe, line)
    line = _first(lines, _INPUT_LINES)
    if line is None and chain is not None:
        problem = chain_problem(exe, chain, rate)
        if problem is not None:
            return tool_fault(exe, problem)
    if line is None:
        line = meaningful_line(stderr) if lines else f"ffmpeg exited with status {returncode} and said nothing"
    return RejectedInput(_STAGE, f"ffmpeg could not decode {name}: {line}; check that it is a complete audio or video file")


_TEST_TONE = "sine=frequency=440:sample_rate=48000:duration=1"


def chain_problem(exe: str, chain: list[FilterExpression], rate: int = 16000, timeout: float = 60.0) -> str | None:
    """Run ``chain`` with ``exe`` on a generated one-second tone; ffmpeg's error line, or None if it works."""
    args = ffmpeg_args(_TEST_TONE, {"f": "lavfi"}, chain, "-", {"f": "null", "acodec": "pcm_f32le", "ac": 1, "ar": rate})
    cmd = [exe, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", *args]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"a one-second test render took over {timeout:g} s"
    except OSError as exc:
        return f"it cannot be run: {exc.strerror or exc}"
    if proc.returncode < 0:
        return f"it was killed by signal {-proc.returncode} on a one-second test render"
    if proc.returncode != 0:
        return meaningful_line(proc.stderr)
    return None


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


_OPTION_SPECIAL = "\\'=:"  # escaped inside an option value, then the whole filter inside the graph
_GRAPH_SPECIAL = "\\'[],;"


def _escape(text: str, special: str) -> str:
    return "".join("\\" + c if c in special else c for c in text)


def filter_graph(chain: list[FilterExpression]) -> str:
    """``chain`` as one ffmpeg filtergraph, each option value escaped as ffmpeg parses it."""
    parts = []
    for name, options in chain:
        text = name
        if options:
            text += "=" + ":".join(_escape(str(k), _OPTION_SPECIAL) + "=" + _escape(str(v), _OPTION_SPECIAL) for k, v in options.items())
        parts.append(_escape(text, _GRAPH_SPECIAL))
    return ",".join(parts)


def ffmpeg_args(source: str, input_options: dict, chain: list[FilterExpression], output: str, output_options: dict) -> list[str]:
    """The arguments after the global flags: one input, its first audio stream through ``chain``, one output."""
    args: list[str] = []
    for key, value in input_options.items():
        args += [f"-{key}", str(value)]
    args += ["-i", source, "-map", "0:a:0"]
    if chain:
        args += ["-af", filter_graph(chain)]
    for key, value in output_options.items():
        args += [f"-{key}", str(value)]
    return [*args, "-y", output]


_WATCH_SECONDS = 0.25  # how often a running render's output and free space are checked
_MIN_FREE_BYTES = 128 * 2**20  # the temporary folder's disk keeps this much free; below it, rendering stops


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def duration_text(seconds: float) -> str:
    """``12 h``, ``1.5 h``, ``45 min``, ``10 s``: a limit as a person would say it."""
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


@dataclass
class Audio:
    """The job's working audio: a source file and pending filters, rendered lazily.

    After rendering, ``samples`` is mono float32 at ``sample_rate`` (a read-only
    memory map of a file in the job's private temporary directory). ``max_seconds``
    and ``max_temp_bytes`` bound what a recording may decode to, whatever its header
    says; ``source_seconds`` (the header's duration, 0 when it gives none) sizes the
    free-space check before the first render.
    """

    source: Path
    workdir: Path
    source_rate: int
    sample_rate: int = 0  # 0 = keep the source's rate when rendering
    pending: list[AudioFilter] = field(default_factory=list)
    renders: list[RenderRecord] = field(default_factory=list)
    ffmpeg: str | None = None  # the binary; None = ffmpeg_exe()
    source_seconds: float = 0.0
    max_seconds: float | None = None  # decoded audio longer than this is refused (max_duration_hours)
    max_temp_bytes: int | None = None  # the job's temporary files may not grow past this (max_temp_gb)
    min_free_bytes: int = _MIN_FREE_BYTES
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
        """A writable float32 buffer on disk, so a stage's output is not a second copy in RAM.

        Its space is reserved up front: a memory map that runs out of disk while it is
        written kills the process (SIGBUS), a reservation that fails is an error.
        """
        if length == 0:
            return np.zeros(0, dtype=np.float32)
        nbytes = 4 * length
        self._ensure_room(nbytes)
        path = self._next_path()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                try:
                    os.posix_fallocate(fd, 0, nbytes)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                        raise
                    os.ftruncate(fd, nbytes)  # a filesystem that cannot reserve: a sparse file, as before
            finally:
                os.close(fd)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise os_fault(exc, f"cannot make room for {_size(nbytes)} of audio in {self.workdir.parent}") from exc
        return np.memmap(path, dtype=np.float32, mode="r+", shape=(length,))

    def replace(self, samples: np.ndarray, rate: int) -> None:
        """Swap in processed samples (e.g. after denoising); a buffer from ``new_buffer`` is adopted as is."""
        if isinstance(samples, np.memmap) and Path(samples.filename).parent == self.workdir:
            samples.flush()
            path = Path(samples.filename)
            del samples
        else:
            data = np.asarray(samples, dtype=np.float32)
            self._ensure_room(data.nbytes)
            path = self._next_path()
            try:
                data.tofile(path)
            except OSError as exc:
                path.unlink(missing_ok=True)
                raise os_fault(exc, f"cannot write {_size(data.nbytes)} of audio in {self.workdir.parent}") from exc
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

    # -- bounds -------------------------------------------------------------

    def _temp_bytes(self) -> int:
        total = 0
        try:
            with os.scandir(self.workdir) as entries:
                for entry in entries:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            return 0
        return total

    def _over_budget(self) -> RejectedInput:
        assert self.max_temp_bytes is not None
        return RejectedInput(
            _STAGE,
            f"{self.source.name} needs more than {_size(self.max_temp_bytes)} of temporary audio, over the max_temp_gb "
            f"limit of {self.max_temp_bytes / 1e9:g} GB; raise max_temp_gb in config.yaml or split the recording",
        )

    def _low_space(self, free: int, needed: int | None) -> EnvironmentFault:
        wanted = f"{self.source.name} needs about {_size(needed)} more" if needed else f"decoding {self.source.name} stopped"
        return EnvironmentFault(
            _STAGE,
            f"the temporary folder {self.workdir.parent} has only {_size(free)} free and {wanted}; free some space "
            f"there or point `workdir` at a larger disk (the job waits and tries again)",
        )

    def _ensure_room(self, nbytes: int) -> None:
        """Refuse before writing ``nbytes`` more when that breaks the budget or fills the disk."""
        if self.max_temp_bytes is not None and self._temp_bytes() + nbytes > self.max_temp_bytes:
            raise self._over_budget()
        free = _free_bytes(self.workdir)
        if free is not None and free < nbytes + self.min_free_bytes:
            raise self._low_space(free, nbytes)

    def _watch(self) -> StageError | None:
        """While ffmpeg writes: the reason to stop it now, or None."""
        if self.max_temp_bytes is not None and self._temp_bytes() > self.max_temp_bytes:
            return self._over_budget()
        free = _free_bytes(self.workdir)
        if free is not None and free < self.min_free_bytes:
            return self._low_space(free, None)
        return None

    def _expected_seconds(self) -> float:
        seconds = (len(self._samples) / self._rate) if self._samples is not None and self._rate else self.source_seconds
        if self.max_seconds is not None:
            seconds = min(seconds, self.max_seconds + 1)
        return max(0.0, seconds)

    def _check_length(self) -> None:
        decoded = self.decoded_seconds
        if self.max_seconds is not None and decoded is not None and decoded > self.max_seconds:
            limit = duration_text(self.max_seconds)
            raise RejectedInput(
                _STAGE,
                f"{self.source.name} decodes to more than {limit} of audio, over the max_duration_hours limit of "
                f"{limit} (its header does not say so); raise the limit in config.yaml or split the recording",
            )

    # -- rendering ----------------------------------------------------------

    def _input_args(self) -> tuple[str, dict]:
        limit = {"t": f"{self.max_seconds + 1:.3f}"} if self.max_seconds is not None else {}
        if self._samples is None:
            fd, container = open_recording(self.source)  # decided again here: the render opens the file anew
            os.close(fd)
            return plain_file(self.source), {**demuxer_options(container), **limit}
        return plain_file(Path(self._samples.filename)), {"f": "f32le", "ar": self._rate, "ac": 1, **_PLAIN_FILE_ONLY, **limit}

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
        self._ensure_room(int(self._expected_seconds() * target_rate * 4))
        out_path = self._next_path()
        args = ffmpeg_args(source, input_kwargs, chain, plain_file(out_path), {"f": "f32le", "acodec": "pcm_f32le", "ac": 1, "ar": target_rate})
        try:
            self._run(args, "error", chain, target_rate, watch=True)
            if self.max_temp_bytes is not None and self._temp_bytes() > self.max_temp_bytes:
                raise self._over_budget()  # it finished between two looks
        except StageError:
            out_path.unlink(missing_ok=True)
            raise
        passes += 1
        self._map(out_path, target_rate)
        self._check_length()
        self.renders.append(RenderRecord([describe_filter(e) for e in chain], passes, time.perf_counter() - started))
        self.pending = []

    def _analyse(self, source: str, input_kwargs: dict, chain: list[FilterExpression], audio_filter: AudioFilter) -> dict:
        args = ffmpeg_args(source, input_kwargs, chain, "-", {"f": "null"})
        stderr = self._run(args, "info", chain, 16000, watch=False)
        return audio_filter.parse_measurement(stderr)

    def _run(self, args: list[str], loglevel: str, chain: list[FilterExpression], rate: int, watch: bool) -> str:
        """Run ffmpeg with ``args``; its stderr, or the error that says whose fault the failure is."""
        exe = self.ffmpeg or ffmpeg_exe()
        cmd = [exe, "-nostdin", "-hide_banner", "-nostats", "-loglevel", loglevel, *args]
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace"
            )
        except OSError as exc:
            raise EnvironmentFault(
                _STAGE, f"cannot run ffmpeg at {exe}: {exc.strerror or exc}; {fix_hint(exe)}"
            ) from exc
        try:
            while True:
                try:
                    _, stderr = proc.communicate(timeout=_WATCH_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    stop = self._watch() if watch else None
                    if stop is not None:
                        raise stop
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        if proc.returncode != 0 or _lost_output(stderr):
            stderr = stderr.replace(plain_file(self.source), self.source.name)
            raise classify_failure(exe, proc.returncode or 1, stderr, self.source.name, self.workdir, chain, rate)
        return stderr
