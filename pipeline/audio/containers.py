"""What a file's container is, from its own bytes, and how long its header says it is.

**Which container.** ffmpeg picks a demuxer by probing, and some demuxers read other
files or streams than the one opened: ``concat``/``ffconcat`` lists, M3U/HLS and DASH
playlists, SDP descriptions, ``image2`` sequences. A recording is never one of those.
``container_of`` reads the first bytes of the already-open file and names its
container from an allow-list of what people record and drop (WAV, AIFF, MP3, AAC,
FLAC, Ogg, Matroska/WebM, MP4/M4A/MOV/3GP, AMR, CAF, WMA/ASF, AC-3, AU, AVI,
WavPack, APE, MPEG-PS/TS), or refuses the file as bad input, naming what it is when
it can (a playlist, a concat list, an image, a text file). Every later open forces
that container's demuxer, so ffmpeg's own probing never runs on a recording, and
none of the allowed demuxers opens another file.

**How long.** A recorder or a sync tool that writes a WAV header first and the
samples after it leaves, for a while, a file shorter than its header says. Such a
file is not complete, however still it sits, so the settle check waits longer for
it, and a job that had to take it anyway warns that it is truncated. Only
containers that state their total length are read: RIFF/WAVE (and RIFX), AIFF/AIFC
(``FORM``), and MP4/M4A/MOV/3GP, whose top-level boxes each state their own size.
Other formats (MP3, Ogg, FLAC, raw streams) declare nothing.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from hushdrop.pipeline.errors import DECODE_STAGE, RejectedInput


# ---------------------------------------------------------------------------
# which container: an allow-list, decided before any library opens the file


@dataclass(frozen=True)
class Container:
    """An allowed container: what a person calls it and the one ffmpeg demuxer that reads it."""

    kind: str
    demuxer: str


WAV = Container("WAV", "wav")
WAVE64 = Container("Wave64", "w64")
AIFF = Container("AIFF", "aiff")
MP3 = Container("MP3", "mp3")
AAC = Container("AAC (ADTS)", "aac")
FLAC = Container("FLAC", "flac")
OGG = Container("Ogg", "ogg")
MATROSKA = Container("Matroska/WebM", "matroska")
MP4 = Container("MP4/M4A/MOV/3GP", "mov")
AMR = Container("AMR", "amr")
CAF = Container("CAF", "caf")
ASF = Container("WMA/ASF", "asf")
AC3 = Container("AC-3", "ac3")
EAC3 = Container("E-AC-3", "eac3")
AU = Container("AU/SND", "au")
AVI = Container("AVI", "avi")
WAVPACK = Container("WavPack", "wv")
APE = Container("Monkey's Audio", "ape")
MPEG_PS = Container("MPEG program stream", "mpeg")
MPEG_TS = Container("MPEG transport stream", "mpegts")

ALLOWED: tuple[Container, ...] = (
    WAV, WAVE64, AIFF, MP3, AAC, FLAC, OGG, MATROSKA, MP4, AMR, CAF, ASF, AC3, EAC3, AU, AVI, WAVPACK, APE, MPEG_PS, MPEG_TS,
)

# ffmpeg options that go with a forced demuxer: an MP4/MOV may point at other files
# ("data references"); ffmpeg leaves them unread by default, and this says so outright
DEMUXER_OPTIONS: dict[str, dict[str, str]] = {"mov": {"enable_drefs": "0"}}

_HEAD_BYTES = 64 * 1024  # where a stream of MP3/AAC frames must begin, past any ID3 tags

_W64_RIFF = bytes.fromhex("726966662e91cf11a5d628db04c10000")
_ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot", b"uuid"}
_RIFF_FAMILY = (b"RIFF", b"RIFX", b"RF64", b"BW64")


def container_of(fd: int, name: str) -> Container:
    """The container of the open file ``fd`` (``name`` is for messages), or RejectedInput.

    Reads only through ``fd``; an OSError while reading is the caller's to charge.
    """
    offset = _after_id3_tags(fd)
    head = os.pread(fd, _HEAD_BYTES, offset)
    whole_file = offset + len(head) >= os.fstat(fd).st_size
    found = _by_signature(head)
    if found is None and _as_text(head) is None:  # text never holds MP3 or AAC frames
        found = _elementary_stream(head, whole_file)
    if found is not None:
        return found
    raise RejectedInput(DECODE_STAGE, f"{name} is not a recording ffmpeg can read: {_refusal(head)}")


def _after_id3_tags(fd: int) -> int:
    """Where the file's content starts after any ID3v2 tags (ffmpeg skips them for every format)."""
    offset = 0
    for _ in range(8):
        header = os.pread(fd, 10, offset)
        if len(header) < 10 or header[:3] != b"ID3" or header[3] == 0xFF or any(b >= 0x80 for b in header[6:10]):
            break
        size = (header[6] << 21) | (header[7] << 14) | (header[8] << 7) | header[9]
        offset += 10 + size + (10 if header[5] & 0x10 else 0)
    return offset


