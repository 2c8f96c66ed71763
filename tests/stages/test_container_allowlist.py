"""A file's container is decided from its own bytes, from an allow-list, before ffmpeg opens it.

- every kind of recording people drop is named, probed and decoded, with each ffmpeg
  present (the kinds are made by real ffmpeg; the bundled one has every encoder);
- lists that name other files (ffconcat, M3U/HLS, PLS, DASH), SDP descriptions,
  images, image-sequence names and text are refused as bad recordings (RejectedInput,
  never EnvironmentFault), and neither the probe nor the render opens a file they name:
  a FIFO named by a list would block whoever opened it, so those tests are bounded.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from hushdrop.pipeline.audio import Audio, bundled_ffmpeg, probe
from hushdrop.pipeline.audio.containers import ALLOWED, APE, container_of
from hushdrop.pipeline.errors import RejectedInput
from tests.helpers import tone, write_wav

pytestmark = pytest.mark.timeout(300)

SECONDS = 2.0
TONE = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={SECONDS}"]
# (file name, ffmpeg output options, the demuxer its bytes must select)
KINDS = [
    ("pcm.wav", [], "wav"),
    ("rf64.wav", ["-rf64", "always"], "wav"),
    ("sony.w64", [], "w64"),
    ("take.aiff", [], "aiff"),
    ("take.aifc", ["-c:a", "pcm_s16le", "-f", "aiff"], "aiff"),
    ("tagged.mp3", [], "mp3"),
    ("bare.mp3", ["-id3v2_version", "0", "-write_xing", "0"], "mp3"),  # frames only, no header at all
    ("layer2.mp2", ["-c:a", "mp2"], "mp3"),
    ("adts.aac", ["-f", "adts"], "aac"),
    ("take.flac", [], "flac"),
    ("vorbis.ogg", ["-c:a", "libvorbis"], "ogg"),
    ("voice.opus", ["-c:a", "libopus"], "ogg"),
    ("browser.webm", ["-c:a", "libopus"], "matroska"),
    ("audio.mka", [], "matroska"),
    ("memo.m4a", ["-c:a", "aac"], "mov"),
    ("clip.mp4", ["-c:a", "aac"], "mov"),
    ("clip.mov", [], "mov"),
    ("phone.3gp", ["-ar", "8000", "-ac", "1", "-c:a", "libopencore_amrnb"], "mov"),
    ("phone.amr", ["-ar", "8000", "-ac", "1", "-c:a", "libopencore_amrnb"], "amr"),
    ("apple.caf", [], "caf"),
    ("windows.wma", ["-c:a", "wmav2"], "asf"),
    ("dolby.ac3", [], "ac3"),
    ("dolby.eac3", [], "eac3"),
    ("sun.au", [], "au"),
    ("old.avi", [], "avi"),
    ("pack.wv", [], "wv"),
    ("dvd.mpg", ["-c:a", "mp2", "-f", "mpeg"], "mpeg"),
    ("camera.ts", ["-c:a", "mp2"], "mpegts"),
    ("camera.m2ts", ["-c:a", "mp2", "-f", "mpegts", "-mpegts_m2ts_mode", "1"], "mpegts"),
]
# MP3 and AAC frames after bytes that belong to no frame (a recorder's padding, a cut copy)
AFTER_JUNK = [("junk-then.mp3", "bare.mp3", "mp3"), ("junk-then.aac", "adts.aac", "aac")]


def make(*args: str) -> None:
    """Run the bundled ffmpeg, which has every encoder these kinds need (Debian's lacks AMR)."""
    proc = subprocess.run([bundled_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("kinds")
    paths = {}
    for name, options, _ in KINDS:
        make(*TONE, *options, str(folder / name))
        paths[name] = folder / name
    junk = bytes(range(1, 255)) * 8  # no 0xFF: nothing in it looks like the start of a frame
    for name, source, _ in AFTER_JUNK:
        (folder / name).write_bytes(junk + paths[source].read_bytes())
        paths[name] = folder / name
    return paths


def kind_of(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return container_of(fd, path.name)
    finally:
        os.close(fd)


def render(path: Path, tmp_path: Path) -> tuple[np.ndarray, int]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    audio = Audio(source=path, workdir=work, source_rate=16000, sample_rate=16000)
    samples, rate = audio.samples()
    return np.array(samples), rate


def test_every_allowed_container_has_a_kind_here():
    tested = {demuxer for _, _, demuxer in KINDS}
    assert tested == {c.demuxer for c in ALLOWED} - {APE.demuxer}  # ffmpeg cannot write Monkey's Audio


@pytest.mark.usefixtures("each_ffmpeg")
@pytest.mark.parametrize("name, demuxer", [(n, d) for n, _, d in KINDS] + [(n, d) for n, _, d in AFTER_JUNK])
def test_each_allowed_kind_is_named_probed_and_decoded(made, tmp_path, name, demuxer):
    path = made[name]
    assert kind_of(path).demuxer == demuxer
    facts = probe(path)
    assert facts.duration_s == pytest.approx(SECONDS, abs=0.15) and facts.channels >= 1
    samples, rate = render(path, tmp_path)
    assert rate == 16000 and len(samples) / rate == pytest.approx(SECONDS, abs=0.15)
    assert np.abs(samples).max() > 0.1, "the tone, not silence"


def test_monkeys_audio_is_named_by_its_signature(tmp_path):
    path = tmp_path / "take.ape"
    path.write_bytes(b"MAC " + bytes(200))
    assert kind_of(path) == APE


# ---------------------------------------------------------------------------
# refused kinds: nothing they name is opened


def bounded(call: Callable[[], Any], seconds: float = 20.0, fifo: Path | None = None) -> Any:
    """``call()``'s result (or its exception), failing the test if it has not returned within ``seconds``.

    A call stuck opening ``fifo`` is released (a writer opens and closes it), so no
    thread or ffmpeg is left blocked behind the test.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(30)
        pytest.fail(f"still running after {seconds:g} s: it opened the FIFO the list names")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def refused(path: Path, tmp_path: Path, fifo: Path | None = None) -> str:
    """The message with which both the probe and the render refuse ``path`` as a bad recording."""
    with pytest.raises(RejectedInput) as by_probe:
        bounded(lambda: probe(path), fifo=fifo)
    with pytest.raises(RejectedInput) as by_render:
        bounded(lambda: render(path, tmp_path), fifo=fifo)
    assert by_probe.value.message == by_render.value.message
    assert not list((tmp_path / "work").iterdir()), "the render must not have run ffmpeg"
    return by_probe.value.message


@pytest.mark.usefixtures("each_ffmpeg")
def test_an_ffconcat_list_naming_a_fifo_is_refused_at_once(tmp_path, monkeypatch):
    """The attack of issue 19: the worker blocked in open() on the FIFO, and the queue behind it."""
    monkeypatch.chdir(tmp_path)  # ffmpeg resolved the entry against the current folder
    (tmp_path / "inbox").mkdir()
    fifo = tmp_path / "inbox" / "x.fifo"
    os.mkfifo(fifo)
    hang = tmp_path / "inbox" / "hang.wav"
    hang.write_text("ffconcat version 1.0\nfile inbox/x.fifo\n")
    message = refused(hang, tmp_path, fifo=fifo)
    assert message.startswith("hang.wav is not a recording ffmpeg can read: it is an ffconcat list")


@pytest.mark.usefixtures("each_ffmpeg")
@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
def test_an_ffconcat_list_naming_a_readable_file_is_a_bad_recording_not_a_fault(tmp_path, monkeypatch, absolute):
    """A relative entry was read and transcribed; an absolute one failed with EPERM, which was
    retried for hours as an environment fault. Both are the recording's fault."""
    monkeypatch.chdir(tmp_path)
    secret = write_wav(tmp_path / "secret.wav", tone(300, 3.0, 16000), 16000)
    entry = secret if absolute else secret.name
    listing = tmp_path / "list.wav"
    listing.write_text(f"ffconcat version 1.0\nfile {entry}\n")
    message = refused(listing, tmp_path)
    assert "it is an ffconcat list" in message and "reads only the file it is given" in message


PLAYLISTS = {
    "hls.m3u8": ("#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\na.wav\n#EXT-X-ENDLIST\n", "an M3U/HLS playlist"),
    "list.m3u": ("\ufeff# my favourites\n#EXTINF:3,A\na.wav\n", "an M3U/HLS playlist"),
    "radio.pls": ("[playlist]\nFile1=a.wav\nNumberOfEntries=1\n", "a PLS playlist"),
    "stream.sdp": (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=talk\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
        "an SDP session description",
    ),
    "dash.mpd": ('<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period/></MPD>\n', "a DASH manifest"),
}


@pytest.mark.parametrize("name", PLAYLISTS)
def test_a_playlist_or_stream_description_is_refused_by_name(tmp_path, name):
    write_wav(tmp_path / "a.wav", tone(300, 3.0, 16000), 16000)
    text, what = PLAYLISTS[name]
    path = tmp_path / name
    path.write_text(text)
    message = refused(path, tmp_path)
    assert message == f"{name} is not a recording ffmpeg can read: it is {what}, which names other files or streams, and hushdrop reads only the file it is given"


def test_a_concat_list_behind_an_id3_tag_is_refused(tmp_path):
    """ffmpeg skips an ID3 tag before probing any format; so does the allow-list."""
    path = tmp_path / "tagged.mp3"
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x05hello" + b"ffconcat version 1.0\nfile a.wav\n")
    assert "it is an ffconcat list" in refused(path, tmp_path)


@pytest.mark.parametrize("suffix, kind", [("png", "PNG"), ("jpg", "JPEG"), ("gif", "GIF"), ("bmp", "BMP"), ("tiff", "TIFF")])
def test_an_image_is_refused_as_an_image(tmp_path, suffix, kind):
    made = tmp_path / f"still.{suffix}"
    make("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(made))
    path = tmp_path / "still.wav"
    path.write_bytes(made.read_bytes())
    assert refused(path, tmp_path) == f"still.wav is not a recording ffmpeg can read: it is a {kind} image; drop an audio or video file"


@pytest.mark.usefixtures("each_ffmpeg")
def test_an_image_sequence_name_is_refused_when_the_file_is_an_image(tmp_path):
    """``frame%03d.wav`` holding a JPEG, next to frame001.wav …: refused as the image it is."""
    make("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-frames:v", "3", str(tmp_path / "frame%03d.jpg"))
    for index in (1, 2, 3):
        (tmp_path / f"frame{index:03d}.jpg").rename(tmp_path / f"frame{index:03d}.wav")
    path = tmp_path / "frame%03d.wav"
    path.write_bytes((tmp_path / "frame001.wav").read_bytes())
    assert "it is a JPEG image" in refused(path, tmp_path)


@pytest.mark.parametrize(
    "data", ["Meeting notes\n- budget\n- hiring\n".encode(), "Grüße, 你好\n".encode() * 400, "hello, world\n".encode("utf-16")],
    ids=["ascii", "utf-8", "utf-16"],
)
def test_a_text_file_is_refused_as_text(tmp_path, data):
    path = tmp_path / "notes.wav"
    path.write_bytes(data)
    assert refused(path, tmp_path) == "notes.wav is not a recording ffmpeg can read: it is a text file; drop an audio or video file"


def test_bytes_of_no_known_format_are_refused_naming_the_formats_read(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(100_000))
    message = refused(path, tmp_path)
    assert "its first bytes match no audio or video format hushdrop takes" in message and "WAV" in message and "MP4/M4A/MOV/3GP" in message


def test_an_ffmpeg_without_the_demuxer_of_an_allowed_container_fails_the_check(tmp_path):
    """Each recording is read with its container's demuxer forced: a binary that lacks one
    would fail every recording of that kind, so the start-up check says so first."""
    from hushdrop.pipeline.ffmpeg_check import check_ffmpeg
    from tests.helpers import fake_ffmpeg

    lacking = fake_ffmpeg(
        tmp_path, 'case "$*" in *-demuxers*) "$REAL" "$@" | grep -v -E " (caf|amr) "; exit 0;; esac\nexec "$REAL" "$@"'
    )
    [problem] = check_ffmpeg(lacking)
    assert "cannot read every container hushdrop takes: it has no demuxer for AMR (`amr`), CAF (`caf`)" in problem
    assert check_ffmpeg(bundled_ffmpeg()) == []
