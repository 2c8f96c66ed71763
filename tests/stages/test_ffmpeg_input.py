"""What ffmpeg is given and how its failures are charged: real ffmpeg, real files.

- a file is read as that file, whatever its name says (``concat:``, ``subfile,``,
  an image-sequence pattern), with the demuxer its own bytes select
  (tests/stages/test_container_allowlist.py tries every kind, allowed and refused);
- the duration limit holds for decoded audio when the header gives no duration,
  and the job's temporary audio is bounded;
- a full disk, a crash or a filter the binary lacks is an EnvironmentFault (wait and
  retry); a recording ffmpeg cannot decode is a RejectedInput quoting ffmpeg's reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hushdrop.pipeline.audio import Audio, classify_failure, probe
from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.errors import EnvironmentFault, RejectedInput
from hushdrop.pipeline.job import Job
from hushdrop.pipeline.process import Processor
from hushdrop.pipeline.chain import Chain
from hushdrop.stages.normalize import Normalize, NormalizeOptions
from hushdrop.stages.resample import Resample
from tests.helpers import SPEECH_EN, fake_ffmpeg, ffmpeg, run_chain, tone, write_wav

pytestmark = pytest.mark.usefixtures("each_ffmpeg")


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(np.asarray(samples, dtype=np.float64)))
    return float(np.argmax(spectrum) * rate / len(samples))


def render(path: Path, rate: int, tmp_path: Path, stages=(), **audio) -> tuple[np.ndarray, int]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    job = Job(source=path)
    job.audio = Audio(source=path, workdir=work, source_rate=rate, **audio)
    Chain(list(stages)).run(job)
    samples, out_rate = job.audio.samples()
    return np.array(samples), out_rate


# ---------------------------------------------------------------------------
# a name is a name


@pytest.mark.parametrize("name", ["concat:a.wav|b.wav", "subfile,,start,0,end,0,,:a.wav"])
def test_a_name_that_looks_like_a_protocol_is_read_as_that_file(tmp_path, monkeypatch, name):
    rate = 16000
    monkeypatch.chdir(tmp_path)  # `hushdrop run 'concat:a.wav|b.wav'`: a relative name
    write_wav(tmp_path / "a.wav", tone(300, 3.0, rate), rate)
    write_wav(tmp_path / "b.wav", tone(500, 3.0, rate), rate)
    write_wav(tmp_path / name, tone(1000, 1.0, rate), rate)
    facts = probe(Path(name))
    assert facts.duration_s == pytest.approx(1.0, abs=0.01), "probe read other files than the one named"
    samples, out_rate = render(Path(name), rate, tmp_path)
    assert len(samples) == rate, "ffmpeg decoded other files than the one named"
    assert peak_hz(samples, out_rate) == pytest.approx(1000, abs=2)


@pytest.mark.parametrize(
    "name, text, what",
    [
        ("list.wav", "ffconcat version 1.0\nfile a.wav\nfile b.wav\n", "an ffconcat list"),
        ("list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\na.wav\n#EXTINF:3,\nb.wav\n#EXT-X-ENDLIST\n",
         "an M3U/HLS playlist"),
    ],
)
def test_a_list_of_other_files_is_refused_by_what_it_is(tmp_path, name, text, what):
    """Probe and render both refuse it as a bad recording that names what it is, before ffmpeg
    could open a.wav or b.wav."""
    write_wav(tmp_path / "a.wav", tone(300, 3.0, 16000), 16000)
    write_wav(tmp_path / "b.wav", tone(500, 3.0, 16000), 16000)
    (tmp_path / name).write_text(text)
    expected = f"{name} is not a recording ffmpeg can read: it is {what}, which names other files or streams"
    with pytest.raises(RejectedInput) as caught:
        probe(tmp_path / name)
    assert caught.value.message.startswith(expected)
    with pytest.raises(RejectedInput) as caught:
        render(tmp_path / name, 16000, tmp_path)
    assert caught.value.message.startswith(expected)


def test_a_recording_named_like_an_image_sequence_is_read_as_itself(tmp_path):
    """ffmpeg's own probing picks the image2 demuxer for ``take%03d.jpg`` over any content
    and reads take001.jpg, take002.jpg …; the demuxer the file's bytes select is forced."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-frames:v", "3", str(tmp_path / "take%03d.jpg"))
    path = tmp_path / "take%03d.jpg"
    path.write_bytes(write_wav(tmp_path / "take.wav", tone(1000, 1.0, 16000), 16000).read_bytes())
    assert probe(path).duration_s == pytest.approx(1.0, abs=0.01)
    samples, rate = render(path, 16000, tmp_path)
    assert len(samples) == rate and peak_hz(samples, rate) == pytest.approx(1000, abs=2)