def _by_signature(head: bytes) -> Container | None:
    """A container whose first bytes say what it is."""
    four = head[:4]
    if four in _RIFF_FAMILY and head[8:12] == b"WAVE":
        return WAV
    if four == b"RIFF" and head[8:12] == b"AVI ":
        return AVI
    if head[:16] == _W64_RIFF:
        return WAVE64
    if four == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return AIFF
    if four == b"fLaC":
        return FLAC
    if four == b"OggS":
        return OGG
    if four == b"\x1a\x45\xdf\xa3":
        return MATROSKA
    if len(head) >= 8 and head[4:8] in _ISO_FIRST_BOXES:
        return MP4
    if head.startswith((b"#!AMR\n", b"#!AMR-WB\n")):
        return AMR
    if four == b"caff":
        return CAF
    if head[:16] == _ASF_HEADER:
        return ASF
    if four == b".snd":
        return AU
    if four == b"wvpk":
        return WAVPACK
    if four == b"MAC ":
        return APE
    if four == b"\x00\x00\x01\xba":
        return MPEG_PS
    if _transport_stream(head):
        return MPEG_TS
    if head[:2] == b"\x0b\x77" and len(head) >= 6:
        bsid = head[5] >> 3
        return AC3 if bsid <= 10 else EAC3 if bsid <= 16 else None
    return None


