"""Outputs: five formats, atomic commit, never overwriting an earlier result; readable subtitle
cues, language-named subtitles, file mode and group, Chinese script, version and times."""

from __future__ import annotations

import grp
import importlib.metadata
import json
import os
import re
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.watch.finish import commit_job
from hushdrop.pipeline.audio import AudioFacts
from hushdrop.pipeline.job import Event, Job, Segment, StageRecord, Transcript, Word
from hushdrop.pipeline.names import safe_name
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.outputs import NO_SPEECH, commit_outputs, plan_outputs, render_txt
from hushdrop.pipeline.process import Processor
from hushdrop.pipeline.script import apply_script
from tests.hostile import FORBIDDEN_ON_TERMINAL, HOSTILE_TEXTS, HTML_NAME, NEWLINE_NAME, TERMINAL_NAME, assert_outputs_inert

FORMATS = ["txt", "srt", "vtt", "json", "md"]


def sample_job(no_speech: bool = False) -> Job:
    job = Job(source=Path("/in/Team call 03.m4a"), profile="default")
    job.facts = AudioFacts("/in/Team call 03.m4a", 1234, "mov,mp4,m4a", "aac", 3725.5, 44100, 2)
    job.engine_info = {"engine": "whisper", "model": "base", "model_sha256": "ab" * 32}
    job.stages = [StageRecord("normalize", {"target_lufs": -23.0}, 0.0), StageRecord("transcribe", {"beam_size": 5}, 12.5)]
    segments = [] if no_speech else [
        Segment(1.0, 3.5, "Hello there.", [Word(1.0, 1.6, "Hello", 0.9), Word(1.7, 3.5, "there.", 0.8)]),
        Segment(3661.25, 3662.0, "Goodbye.", []),
    ]
    job.transcript = Transcript("en", 0.97, segments, [Event(3.5, 3661.25, "silence", "vad")], no_speech=no_speech)
    return job