# ---------------------------------------------------------------------------
# bounds that hold for what a file decodes to


def flac_without_duration(path: Path, seconds: float) -> Path:
    """A FLAC written to a pipe: ffmpeg cannot seek back to put the length into STREAMINFO."""
    with path.open("wb") as out:
        import subprocess

        from hushdrop.pipeline.audio import ffmpeg_exe

        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
             f"sine=frequency=440:sample_rate=16000:duration={seconds}", "-f", "flac", "pipe:1"],
            stdout=out, check=True,
        )
    return path


def test_flac_without_duration_is_held_to_the_limit_by_what_it_decodes_to(tmp_path):
    path = flac_without_duration(tmp_path / "long.flac", 30.0)
    assert probe(path).duration_s == 0.0, "the test file must not declare its length"
    with pytest.raises(RejectedInput) as caught:
        render(path, 16000, tmp_path, [Resample()], max_seconds=10.0)
    assert "max_duration_hours" in caught.value.message
    short = flac_without_duration(tmp_path / "short.flac", 5.0)
    samples, _ = render(short, 16000, tmp_path, [Resample()], max_seconds=10.0)
    assert len(samples) == 5 * 16000


def test_processor_refuses_a_recording_that_decodes_past_max_duration_hours(tmp_path):
    path = flac_without_duration(tmp_path / "long.flac", 30.0)
    settings = parse_config({"max_duration_hours": 10 / 3600, "profiles": {"default": {}}}, tmp_path / "config.yaml")
    processor = Processor(settings)
    try:
        with pytest.raises(RejectedInput) as caught:
            processor.run_chain(path, settings.profiles["default"])
    finally:
        processor.close()
    assert "max_duration_hours" in caught.value.message
    assert not any((settings.tmp_root).iterdir()), "the job's temporary audio must be removed"


def test_temporary_audio_past_max_temp_gb_is_refused(tmp_path):
    path = flac_without_duration(tmp_path / "long.flac", 30.0)  # 30 s at 16 kHz: 1.9 MB of float32
    with pytest.raises(RejectedInput) as caught:
        render(path, 16000, tmp_path, [Resample()], max_temp_bytes=1_000_000)
    assert "max_temp_gb" in caught.value.message
    assert not list((tmp_path / "work").iterdir()), "the partial render must be removed"


def test_a_nearly_full_temporary_disk_stops_the_render_and_waits(tmp_path):
    path = write_wav(tmp_path / "in.wav", tone(440, 3.0, 16000), 16000)
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    with pytest.raises(EnvironmentFault) as caught:  # as if the disk held less than the reserve
        render(path, 16000, tmp_path, min_free_bytes=free + 10**12)
    assert "free some space" in caught.value.message


# ---------------------------------------------------------------------------
# whose fault


def test_disk_full_while_decoding_is_an_environment_fault(tmp_path):
    path = write_wav(tmp_path / "in.wav", tone(440, 3.0, 16000), 16000)
    work = tmp_path / "work"
    work.mkdir()
    # the render's first output file, pointed at /dev/full: every write fails with ENOSPC
    (work / "audio-1.f32").symlink_to("/dev/full")
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(EnvironmentFault) as caught:
        render(path, 16000, tmp_path)
    message = caught.value.message
    assert "No space left on device" in message and "not the recording" in message
    assert "could not decode" not in message


def test_an_ffmpeg_killed_by_a_signal_is_an_environment_fault(tmp_path):
    path = write_wav(tmp_path / "in.wav", tone(440, 1.0, 16000), 16000)
    crashing = fake_ffmpeg(tmp_path, "kill -SEGV $$")
    with pytest.raises(EnvironmentFault) as caught:
        render(path, 16000, tmp_path, ffmpeg=crashing)
    assert "SIGSEGV" in caught.value.message


def test_an_ffmpeg_without_one_of_our_filters_is_an_environment_fault(tmp_path):
    path = write_wav(tmp_path / "in.wav", tone(440, 1.0, 48000) * 0.01, 48000)
    lacking = fake_ffmpeg(
        tmp_path,
        'case "$*" in *ebur128*) echo "[AVFilterGraph @ 0x55d0c0] No such filter: \'ebur128\'" >&2; exit 1;; esac\n'
        'exec "$REAL" "$@"',
    )
    with pytest.raises(EnvironmentFault) as caught:
        render(path, 48000, tmp_path, [Normalize(NormalizeOptions(raise_below_lufs=0.0))], ffmpeg=lacking)
    assert "No such filter: 'ebur128'" in caught.value.message
    assert "ffmpeg: bundled" in caught.value.message


