"""The page's routes on a real ledger and real outputs: queue, results, downloads, edits,
search, retry and delete, health and metrics, languages — and no route that takes a name
ever reads outside what the ledger lists."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from hushdrop.pipeline.config import OriginalsPolicy
from hushdrop.pipeline.retention import Action, Disposal
from hushdrop.pipeline.watch.finish import quarantine_job
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.web.render import STATIC, TEMPLATES
from tests.web.conftest import add_done_job, csrf_of, sample_job, unsafe_headers


def outputs(settings, stem="meeting") -> dict[str, Path]:
    return {p.suffix.lstrip("."): p for p in (settings.outbox / "default").glob(f"{stem}.*")}


# -- pages and languages ---------------------------------------------------------------------


def test_the_page_speaks_english_or_chinese_by_accept_language(client):
    english = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}).text
    assert "Add recordings" in english and 'lang="en"' in english
    chinese = client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).text
    assert "添加录音" in chinese and 'lang="zh-CN"' in chinese
    weighted = client.get("/", headers={"Accept-Language": "fr;q=1, en;q=0.5, zh;q=0.8"}).text
    assert "添加录音" in weighted


def test_the_language_switch_sticks(client):
    switched = client.get("/lang/zh")
    assert switched.status_code == 303 and switched.headers["location"] == "/"
    assert "添加录音" in client.get("/", headers={"Accept-Language": "en"}).text
    client.get("/lang/en")
    assert "Add recordings" in client.get("/", headers={"Accept-Language": "zh"}).text
    assert client.get("/lang/../../etc").status_code == 404
    assert client.get("/lang/fr").status_code == 404


def test_nothing_on_the_page_comes_from_anywhere_else():
    """No CDN, no web font, no outside URL in any template, script or style."""
    for path in [*TEMPLATES.iterdir(), *STATIC.iterdir()]:
        text = path.read_text()
        for attr in re.findall(r'(?:src|href|action)="([^"]*)"', text):
            assert attr.startswith(("/", "#", "{{")) and not attr.startswith("//"), (path.name, attr)
        assert "@import" not in text and "@font-face" not in text and "url(" not in text, path.name
        assert not re.search(r"fetch\(\s*['\"]https?:", text), path.name
    assert (STATIC / "icon.svg").exists()


def test_the_profiles_languages_are_offered_with_cantonese_by_name(client):
    html = client.get("/").text
    profiles = json.loads(re.search(r'data-profiles="([^"]*)"', html).group(1).replace("&#34;", '"').replace("&amp;", "&"))
    codes = dict(profiles[0]["languages"])
    assert codes["yue"] == "Cantonese (yue)" and codes["zh"].startswith("Chinese") and "en" in codes
    chinese = client.get("/", headers={"Accept-Language": "zh"}).text
    assert "粤语 (yue)" in chinese.replace("&#34;", '"')


# -- the queue --------------------------------------------------------------------------------


def test_the_queue_lists_every_job_newest_first_with_uploads_and_error_notes(client, settings, ledger):
    first = add_done_job(settings, ledger)
    token = csrf_of(client)
    client.post("/api/uploads", params={"name": "fresh.wav", "language": "de"}, content=b"RIFF", headers=unsafe_headers(client, token))
    bad = ledger.add(profile="default", name="broken.wav", inbox_path=settings.inbox / "broken.wav",
                     spool_path=settings.spool_dir / "default" / "x" / "broken.wav", size=4, mtime_ns=1, state=State.CLAIMED)
    (settings.spool_dir / "default" / "x").mkdir(parents=True)
    (settings.spool_dir / "default" / "x" / "broken.wav").write_bytes(b"oops")
    quarantine_job(settings, ledger, ledger.get(bad), "open", "is not a recording ffmpeg can read", "recording")
    jobs = client.get("/api/jobs").json()["jobs"]
    assert [(j["name"], j["state"]) for j in jobs] == [("fresh.wav", "uploaded"), ("broken.wav", "quarantined"), ("meeting.wav", "done")]
    assert jobs[0]["language"] == "de"
    assert "is not a recording ffmpeg can read" in jobs[1]["error"] and "byte-for-byte" in jobs[1]["error"]
    assert jobs[1]["can_retry"] and jobs[1]["can_delete"] and not jobs[2]["can_retry"]
    assert jobs[2]["url"] == f"/jobs/{first}"
    done = ledger.get(first)
    assert jobs[2]["elapsed_s"] == round(done.finished_at - done.started_at, 1)  # a done job's time is its run's


def test_a_running_job_shows_its_stage_progress_and_time_left(client, settings, ledger, monkeypatch):
    from types import SimpleNamespace

    from hushdrop.pipeline.web import views

    # the queue's clock, moved by hand: the estimate is timed by it, so no real wait is needed
    clock = SimpleNamespace(now=time.time())
    monkeypatch.setattr(views, "time", SimpleNamespace(time=lambda: clock.now))
    job_id = ledger.add(profile="default", name="long.wav", inbox_path=settings.inbox / "long.wav",
                        spool_path=settings.spool_dir / "l" / "long.wav", size=1, mtime_ns=1, state=State.CLAIMED)
    ledger.start(job_id, "worker-1")
    names = [s.name for s in settings.profile("default").chain]
    at = names.index("transcribe")
    ledger.progress(job_id, "transcribe", 0.10, at, len(names))
    first = client.get("/api/jobs").json()["jobs"][0]
    assert first["state"] == "processing" and first["stage"] == "transcribe"
    assert first["stage_progress"] == pytest.approx(0.10, abs=0.01)
    assert first["progress"] == pytest.approx((at + 0.10) / len(names), abs=0.001)  # of the whole chain
    clock.now += 1.2
    ledger.progress(job_id, "transcribe", 0.40, at, len(names))
    second = client.get("/api/jobs").json()["jobs"][0]
    assert second["stage_progress"] == pytest.approx(0.40, abs=0.01)
    assert second["remaining_s"] == pytest.approx(1.2 / 0.30 * 0.60, abs=0.1)  # 30 % took 1.2 s, 60 % are left


# -- results ------------------------------------------------------------------------------


def test_the_result_page_shows_facts_waveform_transcript_and_downloads(client, settings, ledger):
    job_id = add_done_job(settings, ledger)
    html = client.get(f"/jobs/{job_id}").text
    assert "00:00:31.92" in html  # the duration, to the hundredth
    assert "en" in html and "97% sure" in html
    assert "[00:00:00]" in html and ">Good</span>" in html and "[silence, 4 s]" in html
    for fmt in ("txt", "srt", "vtt", "json", "md"):
        assert f'href="/jobs/{job_id}/files/meeting.{fmt}"' in html
    assert "AEB/gA==" in html.replace("&#43;", "+")  # the stored peaks, for the waveform
    assert 'id="audio"' not in html  # shredded: nothing to play


def test_downloads_are_the_outbox_files_byte_for_byte(client, settings, ledger):
    job_id = add_done_job(settings, ledger)
    for fmt, path in outputs(settings).items():
        response = client.get(f"/jobs/{job_id}/files/{path.name}")
        assert response.status_code == 200 and response.content == path.read_bytes(), fmt
        assert response.headers["content-disposition"].startswith("attachment")


def test_the_original_plays_only_where_the_profile_kept_it(client, settings, ledger):
    default = settings.profiles["default"]
    keeping = settings.model_copy(update={"profiles": {"default": default.model_copy(update={"originals": OriginalsPolicy(action="keep")})}})
    job_id = add_done_job(keeping, ledger, original=b"RIFF-audio-bytes")  # watch mode moves a kept original to workdir/kept
    assert (settings.workdir / "kept" / "default" / "meeting.wav").read_bytes() == b"RIFF-audio-bytes"
    assert 'id="audio"' in client.get(f"/jobs/{job_id}").text
    response = client.get(f"/jobs/{job_id}/original", headers={"Range": "bytes=5-9"})
    assert response.status_code == 206 and response.content == b"audio"
    shredded = add_done_job(settings, ledger, sample_job("other.wav"))
    assert client.get(f"/jobs/{shredded}/original").status_code == 404
    # a row that names a file outside the kept folders (a damaged ledger), as data or as an older row's sentence
    for forged in (Disposal(Action.MOVED, Path("/etc/passwd")).to_column(), "moved to /etc/passwd"):
        outside = add_done_job(settings, ledger, sample_job("third.wav"))
        ledger.update(outside, retention=forged)
        assert client.get(f"/jobs/{outside}/original").status_code == 404


@pytest.mark.parametrize("path", [
    "/jobs/{id}/files/..%2F..%2F..%2Fconfig.yaml",
    "/jobs/{id}/files/%2Fetc%2Fpasswd",
    "/jobs/{id}/files/..",
    "/jobs/{id}/files/../../../config.yaml",
    "/jobs/{id}/files/%2e%2e%2fconfig.yaml",
    "/jobs/{id}/files/ledger.sqlite3",
    "/jobs/{id}/files/meeting.txt%00.json",
    "/jobs/{id}/files/..%5C..%5Cconfig.yaml",
    "/jobs/..%2F..%2Fetc/files/passwd",
    "/jobs/%2Fetc%2Fpasswd",
    "/jobs/-1",
    "/jobs/1e3",
    "/jobs/{id}/original",
    "/jobs/..%2F{id}/original",
    "/api/jobs/..%2F..%2Fconfig.yaml",
    "/static/..%2F..%2F..%2Fconfig.yaml",
    "/static/../app.py",
    "/static/%2Fetc%2Fpasswd",
    "/lang/..%2F..%2Fconfig.yaml",
])
def test_no_route_that_takes_a_name_reads_anything_the_ledger_does_not_list(client, settings, ledger, path):
    job_id = add_done_job(settings, ledger)
    (settings.source.parent / "secret.txt").write_text("SECRET")
    response = client.get(path.format(id=job_id))
    landed = response.request.url.path
    if landed.rstrip("/") != f"/jobs/{job_id}":  # the client folds "x/.." away: then it asked for the job page
        assert response.status_code in (404, 422), (path, response.status_code)
    assert b"SECRET" not in response.content and b"root:" not in response.content and b"profiles" not in response.content


def test_the_outbox_is_not_left_through_a_planted_link(client, settings, ledger):
    job_id = add_done_job(settings, ledger)
    txt = outputs(settings)["txt"]
    txt.unlink()
    txt.symlink_to("/etc/passwd")
    assert client.get(f"/jobs/{job_id}/files/{txt.name}").status_code == 404


# -- editing -------------------------------------------------------------------------------


def test_an_edit_rewrites_every_output_and_keeps_the_engines_text(client, settings, ledger):
    job_id = add_done_job(settings, ledger)
    files = outputs(settings)
    before = json.loads(files["json"].read_text())
    sha = re.search(r'data-sha="([0-9a-f]{64})"', client.get(f"/jobs/{job_id}").text).group(1)
    token = csrf_of(client)
    response = client.put(f"/api/jobs/{job_id}/transcript", headers=unsafe_headers(client, token),
                          json={"base": sha, "segments": [{"index": 1, "text": "The  beans need more water, Ms. Okonkwo."}]})
    assert response.status_code == 200, response.text
    record = json.loads(files["json"].read_text())
    segment = record["segments"][1]
    assert segment["text"] == "The beans need more water, Ms. Okonkwo." and segment["edited"] is True
    assert segment["raw_text"] == before["segments"][1]["raw_text"] == "the beans need more water."  # the engine's words
    assert segment["words"] == before["segments"][1]["words"]
    assert record["segments"][0] == before["segments"][0] and record["edited_at"]
    assert "Ms. Okonkwo" in record["text"]
    for fmt in ("txt", "srt", "vtt", "md"):
        assert "Ms. Okonkwo" in files[fmt].read_text(), fmt
    assert "[00:00:00] Good morning everyone." in files["txt"].read_text()
    assert oct(files["txt"].stat().st_mode & 0o777) == oct(settings.output_mode_bits)
    assert not [p for p in files["txt"].parent.iterdir() if p.name.startswith(".")]  # no temp file left
    page = client.get(f"/jobs/{job_id}").text
    assert "Okonkwo" in page and "edited" in page


def test_an_edit_of_a_stale_page_changes_nothing(client, settings, ledger):
    job_id = add_done_job(settings, ledger)
    files = outputs(settings)
    before = {fmt: p.read_bytes() for fmt, p in files.items()}
    token = csrf_of(client)
    stale = client.put(f"/api/jobs/{job_id}/transcript", headers=unsafe_headers(client, token),
                       json={"base": "0" * 64, "segments": [{"index": 0, "text": "changed"}]})
    assert stale.status_code == 409
    sha = re.search(r'data-sha="([0-9a-f]{64})"', client.get(f"/jobs/{job_id}").text).group(1)
    for bad in ({"base": sha, "segments": [{"index": 99, "text": "x"}]}, {"base": sha, "segments": [{"index": "0", "text": "x"}]},
                {"base": sha, "segments": [{"index": 0, "text": 5}]}, {"segments": []}, {"base": sha, "segments": "x"}):
        assert client.put(f"/api/jobs/{job_id}/transcript", headers=unsafe_headers(client, token), json=bad).status_code == 400, bad
    assert {fmt: p.read_bytes() for fmt, p in files.items()} == before


# -- search --------------------------------------------------------------------------------


def test_search_finds_words_and_chinese_across_transcripts(client, settings, ledger):
    add_done_job(settings, ledger)
    zh = add_done_job(settings, ledger, sample_job("周会.wav", ("今天我们讨论预算和招聘计划。", "下周一再开会。"), "zh"))
    hits = client.get("/api/search", params={"q": "more water"}).json()["hits"]
    assert [h["name"] for h in hits] == ["meeting.wav"]
    assert ["more water" in "".join(t for t, marked in h["snippet"] if marked).lower() for h in hits] == [True]
    assert [h["job"] for h in client.get("/api/search", params={"q": "预算和招聘"}).json()["hits"]] == [zh]
    assert [h["job"] for h in client.get("/api/search", params={"q": "预算"}).json()["hits"]] == [zh]  # two characters
    assert client.get("/api/search", params={"q": "giraffe"}).json()["hits"] == []
    assert client.get("/api/search", params={"q": '" OR 1=1 --'}).status_code == 200
    page = client.get("/search", params={"q": "beans"}).text
    assert "<mark>beans</mark>" in page.lower() and "meeting.wav" in page


# -- retry and delete ------------------------------------------------------------------------


def quarantined_job(settings, ledger: Ledger, name="broken.wav", language=None) -> int:
    job_id = ledger.add(profile="default", name=name, inbox_path=settings.inbox / name,
                        spool_path=settings.spool_dir / "default" / "q" / name, size=4, mtime_ns=1, state=State.CLAIMED,
                        language=language)
    (settings.spool_dir / "default" / "q").mkdir(parents=True, exist_ok=True)
    (settings.spool_dir / "default" / "q" / name).write_bytes(b"the original bytes")
    quarantine_job(settings, ledger, ledger.get(job_id), "transcribe", "ran out of memory", "transient")
    return job_id


def test_retry_puts_the_quarantined_original_back_into_the_inbox_with_its_language(client, settings, ledger):
    job_id = quarantined_job(settings, ledger, language="yue")
    token = csrf_of(client)
    response = client.post(f"/api/jobs/{job_id}/retry", headers=unsafe_headers(client, token))
    assert response.status_code == 200, response.text
    back = settings.inbox / "broken.wav"
    assert back.read_bytes() == b"the original bytes"
    assert not list((settings.quarantine / "default").iterdir())  # the original and its note
    [upload] = ledger.uploads.pending()
    assert upload["language"] == "yue"
    jobs = client.get("/api/jobs").json()["jobs"]
    assert [j["state"] for j in jobs] == ["uploaded", "retried"]
    assert client.post(f"/api/jobs/{job_id}/retry", headers=unsafe_headers(client, token)).status_code == 409


def test_delete_shreds_the_quarantined_original_and_its_note(client, settings, ledger):
    job_id = quarantined_job(settings, ledger)
    row = ledger.get(job_id)
    token = csrf_of(client)
    assert client.post(f"/api/jobs/{job_id}/delete", headers=unsafe_headers(client, token)).json() == {"ok": True}
    assert not row.quarantine_path.exists() and not Path(f"{row.quarantine_path}.error.txt").exists()
    assert ledger.get(job_id).state == "quarantined"  # rows are never deleted
    assert client.get("/api/jobs").json()["jobs"][0]["state"] == "deleted"
    done = add_done_job(settings, ledger)
    assert client.post(f"/api/jobs/{done}/delete", headers=unsafe_headers(client, token)).status_code == 409
    assert client.post("/api/jobs/999/delete", headers=unsafe_headers(client, token)).status_code == 404


# -- health and metrics --------------------------------------------------------------------


def test_readiness_names_what_is_missing_and_passes_with_a_running_watcher(client, settings, ledger):
    missing = client.get("/readyz")
    assert missing.status_code == 503
    checks = missing.json()["checks"]
    assert checks["ledger"]["ok"] and not checks["watcher"]["ok"] and not checks["model"]["ok"] and not checks["inbox"]["ok"]
    settings.inbox.mkdir(parents=True)
    settings.outbox.mkdir(parents=True)
    ledger.facts.set(heartbeat_at=time.time(), stopped_at=None,
                       workers=[{"name": "worker-1", "ready": True, "engine": "whisper", "model": "base", "device": "cpu"}])
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert "whisper base on cpu" in ready.json()["checks"]["model"]["detail"]


def test_metrics_count_jobs_stages_audio_and_the_queue_without_file_names(client, settings, ledger):
    for n in range(3):
        add_done_job(settings, ledger, sample_job(f"secret-name-{n}.wav"))
    quarantined_job(settings, ledger, "secret-broken.wav")
    ledger.add(profile="default", name="secret-waiting.wav", inbox_path=settings.inbox / "w.wav",
               spool_path=settings.spool_dir / "w" / "w.wav", size=1, mtime_ns=1, state=State.CLAIMED)
    text = client.get("/metrics").text
    assert 'hushdrop_jobs_total{outcome="done"} 3.0' in text
    assert 'hushdrop_jobs_total{outcome="quarantined"} 1.0' in text
    assert "hushdrop_job_duration_seconds_count 3.0" in text
    assert 'hushdrop_stage_duration_seconds_count{stage="transcribe"} 3.0' in text
    assert 'hushdrop_stage_duration_seconds_sum{stage="transcribe"} 13.5' in text
    assert float(re.search(r"^hushdrop_audio_seconds_total (\S+)$", text, re.M).group(1)) == pytest.approx(3 * 31.923)
    assert 'hushdrop_queue_jobs{state="claimed"} 1.0' in text
    assert re.search(r"hushdrop_oldest_queued_job_age_seconds \d", text)
    assert "hushdrop_workers 0.0" in text and "hushdrop_build_info{" in text
    assert "secret" not in text and ".wav" not in text
