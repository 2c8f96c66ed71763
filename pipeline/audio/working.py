"""The job's working audio: a source file and pending filters, rendered lazily, within bounds.

The filters pending when a stage first needs samples (``pipeline.audio.filters``) are
rendered in one ffmpeg run straight into a float32 file that is memory-mapped, not held in
RAM several times over; a stage that computes new samples writes them into a buffer on disk
(``Audio.new_buffer``) and swaps it in.

A recording is bounded by what it decodes to, not by what its header claims: the render
stops one second past ``max_duration_hours`` and such a recording is refused, the job's
temporary audio is held under ``max_temp_gb``, and the free space of the temporary folder is
checked before ffmpeg writes and watched while it does.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hushdrop.pipeline.audio.binary import ffmpeg_exe, fix_hint
from hushdrop.pipeline.audio.failures import classify_failure, lost_output, os_fault
from hushdrop.pipeline.audio.filters import AudioFilter, FilterExpression, as_list, describe_filter, ffmpeg_args
from hushdrop.pipeline.audio.probe import PLAIN_FILE_ONLY, demuxer_options, open_recording, plain_file
from hushdrop.pipeline.errors import DECODE_STAGE, EnvironmentFault, RejectedInput, StageError


@dataclass
class RenderRecord:
    """One ffmpeg render of the working audio: the filters it ran, its passes (analyses + the render), its time."""

    filters: list[str]
    passes: int
    seconds: float


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
                    os.ftruncate(fd, nbytes)  # a filesystem that cannot reserve space: a sparse file
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
            DECODE_STAGE,
            f"{self.source.name} needs more than {_size(self.max_temp_bytes)} of temporary audio, over the max_temp_gb "
            f"limit of {self.max_temp_bytes / 1e9:g} GB; raise max_temp_gb in config.yaml or split the recording",
        )

    def _low_space(self, free: int, needed: int | None) -> EnvironmentFault:
        wanted = f"{self.source.name} needs about {_size(needed)} more" if needed else f"decoding {self.source.name} stopped"
        return EnvironmentFault(
            DECODE_STAGE,
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
                DECODE_STAGE,
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
        return plain_file(Path(self._samples.filename)), {"f": "f32le", "ar": self._rate, "ac": 1, **PLAIN_FILE_ONLY, **limit}

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
            before = [e for g, m in zip(self.pending[:index], measurements) for e in as_list(g.expression(m))]
            measurements.append(self._analyse(source, input_kwargs, [*before, *as_list(analysis)], f))
            passes += 1
        chain = [e for f, m in zip(self.pending, measurements) for e in as_list(f.expression(m))]
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
                DECODE_STAGE, f"cannot run ffmpeg at {exe}: {exc.strerror or exc}; {fix_hint(exe)}"
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
        if proc.returncode != 0 or lost_output(stderr):
            stderr = stderr.replace(plain_file(self.source), self.source.name)
            raise classify_failure(exe, proc.returncode or 1, stderr, self.source.name, self.workdir, chain, rate)
        return stderr


__all__ = ["Audio", "RenderRecord", "duration_text"]