def test_all_formats_written_with_content(tmp_path):
    paths = commit_outputs(sample_job(), tmp_path, FORMATS)
    assert [p.name for p in paths] == [f"Team call 03.{f}" for f in FORMATS]
    text = {p.suffix[1:]: p.read_text() for p in paths}
    assert text["txt"] == "[00:00:01] Hello there.\n[01:01:01] Goodbye.\n"
    assert "1\n00:00:01,000 --> 00:00:03,500\nHello there.\n" in text["srt"]
    # a 0.75 s cue is held to 0.8 s (nothing follows it before the end of the recording)
    assert "2\n01:01:01,250 --> 01:01:02,050\nGoodbye." in text["srt"]
    assert text["vtt"].startswith("WEBVTT\n") and "01:01:01.250 --> 01:01:02.050" in text["vtt"]
    record = json.loads(text["json"])
    assert record["language"] == "en" and record["language_probability"] == 0.97
    assert record["audio"]["duration_s"] == 3725.5 and record["audio"]["channels"] == 2
    assert record["audio"]["container"] == "mov,mp4,m4a" and record["audio"]["codec"] == "aac"
    assert "path" not in record["audio"]  # where the original lived is nobody's business
    assert record["engine"]["model_sha256"] == "ab" * 32
    assert [s["name"] for s in record["stages"]] == ["normalize", "transcribe"]
    assert record["segments"][0]["words"][0] == {"start": 1.0, "end": 1.6, "text": "Hello", "probability": 0.9}
    assert record["events"][0]["kind"] == "silence"
    assert "# Team call 03.m4a" in text["md"] and "**Duration:** 01:02:05" in text["md"]
    assert "*[silence, 3658 s]*" in text["md"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_name_collision_never_overwrites(tmp_path):
    first = commit_outputs(sample_job(), tmp_path, FORMATS)
    before = {p: p.read_bytes() for p in first}
    (tmp_path / "Team call 03 (2).srt").write_text("someone else's file")
    second = commit_outputs(sample_job(), tmp_path, FORMATS)
    assert {p: p.read_bytes() for p in first} == before
    assert [p.name for p in second] == [f"Team call 03 (3).{f}" for f in FORMATS]
    assert (tmp_path / "Team call 03 (2).srt").read_text() == "someone else's file"


def test_no_speech_is_said_not_invented(tmp_path):
    paths = {p.suffix[1:]: p for p in commit_outputs(sample_job(no_speech=True), tmp_path, FORMATS)}
    assert paths["txt"].read_text() == NO_SPEECH + "\n"
    assert json.loads(paths["json"].read_text())["no_speech"] is True
    assert NO_SPEECH in paths["vtt"].read_text() and NO_SPEECH in paths["md"].read_text()


def test_outputs_are_hard_linked_from_fsynced_temp_files(tmp_path, monkeypatch):
    # record, in order, what the commit fsyncs and links (the calls still happen for real)
    events: list[tuple] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync-dir" if stat.S_ISDIR(st.st_mode) else "fsync", st.st_ino, st.st_size))
        return real_fsync(fd)

    def link(src, dst, *args, **kwargs):
        events.append(("link", Path(src).name, Path(dst).name, os.lstat(src).st_ino))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    job = sample_job()
    paths = commit_outputs(job, tmp_path, ["txt", "json"])
    monkeypatch.undo()

    links = [e for e in events if e[0] == "link"]
    assert [e[2] for e in links] == ["Team call 03.txt", "Team call 03.json"]
    for (_, temp, final, inode), path in zip(links, paths):
        assert temp.startswith(".hushdrop-") and temp.endswith(".tmp")  # published from a hidden temp name
        st = os.stat(path)
        assert st.st_ino == inode and st.st_nlink == 1  # the same inode, its temp name gone
        synced = [e for e in events[: events.index(links[0])] if e[0] == "fsync" and e[1] == inode]
        assert synced and synced[-1][2] == st.st_size  # fsynced whole before any name was published
    assert any(e[0] == "fsync-dir" for e in events[events.index(links[-1]):])  # then the folder
    assert paths[0].read_text() == render_txt(job) and json.loads(paths[1].read_text())["text"] == job.transcript.text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------- subtitles people can use

LONG = (
    "So the first thing we looked at this quarter was the onboarding flow, and honestly it was worse "
    "than we thought because people kept dropping off at the second screen where we ask for the billing "
    "address before they have even seen the product, which nobody really wanted. We moved it to the end "
    "and the completion rate went from about forty percent to nearly seventy percent in two weeks."
)


def srt_cues(text: str) -> list[tuple[float, float, list[str]]]:
    def seconds(stamp: str) -> float:
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = []
    for block in text.strip().split("\n\n"):
        number, times, *lines = block.split("\n")
        start, end = times.split(" --> ")
        cues.append((seconds(start), seconds(end), lines))
    return cues


def long_segment_job() -> Job:
    pieces = LONG.split()
    step = 40.0 / len(pieces)
    words = [Word(round(5 + i * step, 3), round(5 + (i + 0.8) * step, 3), w, 0.9) for i, w in enumerate(pieces)]
    job = Job(source=Path("/in/standup.wav"))
    job.facts = AudioFacts("/in/standup.wav", 1, "wav", "pcm_s16le", 50.0, 16000, 1)
    job.transcript = Transcript("en", 0.99, [Segment(5.0, 45.0, LONG, words, language="en")])
    return job


def test_a_40_second_segment_becomes_readable_subtitle_cues_while_txt_keeps_it_whole(tmp_path):
    paths = {p.suffix[1:]: p for p in commit_outputs(long_segment_job(), tmp_path, FORMATS)}
    assert len(LONG) > 292
    cues = srt_cues(paths["srt"].read_text())
    assert len(cues) >= 5
    for start, end, lines in cues:
        assert 1 <= len(lines) <= 2 and all(len(line) <= 42 for line in lines), lines
        assert end - start <= 7.0, (start, end, lines)
    assert " ".join(" ".join(lines) for _, _, lines in cues) == LONG
    assert cues[0][0] == 5.0 and all(a[1] <= b[0] for a, b in zip(cues, cues[1:]))
    vtt = paths["vtt"].read_text()
    assert vtt.count(" --> ") == len(cues)
    # txt and md keep the segment whole, on one line
    assert paths["txt"].read_text() == f"[00:00:05] {LONG}\n"
    assert f"**[00:00:05]** {LONG}" in paths["md"].read_text()


def test_subtitles_can_carry_the_language_in_their_names(tmp_path):
    first = commit_outputs(sample_job(), tmp_path, FORMATS, subtitle_names="language")
    assert [p.name for p in first] == [
        "Team call 03.txt", "Team call 03.en.srt", "Team call 03.en.vtt", "Team call 03.json", "Team call 03.md",
    ]
    # a second recording of the same name: the whole set moves on to "(2)", subtitles included
    (tmp_path / "Team call 03 (2).en.srt").write_text("a subtitle someone put here")
    second = commit_outputs(sample_job(), tmp_path, FORMATS, subtitle_names="language")
    assert [p.name for p in second][1] == "Team call 03 (3).en.srt"
    assert (tmp_path / "Team call 03 (2).en.srt").read_text() == "a subtitle someone put here"
    # no language known (nothing was said and none was set): plain names
    silent = sample_job(no_speech=True)
    silent.transcript.language = None
    silent = commit_outputs(silent, tmp_path / "silent", ["srt"], subtitle_names="language")
    assert [p.name for p in silent] == ["Team call 03.srt"]


def test_planned_outputs_match_what_is_committed(tmp_path):
    job = sample_job()
    (tmp_path / "Team call 03.en.srt").write_text("someone else's")
    planned = plan_outputs(job, tmp_path, FORMATS, subtitle_names="language").paths
    written = commit_outputs(job, tmp_path, FORMATS, subtitle_names="language")
    assert planned == written and written[0].name == "Team call 03 (2).txt"


# ---------------------------------------------------------------- mode and group, for a share


def other_group() -> grp.struct_group:
    """A group this process may give files to, other than its own where it can (root: any)."""
    mine = os.getegid()
    allowed = [g for g in grp.getgrall() if os.geteuid() == 0 or g.gr_gid in os.getgroups()]
    return next((g for g in allowed if g.gr_gid != mine), grp.getgrgid(mine))


def test_outputs_get_mode_0640_by_default(tmp_path):
    for path in commit_outputs(sample_job(), tmp_path, FORMATS):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, path


def test_outputs_get_the_configured_mode_and_group(tmp_path):
    group = other_group()
    for path in commit_outputs(sample_job(), tmp_path, FORMATS, mode=0o664, group=group.gr_name):
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o664 and st.st_gid == group.gr_gid, path


def test_output_mode_and_group_are_checked_when_the_config_loads(tmp_path):
    source = tmp_path / "config.yaml"
    assert parse_config({"output_mode": "644"}, source).output_mode_bits == 0o644
    assert parse_config({}, source).output_mode == "0640"
    # YAML reads an unquoted 0640 as the number 416: refused, with the fix in the message
    with pytest.raises(ConfigError, match=r'output_mode: write the mode as a quoted octal string'):
        parse_config(yaml.safe_load("output_mode: 0640"), source)
    for bad in ("0999", "4755", "rw-r-----", "0044"):
        with pytest.raises(ConfigError, match="output_mode"):
            parse_config({"output_mode": bad}, source)
    with pytest.raises(ConfigError, match="output_group: no group named 'no-such-group-hd'"):
        parse_config({"output_group": "no-such-group-hd"}, source)
    assert parse_config({"output_group": other_group().gr_name}, source).output_group == other_group().gr_name


# ---------------------------------------------------------------- the record: version and times


def test_json_records_version_and_utc_times(tmp_path):
    job = sample_job()
    job.received_at = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    before = time.time()
    paths = {p.suffix[1:]: p for p in commit_outputs(job, tmp_path, FORMATS)}
    after = time.time()
    record = json.loads(paths["json"].read_text())
    assert record["hushdrop_version"] == importlib.metadata.version("hushdrop")
    assert record["received_at"] == "2023-11-14T22:13:20Z"
    finished = datetime.strptime(record["finished_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    assert int(before) <= finished <= after


# ---------------------------------------------------------------- Chinese script in the outputs


def test_script_conversion_reaches_every_output_and_json_keeps_the_raw_text(tmp_path):
    job = Job(source=Path("/in/會議.wav"), profile="meetings-zh")
    raw = "這是一個測試，我們下週開會。 [音樂]"
    job.transcript = Transcript("zh", 0.9, [
        Segment(0.0, 4.0, raw, [Word(0.0, 2.0, "這是一個測試，"), Word(2.0, 4.0, "我們下週開會。")], language="zh"),
        Segment(4.0, 6.0, "And in English.", [Word(4.0, 6.0, "And in English.")], language="en"),
    ])
    apply_script(job, "simplified")
    paths = {p.suffix[1:]: p for p in commit_outputs(job, tmp_path, FORMATS)}
    assert paths["txt"].read_text() == "[00:00:00] 这是一个测试，我们下周开会。 [音樂]\n[00:00:04] And in English.\n"
    assert "这是一个测试，" in paths["srt"].read_text() and "這" not in paths["srt"].read_text()
    record = json.loads(paths["json"].read_text())
    assert record["script"] == "simplified"
    zh, en = record["segments"]
    assert zh["text"] == "这是一个测试，我们下周开会。 [音樂]" and zh["raw_text"] == raw
    assert [w["text"] for w in zh["words"]] == ["这是一个测试，", "我们下周开会。"]
    assert en["text"] == "And in English." and en["raw_text"] is None  # not Chinese: untouched


# ---------------------------------------------------------------- hushdrop run and watch mode


def test_hushdrop_run_writes_readable_language_named_shareable_outputs(tmp_path, speech_copy, processor_session):
    settings = parse_config(
        {"output_mode": "0644", "profiles": {"default": {"language": "en", "subtitle_names": "language"}}},
        tmp_path / "config.yaml",
    )
    processor = Processor(settings)  # the engine is the process's cached one: no second model load
    try:
        started = time.time()
        outcome = processor.process(speech_copy, settings.profiles["default"])
    finally:
        processor.close()
    names = sorted(p.name for p in outcome.outputs)
    assert names == ["speech_en.en.srt", "speech_en.en.vtt", "speech_en.json", "speech_en.md", "speech_en.txt"]
    for path in outcome.outputs:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    srt = next(p for p in outcome.outputs if p.name.endswith(".srt"))
    cues = srt_cues(srt.read_text())
    assert cues
    for start, end, lines in cues:
        assert 1 <= len(lines) <= 2 and all(len(line) <= 42 for line in lines) and end - start <= 7.0
    spoken = " ".join(s.text for s in outcome.job.transcript.segments)
    assert " ".join(" ".join(lines) for _, _, lines in cues) == spoken
    record = json.loads(next(p for p in outcome.outputs if p.suffix == ".json").read_text())
    assert record["hushdrop_version"] and record["script"] == "keep"
    assert int(started) <= outcome.job.received_at <= outcome.job.finished_at
    assert record["received_at"] <= record["finished_at"]


def test_watch_mode_commit_uses_the_ledger_time_mode_group_and_names(tmp_path):
    group = other_group()
    settings = parse_config(
        {"output_mode": "0660", "output_group": group.gr_name,
         "profiles": {"default": {"subtitle_names": "language"}}},
        tmp_path / "config.yaml",
    )
    settings.workdir.mkdir(parents=True)
    ledger = Ledger(settings.ledger_path)
    try:
        job_id = ledger.add(profile="default", name="Team call 03.m4a", inbox_path=settings.inbox / "Team call 03.m4a",
                            spool_path=settings.workdir / "spool" / "x", size=1, mtime_ns=1)
        ledger.transition(job_id, State.CLAIMED)
        row = ledger.transition(job_id, State.PROCESSING)
        job = sample_job()
        job.transcript.language = "zh"
        row = commit_job(settings, ledger, row, job)
        assert row.state == State.DONE
        names = [p.name for p in row.outputs]
        assert names == [f"Team call 03{s}" for s in (".txt", ".zh.srt", ".zh.vtt", ".json", ".md")]
        for path in row.outputs:
            st = os.stat(path)
            assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == group.gr_gid
        record = json.loads(next(p for p in row.outputs if p.suffix == ".json").read_text())
        created = datetime.fromtimestamp(row.created_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert record["received_at"] == created and record["source"]["name"] == "Team call 03.m4a"
    finally:
        ledger.close()


# ---------------------------------------------------------------- hostile names and text


def hostile_job(name: str, timestamps: bool = True) -> Job:
    """A job named ``name`` whose segments hold control bytes, timing arrows, blank lines and markup."""
    job = Job(source=Path(name), profile="default", show_timestamps=timestamps)
    job.facts = AudioFacts(name, 1, "wav", "pcm_s16le", 30.0, 16000, 1)
    job.transcript = Transcript("en", 0.9, [
        Segment(1.0 + 8 * i, 6.0 + 8 * i, text, [Word(1.0 + 8 * i + k, 1.5 + 8 * i + k, w, 0.9) for k, w in enumerate(text.split()[:5])])
        for i, text in enumerate(HOSTILE_TEXTS)
    ])
    return job


@pytest.mark.parametrize("name", [HTML_NAME, TERMINAL_NAME, NEWLINE_NAME])
@pytest.mark.parametrize("timestamps", [True, False])
def test_hostile_names_and_text_stay_plain_text_in_every_format(tmp_path, name, timestamps):
    paths = commit_outputs(hostile_job(name, timestamps), tmp_path, FORMATS)
    files = {p.suffix[1:]: p for p in paths}
    assert_outputs_inert(files, name, list(HOSTILE_TEXTS))
    # the files' own names (and a quarantine copy's) read as they are: no control, no bidi override
    assert not FORBIDDEN_ON_TERMINAL.search("".join(p.name for p in paths) + safe_name(name))
    md = files["md"].read_text()
    assert "<img" not in md and "<script" not in md and not re.search(r"(?<!\\)\]\(", md)  # no raw tag, no link
    txt = files["txt"].read_text()
    assert "Alpha beta[2J gamma delta." in txt and "\x00" not in txt and "\x1b" not in txt
    srt = files["srt"].read_text()
    # the forged timing line stays text of its cue; --> reads as an arrow
    assert "three 00:00:05,000 → 00:00:09,000" in srt.replace("\n", " ")
    vtt = files["vtt"].read_text()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp;" in vtt and "one --&gt; two" in vtt
    assert json.loads(files["json"].read_text())["source"]["name"] == name  # the JSON keeps the name exactly


def test_a_markdown_title_shows_an_undecodable_name_by_its_bytes(tmp_path):
    name = os.fsdecode(b"caf\xe9 <b>call_03 _x_.wav")
    md = {p.suffix[1:]: p for p in commit_outputs(hostile_job(name), tmp_path, FORMATS)}["md"].read_text()
    assert md.startswith("# caf\\\\xe9 &lt;b&gt;call_03 \\_x\\_.wav\n")  # renders as: caf\xe9 <b>call_03 _x_.wav


@pytest.mark.parametrize("hidden", ["\u2028", "\u2029", "\u200b", "\ufeff", "\u00ad", "\u202e", "\u2066"])
def test_a_name_with_an_invisible_or_reordering_character_gets_a_visible_safe_name(hidden):
    name = f"meeting{hidden}notes.wav"
    safe = safe_name(name)
    assert hidden not in safe and safe.startswith("meeting_notes~") and safe.endswith(".wav"), safe


def test_joiners_that_shape_persian_and_emoji_names_are_kept():
    for name in ("می\u200cخواهم.wav", "family\U0001F468\u200d\U0001F469.wav"):
        assert safe_name(name) == name


def test_stored_text_drops_bidi_overrides_but_keeps_the_marks_right_to_left_text_uses():
    from hushdrop.pipeline.text import stored_text

    assert stored_text("invoice\u202eexe.txt") == "invoiceexe.txt"
    assert stored_text("a\u2067b\u2069c") == "abc"
    assert stored_text("שלום\u200f abc \u200e") == "שלום\u200f abc \u200e"