def _transport_stream(head: bytes) -> bool:
    """MPEG-TS: a sync byte every 188 bytes (192 with a 4-byte timecode first, as cameras write)."""
    for start, step in ((0, 188), (4, 192)):
        packets = min(5, (len(head) - start + step - 1) // step)
        if packets >= 3 and all(head[start + i * step] == 0x47 for i in range(packets)):
            return True
    return False


# MPEG audio: kbit/s by [version is MPEG-1][layer], index 1..14
_MPA_BITRATES = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPA_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits
_ADTS_RATES = 13  # sampling-frequency indexes 0..12 are defined
_FRAMES_IN_A_ROW = 3


def _mpeg_audio_frame(head: bytes, at: int) -> tuple[tuple, int] | None:
    """(kind of stream, frame length) of an MPEG audio layer I-III frame header at ``at``, or None."""
    if at + 4 > len(head) or head[at] != 0xFF or head[at + 1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (head[at + 1] >> 3) & 3, (head[at + 1] >> 1) & 3
    bitrate_index, rate_index, padding = head[at + 2] >> 4, (head[at + 2] >> 2) & 3, (head[at + 2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values; free-format streams (index 0) are too rare to chase
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _MPA_BITRATES[(mpeg1, layer)][bitrate_index - 1] * 1000
    rate = _MPA_RATES[version][rate_index]
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    else:
        length = (144 if mpeg1 or layer == 2 else 72) * bitrate // rate + padding
    return ("mpa", version, layer, rate), length


def _adts_frame(head: bytes, at: int) -> tuple[tuple, int] | None:
    """(kind of stream, frame length) of an AAC ADTS frame header at ``at``, or None."""
    if at + 7 > len(head) or head[at] != 0xFF or head[at + 1] & 0xF6 != 0xF0:
        return None
    rate_index = (head[at + 2] >> 2) & 0xF
    length = ((head[at + 3] & 3) << 11) | (head[at + 4] << 3) | (head[at + 5] >> 5)
    if rate_index >= _ADTS_RATES or length < 7:
        return None
    return ("adts", rate_index), length


def _elementary_stream(head: bytes, whole_file: bool) -> Container | None:
    """MP3 or AAC frames with no container around them, possibly after some junk.

    A frame counts when the next ones follow it where its length says, alike; a
    stream that ends (the file is cut short) after a frame counts too.
    """
    at = head.find(b"\xff")
    while 0 <= at < len(head) - 3:
        for reader, container in ((_mpeg_audio_frame, MP3), (_adts_frame, AAC)):
            if _frames_follow(head, at, reader, whole_file):
                return container
        at = head.find(b"\xff", at + 1)
    return None


def _frames_follow(head: bytes, at: int, reader, whole_file: bool) -> bool:
    """Whether frames read by ``reader`` start at ``at`` and follow one another, alike.

    A stream that starts right at ``at == 0`` may end after fewer frames when
    ``head`` is the whole file (a short or cut-off recording).
    """
    first = reader(head, at)
    if first is None:
        return False
    kind, length = first
    position = at + length
    for _ in range(_FRAMES_IN_A_ROW - 1):
        if position + 7 > len(head):
            return whole_file and at == 0
        frame = reader(head, position)
        if frame is None or frame[0] != kind:
            return False
        position += frame[1]
    return True


# what a refused file is, for its message: a person should see at once why
_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
    (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
)
# text that names other files or streams to read: (how it starts, what it is)
_LISTS = (
    ("ffconcat version", "an ffconcat list"),
    ("#extm3u", "an M3U/HLS playlist"),
    ("[playlist]", "a PLS playlist"),
    ("v=0", "an SDP session description"),
    ("<?wpl", "a WPL playlist"),
    ("<asx", "an ASX playlist"),
    ("<smil", "a SMIL playlist"),
)


def _refusal(head: bytes) -> str:
    """Why a refused file is no recording, as the end of its message: what it is, when that shows."""
    other = "; drop an audio or video file"
    for magic, image in _IMAGES:
        if head.startswith(magic):
            return f"it is a {image} image{other}"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return f"it is a WebP image{other}"
    if head.startswith(b"%PDF"):
        return f"it is a PDF document{other}"
    text = _as_text(head)
    if text is None:
        kinds = ", ".join(c.kind for c in ALLOWED)
        return (
            f"its first bytes match no audio or video format hushdrop takes ({kinds}); "
            f"check that it is a complete audio or video file"
        )
    start = text.lstrip().lower()
    what = next((what for prefix, what in _LISTS if start.startswith(prefix)), None)
    if what is None and ("\n#extinf" in start or "\n#ext-x-" in start):
        what = "an M3U/HLS playlist"
    if what is None and "<mpd" in start:
        what = "a DASH manifest"
    if what is not None:
        return f"it is {what}, which names other files or streams, and hushdrop reads only the file it is given"
    if start.startswith("<"):
        return f"it is an XML or HTML document{other}"
    return f"it is a text file{other}"


def _as_text(head: bytes) -> str | None:
    """``head`` as text when it is text (UTF-8, or UTF-16 after its byte-order mark), else None."""
    sample = head[:4096]
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = sample[: len(sample) // 2 * 2].decode("utf-16", errors="replace")
    else:
        if b"\x00" in sample:
            return None
        try:
            text = sample.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.reason != "unexpected end of data":  # a character cut by the end of the sample is fine
                return None
            text = sample[: exc.start].decode("utf-8")
    text = text.lstrip("\ufeff")
    unprintable = sum(1 for c in text if not (c.isprintable() or c in "\t\r\n\f\v") or c == "\ufffd")
    return text if text and unprintable <= len(text) // 50 else None


# ---------------------------------------------------------------------------
# how long: the byte length a container header declares


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
