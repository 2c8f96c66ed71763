"""How long a file says it is: the byte length its container header declares.

A recorder or a sync tool that writes a WAV header first and the samples after it
leaves, for a while, a file shorter than its header says. Such a file is not
complete, however still it sits, so the settle check waits longer for it, and a
job that had to take it anyway warns that it is truncated.

Only containers that state their total length are read: RIFF/WAVE (and RIFX),
AIFF/AIFC (``FORM``), and MP4/M4A/MOV/3GP, whose top-level boxes each state
their own size. Other formats (MP3, Ogg, FLAC, raw streams) declare nothing.
"""

from __future__ import annotations

import os
import struct


def declared_size(fd: int, actual: int | None = None) -> int | None:
    """Bytes the container in open file ``fd`` declares (None: it declares nothing we read)."""
    actual = os.fstat(fd).st_size if actual is None else actual
    head = os.pread(fd, 12, 0)
    if len(head) < 12:
        return None
    if head[:4] in (b"RIFF", b"RIFX"):
        (size,) = struct.unpack("<I" if head[:4] == b"RIFF" else ">I", head[4:8])
        return None if size in (0, 0xFFFFFFFF) else size + 8  # 0 / -1: a streaming writer did not know
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        (size,) = struct.unpack(">I", head[4:8])
        return None if size in (0, 0xFFFFFFFF) else size + 8
    if head[4:8] == b"ftyp":
        return _iso_boxes_end(fd, actual)
    return None


def _iso_boxes_end(fd: int, actual: int) -> int | None:
    """Where the last top-level ISO-BMFF box says it ends (a box that runs past the end = incomplete)."""
    offset = 0
    for _ in range(10_000):
        if offset >= actual:
            return offset
        header = os.pread(fd, 16, offset)
        if len(header) < 8:
            return offset + 8
        size = struct.unpack(">I", header[:4])[0]
        if size == 1:
            if len(header) < 16:
                return offset + 16
            size = struct.unpack(">Q", header[8:16])[0]
        elif size == 0:
            return actual  # "to the end of the file"
        if size < 8:
            return None  # not a box structure we understand: claim nothing
        offset += size
    return None


def is_incomplete(fd: int) -> bool:
    """True when the header of open file ``fd`` declares more bytes than the file has."""
    actual = os.fstat(fd).st_size
    declared = declared_size(fd, actual)
    return declared is not None and declared > actual
