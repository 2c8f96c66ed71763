"""Opening a recording as that file and nothing else, and probing what it contains.

Every file is read as that file and nothing else: ffmpeg is given ``file:`` and an absolute
path with only the ``file`` protocol allowed, and PyAV an open file object, so a recording
named ``concat:a.wav|b.wav`` is read, not ``a.wav`` and ``b.wav``. Before either opens it,
the file's own first bytes must name a container on hushdrop's allow-list
(``containers.container_of``), and that container's demuxer is forced: ffmpeg never probes,
so a concat list, a playlist, an SDP file or an image sequence is refused as bad input and
no demuxer opens another file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from hushdrop.pipeline.audio.containers import DEMUXER_OPTIONS, Container, container_of
from hushdrop.pipeline.audio.failures import os_fault
from hushdrop.pipeline.errors import DECODE_STAGE, ENVIRONMENT_ERRNOS, RejectedInput

# only the file protocol: no concat:, subfile:, pipe:, and no network from a playlist
PLAIN_FILE_ONLY = {"protocol_whitelist": "file"}


def plain_file(path: Path) -> str:
    """``path`` as an ffmpeg input or output that can only mean that file."""
    return "file:" + str(path.absolute())


def demuxer_options(container: Container) -> dict[str, str]:
    """The input options that make ffmpeg read a file as ``container`` and nothing else."""
    return {"f": container.demuxer, **DEMUXER_OPTIONS.get(container.demuxer, {}), **PLAIN_FILE_ONLY}


def open_recording(path: Path) -> tuple[int, Container]:
    """Open ``path`` to read it as a recording: its descriptor and its container, or the error.

    No link is followed, a FIFO that appeared in the file's place cannot block the
    open, and the container comes from the file's own bytes before any library
    reads it. The caller closes the descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise RejectedInput(DECODE_STAGE, f"cannot read {path.name}: {exc.strerror}") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RejectedInput(DECODE_STAGE, f"{path.name} is a symbolic link; hushdrop never follows links") from exc
        raise os_fault(exc, f"cannot read {path.name}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RejectedInput(DECODE_STAGE, f"{path.name} is not a regular file")
        if info.st_size == 0:
            raise RejectedInput(DECODE_STAGE, f"{path.name} is empty (0 bytes); nothing to transcribe")
        return fd, container_of(fd, path.name)
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):  # reading our own open file failed: the disk or the share
            raise os_fault(exc, f"cannot read {path.name}") from exc
        raise


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
                raise RejectedInput(DECODE_STAGE, f"{path.name} is {what}; there is nothing to transcribe")
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
        if exc.errno in ENVIRONMENT_ERRNOS:
            raise os_fault(OSError(exc.errno, os.strerror(exc.errno)), f"cannot read {path.name}") from exc
        raise RejectedInput(
            DECODE_STAGE,
            f"{path.name} is not a recording ffmpeg can read: {pyav_reason(exc)}; check that it is a complete audio or video file",
        ) from exc
    except OSError as exc:  # reading the open file failed: the disk or the share, not the recording
        raise os_fault(exc, f"cannot read {path.name}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise RejectedInput(
            DECODE_STAGE,
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


__all__ = ["PLAIN_FILE_ONLY", "AudioFacts", "demuxer_options", "open_recording", "plain_file", "probe", "pyav_reason"]