def test_an_option_our_filter_lacks_is_found_by_running_the_filter_on_a_test_tone(tmp_path):
    """ffmpeg's words ('Invalid argument') do not say whose fault it is; our chain on a tone does."""
    path = write_wav(tmp_path / "in.wav", tone(440, 1.0, 48000) * 0.01, 48000)
    lacking = fake_ffmpeg(
        tmp_path,
        'case "$*" in *peak=sample*) echo "[Parsed_ebur128_1 @ 0x5601] Error applying option: Invalid argument" >&2; '
        'echo "Failed to inject frame into filter network: Invalid argument" >&2; exit 1;; esac\n'
        'exec "$REAL" "$@"',
    )
    with pytest.raises(EnvironmentFault) as caught:
        render(path, 48000, tmp_path, [Normalize(NormalizeOptions(raise_below_lufs=0.0))], ffmpeg=lacking)
    assert "Error applying option" in caught.value.message


def test_random_bytes_are_refused_before_ffmpeg_opens_them(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(100_000))
    for attempt in (lambda: probe(path), lambda: render(path, 16000, tmp_path)):
        with pytest.raises(RejectedInput) as caught:
            attempt()
        assert caught.value.message.startswith("noise.wav is not a recording ffmpeg can read: its first bytes match no")


def test_a_damaged_recording_is_rejected_with_ffmpegs_reason(tmp_path):
    path = tmp_path / "damaged.wav"
    path.write_bytes(b"RIFF\x00\x10\x00\x00WAVE" + np.random.default_rng(0).bytes(100_000))
    with pytest.raises(RejectedInput) as caught:
        probe(path)
    assert "Errno" not in caught.value.message and "1094995529" not in caught.value.message
    assert "no audio or video format" in caught.value.message
    with pytest.raises(RejectedInput) as caught:
        render(path, 16000, tmp_path)
    assert "Invalid data found when processing input" in caught.value.message


def test_a_cut_short_mp4_names_the_missing_moov_atom(tmp_path):
    whole = tmp_path / "whole.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=3", "-c:a", "aac", str(whole))
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(whole.read_bytes()[:20_000])
    with pytest.raises(RejectedInput) as caught:
        render(cut, 16000, tmp_path)
    assert "moov atom not found" in caught.value.message


def test_a_recording_that_is_fine_decodes(tmp_path):
    samples, rate = render(SPEECH_EN, 16000, tmp_path)
    assert rate == 16000 and len(samples) > 16000 * 10


@pytest.mark.parametrize(
    "stderr, expected",
    [
        ("[out#0/f32le @ 0x5601] Error submitting a packet to the muxer: No space left on device\n", EnvironmentFault),
        ("av_interleaved_write_frame(): Disk quota exceeded\n", EnvironmentFault),
        ("file:/var/lib/hushdrop/tmp/job-1/audio-1.f32: Read-only file system\n", EnvironmentFault),
        ("file:/var/lib/hushdrop/tmp/job-1/audio-1.f32: Permission denied\n", EnvironmentFault),
        ("Unrecognized option 'protocol_whitelist'.\nError splitting the argument list: Option not found\n", EnvironmentFault),
        ("[flac @ 0x55d1] invalid sync code\n[flac @ 0x55d1] decode_frame() failed\nError while decoding stream #0:0: Invalid data found when processing input\n", RejectedInput),
        ("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55b5] moov atom not found\nfile:/x/cut.m4a: Invalid data found when processing input\n", RejectedInput),
    ],
)
def test_ffmpegs_own_words_decide_whose_fault(stderr, expected):
    error = classify_failure("/usr/bin/ffmpeg", 1, stderr, "talk.m4a")
    assert type(error) is expected, error
    assert "@ 0x" not in error.message
    first_named = next(line for line in stderr.splitlines() if any(
        w in line for w in ("No space", "quota", "Read-only", "Permission", "Unrecognized", "invalid sync", "moov")))
    assert first_named.split("] ")[-1] in error.message


def test_a_file_with_two_audio_tracks_decodes_its_first_even_with_no_filter_pending(tmp_path):
    """A chain that asks for samples before any ffmpeg filter (dehum first) renders with an
    empty filter chain; the first audio track must still be the one decoded."""
    from hushdrop.stages.dehum import Dehum

    path = tmp_path / "two tracks.mkv"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2",
           "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=16000:duration=3",
           "-map", "0:a", "-map", "1:a", "-c:a", "pcm_s16le", str(path))
    samples, rate, _ = run_chain(path, 16000, [Dehum()], tmp_path)
    assert rate == 16000 and abs(len(samples) / rate - 2.0) < 0.05, "the first track (2 s), not the second (3 s)"
