"""Broken state and hostile input on the real app: a damaged search catalog is rebuilt from the
ledger (at start and while the app runs), a search text with NUL is a 400, no route answers any
hostile value with a 500, and no error the page shows carries an absolute path."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.watch.finish import quarantine_job
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.web.app import create_app
from tests.unprivileged import give_to_user, run_unprivileged
from tests.web.conftest import BASE, add_done_job, csrf_of, sample_job, unsafe_headers, web_settings

CATALOG = "web-catalog.sqlite3"


def app_client(settings: Settings) -> TestClient:
    """The real app, from this machine; a server error comes back as the 500 a browser would get."""
    return TestClient(create_app(settings), base_url=BASE, follow_redirects=False, raise_server_exceptions=False,
                      client=("127.0.0.1", 50000))


def two_jobs(settings: Settings) -> dict[str, int]:
    ledger = Ledger(settings.ledger_path)
    try:
        return {
            "meeting.wav": add_done_job(settings, ledger),
            "周会.wav": add_done_job(settings, ledger, sample_job("周会.wav", ("今天我们讨论预算和招聘计划。",), "zh")),
        }
    finally:
        ledger.close()


def search_names(client: TestClient, q: str) -> list[str]:
    response = client.get("/api/search", params={"q": q})
    assert response.status_code == 200, response.text
    return [hit["name"] for hit in response.json()["hits"]]


def assert_search_and_metrics_are_right(client: TestClient, jobs: int = 2) -> None:
    assert search_names(client, "more water") == ["meeting.wav"]
    assert search_names(client, "预算") == ["周会.wav"]  # the short (LIKE) path too
    page = client.get("/search", params={"q": "beans"})
    assert page.status_code == 200 and "<mark>beans</mark>" in page.text.lower()
    metrics = client.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    assert f'hushdrop_stage_duration_seconds_count{{stage="transcribe"}} {float(jobs)}' in metrics.text
    assert float(re.search(r"^hushdrop_audio_seconds_total (\S+)$", metrics.text, re.M).group(1)) == pytest.approx(jobs * 31.923)


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64) + b"this is not an SQLite database" * 1000)


def overwritten_in_place(path: Path, byte: bytes = b"\x5a") -> None:
    """Every byte of ``path`` replaced, its length kept: SQLite maps its ``-shm`` file into memory,
    and a mapping cut short by a truncation would crash the process instead of reaching the code."""
    with open(path, "r+b") as f:
        f.write(byte * os.fstat(f.fileno()).st_size)


def torn_pages(path: Path) -> None:
    """Keep the header and the first page (the schema), overwrite every page after it."""
    data = bytearray(path.read_bytes())
    assert len(data) > 4096
    data[4096:] = b"\xa5" * (len(data) - 4096)
    path.write_bytes(bytes(data))


def wrong_tables(path: Path) -> None:
    """A valid SQLite file whose ``jobs`` table is not the catalog's (found only when queried)."""
    path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE jobs (x)")
    db.commit()
    db.close()


@pytest.mark.parametrize("damage", [garbage, torn_pages, wrong_tables], ids=lambda f: f.__name__)
def test_a_catalog_damaged_between_runs_is_rebuilt_and_answers_right_again(tmp_path, damage, caplog):
    settings = web_settings(tmp_path / "site")
    two_jobs(settings)
    with app_client(settings) as client:
        assert_search_and_metrics_are_right(client)
    catalog = settings.workdir / CATALOG
    assert not Path(f"{catalog}-wal").exists() or Path(f"{catalog}-wal").stat().st_size == 0  # all in the main file
    damage(catalog)
    with caplog.at_level(logging.WARNING, logger="hushdrop"), app_client(settings) as client:
        assert_search_and_metrics_are_right(client)
        assert_search_and_metrics_are_right(client)
    rebuilt = [r.getMessage() for r in caplog.records if "search catalog" in r.getMessage()]
    assert len(rebuilt) == 1 and "rebuilt from the ledger" in rebuilt[0], rebuilt  # once, and it says what happened
    assert str(tmp_path) not in rebuilt[0]
    assert sqlite3.connect(catalog).execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_a_catalog_damaged_while_the_app_runs_heals_and_finds_new_jobs(tmp_path):
    settings = web_settings(tmp_path / "site")
    two_jobs(settings)
    with app_client(settings) as client:
        assert_search_and_metrics_are_right(client)
        catalog = settings.workdir / CATALOG
        for path in (catalog, Path(f"{catalog}-wal")):
            if path.exists():
                garbage(path)
        overwritten_in_place(Path(f"{catalog}-shm"))  # and what SQLite holds in memory
        ledger = Ledger(settings.ledger_path)
        try:
            third = add_done_job(settings, ledger, sample_job("third.wav", ("The giraffe ate the budget.",)))
        finally:
            ledger.close()
        for _ in range(2):  # and it stays healed
            assert search_names(client, "giraffe") == ["third.wav"]
            assert_search_and_metrics_are_right(client, jobs=3)
        assert client.get(f"/jobs/{third}").status_code == 200


def test_a_search_with_nul_or_other_control_characters_is_a_400(tmp_path):
    settings = web_settings(tmp_path / "site")
    two_jobs(settings)
    with app_client(settings) as client:
        for raw in ("ab%00cd", "%00", "beans%1b%5b2J", "a" * 501):
            api = client.get(f"/api/search?q={raw}")
            assert api.status_code == 400, (raw, api.status_code, api.text)
            assert "search" in api.json()["error"]
            page = client.get(f"/search?q={raw}")
            assert page.status_code == 400 and 'role="alert"' in page.text, raw
        # text that is merely odd is searched, not refused
        assert client.get("/api/search?q=%ff%fe").status_code == 200  # not UTF-8: replacement characters
        assert search_names(client, "beans\tneed") == ["meeting.wav"]
        assert search_names(client, "a" * 500) == []


HOSTILE = [
    "ab%00cd", "%ff%fe%fd", "%c0%af", "x" * 6000, "-1", "0", "99999999999999999999999999", "9" * 5000, "1e309",
    "NaN", "%2e%2e%2f%2e%2e%2fconfig.yaml", "..%5C..%5C", "%0d%0aSet-Cookie:%20x=1", "%e2%80%ae", "424242",
    "%22%20OR%201=1%20--", "%25", "%",
]


def hostile_requests(app) -> list[tuple[str, str]]:
    """(method, url) for every route the app has, each path and query parameter given each hostile value."""
    requests = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        params = [p.name for p in route.dependant.query_params]
        for method in sorted(route.methods - {"HEAD"}):
            for value in HOSTILE:
                path = re.sub(r"\{[^}]+\}", value, route.path)
                query = "&".join(f"{name}={value}" for name in params)
                requests.append((method, f"{path}?{query}" if query else path))
                if "{" in route.path and params:
                    requests.append((method, re.sub(r"\{[^}]+\}", "1", route.path) + f"?{query}"))
    for value in HOSTILE:
        requests.append(("GET", f"/static/{value}"))
        requests.append(("GET", f"/{value}"))
    return requests


def test_no_route_answers_a_hostile_value_with_a_500(tmp_path):
    settings = web_settings(tmp_path / "site")
    jobs = two_jobs(settings)
    ledger = Ledger(settings.ledger_path)
    spool = settings.spool_dir / "default" / "q" / "broken.wav"
    spool.parent.mkdir(parents=True)
    spool.write_bytes(b"not audio")
    bad = ledger.add(profile="default", name="broken.wav", inbox_path=settings.inbox / "broken.wav", spool_path=spool,
                     size=9, mtime_ns=1, state=State.CLAIMED)
    quarantine_job(settings, ledger, ledger.get(bad), "open", "not a recording", "recording")
    ledger.close()
    with app_client(settings) as client:
        token = csrf_of(client)
        headers = unsafe_headers(client, token)
        requests = hostile_requests(client.app)
        assert len({url.split("?")[0].split("/")[1] for _, url in requests}) >= 6  # jobs, api, search, metrics, lang…
        failures = []
        bodies = [b"\x00\xff{not json", b'{"base": "x", "segments": ' * 50_000, b"[" * 100_000]
        for method, url in requests:
            for body in bodies if method in ("POST", "PUT") else [None]:
                response = client.request(method, url, headers=headers, content=body)
                if response.status_code >= 500 and not (url.startswith("/readyz") and response.status_code == 503):
                    failures.append((method, url[:80], response.status_code, response.text[:120]))
        assert not failures, "\n".join(map(str, failures))
        # the job pages themselves still answer after the sweep
        assert client.get(f"/jobs/{jobs['meeting.wav']}").status_code == 200
        assert client.get("/api/jobs").status_code == 200


def test_a_damaged_ledger_is_a_503_that_says_what_to_do_not_a_500(tmp_path):
    """The ledger is not derived data (the doctor rebuilds it, with the service stopped), so the
    page cannot heal it: it says so in one line, on every route that reads it."""
    settings = web_settings(tmp_path / "site")
    two_jobs(settings)
    with app_client(settings) as client:
        assert client.get("/api/jobs").status_code == 200
        data = bytearray(settings.ledger_path.read_bytes())
        data[4096:] = b"\x5a" * (len(data) - 4096)
        settings.ledger_path.write_bytes(bytes(data))
        overwritten_in_place(Path(f"{settings.ledger_path}-shm"))  # what the open connection holds in memory
        for url in ("/api/jobs", "/metrics", "/readyz", "/jobs/1", "/api/jobs/1", "/api/search?q=beans", "/search?q=beans"):
            response = client.get(url)
            assert response.status_code == 503, (url, response.status_code, response.text[:200])
            assert "doctor --rebuild-ledger" in response.text and str(tmp_path) not in response.text
        assert client.get("/healthz").status_code == 200


# -- no absolute path in what the page answers -------------------------------------------------------


def test_the_uploads_507_names_no_path(tmp_path):
    settings = web_settings(tmp_path / "site", web={"max_upload_mb": 1e12})
    with app_client(settings) as client:
        token = csrf_of(client)
        free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
        response = client.post(
            "/api/uploads", params={"name": "huge.wav"}, content=b"RIFF",
            headers={**unsafe_headers(client, token), "content-length": str(free + (1 << 30))},
        )
        assert response.status_code == 507, response.text
        assert "free space" in response.json()["error"] and "profile default" in response.json()["error"]
        assert str(tmp_path) not in response.text and "/site" not in response.text


def _upload_into_a_read_only_inbox(root: str) -> tuple[int, str]:
    settings = web_settings(Path(root) / "site")
    folder = settings.inbox
    folder.mkdir(parents=True)
    with app_client(settings) as client:
        token = csrf_of(client)
        os.chmod(folder, 0o555)
        response = client.post("/api/uploads", params={"name": "talk.wav"}, content=b"RIFF" * 100,
                               headers=unsafe_headers(client, token))
        return response.status_code, response.text


def test_the_uploads_503_names_no_path(shared_tree):
    give_to_user(shared_tree)
    status, text = run_unprivileged(_upload_into_a_read_only_inbox, str(shared_tree))
    assert status == 503, text
    assert "cannot write into the inbox folder of profile default" in text and "ermission denied" in text
    assert str(shared_tree) not in text and "/site" not in text


def test_a_quarantine_note_and_the_queue_name_no_absolute_path(tmp_path):
    settings = web_settings(tmp_path / "site")
    ledger = Ledger(settings.ledger_path)
    spool = settings.spool_dir / "default" / "q" / "broken.wav"
    spool.parent.mkdir(parents=True)
    spool.write_bytes(b"not audio")
    bad = ledger.add(profile="default", name="broken.wav", inbox_path=settings.inbox / "broken.wav", spool_path=spool,
                     size=9, mtime_ns=1, state=State.CLAIMED)
    row = quarantine_job(settings, ledger, ledger.get(bad), "open",
                         f"ffmpeg cannot read {spool}: Invalid data found when processing input", "recording")
    ledger.close()
    note = Path(f"{row.quarantine_path}.error.txt").read_text()
    assert str(tmp_path) not in note, note
    assert "cannot read <spool>/default/q/broken.wav" in note and "drop it into\nthe inbox again" in note
    assert "90 days" in note and "10 GB" in note  # how long quarantine keeps it
    with app_client(settings) as client:
        [job] = client.get("/api/jobs").json()["jobs"]
        assert job["state"] == "quarantined" and "Invalid data" in job["error"]
        assert str(tmp_path) not in job["error"]
        assert str(tmp_path) not in client.get(f"/jobs/{bad}").text


@pytest.mark.parametrize("content", [
    b"[1, 2]",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"segments": "x", "audio": 5, "stages": [1, {"name": "decode", "seconds": "slow"}]}',
    b'{"segments": [{"text": 5, "start": "x", "words": [{"start": "soon"}]}], "events": [1], "language": ["en"]}',
    b'{"audio": {"duration_s": "long"}, "engine": "whisper", "language_probability": "high"}',
    b"\xff\xfe not json",
], ids=["a-list", "nested-100000-deep", "wrong-types", "wrong-segment-types", "wrong-facts", "not-json"])
def test_a_damaged_or_planted_json_output_is_shown_as_missing_never_a_500(tmp_path, content):
    settings = web_settings(tmp_path / "site")
    jobs = two_jobs(settings)
    job = jobs["meeting.wav"]
    (settings.outbox / "default" / "meeting.json").write_bytes(content)
    with app_client(settings) as client:
        for url in (f"/jobs/{job}", f"/api/jobs/{job}", "/api/search?q=beans", "/search?q=beans", "/metrics", "/api/jobs"):
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code, response.text[:200])
        assert "record" not in client.get(f"/api/jobs/{job}").json()
        assert search_names(client, "预算") == ["周会.wav"]  # the other job is still found
        token = csrf_of(client)
        edit = client.put(f"/api/jobs/{job}/transcript", headers=unsafe_headers(client, token),
                          json={"base": "0" * 64, "segments": [{"index": 0, "text": "x"}]})
        assert 400 <= edit.status_code < 500, edit.text


# -- quarantine's size on the page and in /metrics -----------------------------------------------------


def test_the_page_and_metrics_show_what_quarantine_holds(tmp_path):
    settings = web_settings(tmp_path / "site")
    ledger = Ledger(settings.ledger_path)
    for n, size in enumerate((1_200_000, 300_000)):
        spool = settings.spool_dir / "default" / f"q{n}" / f"broken{n}.wav"
        spool.parent.mkdir(parents=True)
        spool.write_bytes(b"\0" * size)
        job = ledger.add(profile="default", name=spool.name, inbox_path=settings.inbox / spool.name, spool_path=spool,
                         size=size, mtime_ns=1, state=State.CLAIMED)
        quarantine_job(settings, ledger, ledger.get(job), "open", "not a recording", "recording")
    ledger.close()
    held = sum(p.stat().st_size for p in (settings.quarantine / "default").iterdir())
    with app_client(settings) as client:
        metrics = client.get("/metrics").text
        assert float(re.search(r"^hushdrop_quarantine_bytes (\S+)$", metrics, re.M).group(1)) == held
        assert "hushdrop_quarantine_files 2.0" in metrics
        english = client.get("/", headers={"Accept-Language": "en"}).text
        line = re.search(r'<p id="quarantine-usage" class="hint">([^<]*)</p>', english).group(1)
        assert line == "Quarantine: 2 recording(s), 1.5 MB · the oldest are shredded past 10.0 GB · kept 90 days"
        chinese = client.get("/", headers={"Accept-Language": "zh"}).text
        assert "隔离区：2 个录音，1.5 MB" in chinese
    empty = web_settings(tmp_path / "empty")
    with app_client(empty) as client:
        assert 'id="quarantine-usage"' not in client.get("/").text
        assert "hushdrop_quarantine_files 0.0" in client.get("/metrics").text


def test_a_recording_removed_by_quarantines_limit_shows_as_deleted_without_retry(tmp_path):
    from hushdrop.pipeline.watch.quarantine import prune

    settings = web_settings(tmp_path / "site")
    settings = settings.model_copy(update={"quarantine_max_gb": 1e-9})  # anything at all is over it
    ledger = Ledger(settings.ledger_path)
    spool = settings.spool_dir / "default" / "q" / "zeros.wav"
    spool.parent.mkdir(parents=True)
    spool.write_bytes(b"\0" * 5000)
    job = ledger.add(profile="default", name="zeros.wav", inbox_path=settings.inbox / "zeros.wav", spool_path=spool,
                     size=5000, mtime_ns=1, state=State.CLAIMED)
    quarantine_job(settings, ledger, ledger.get(job), "open", "not a recording", "recording")
    assert [r.name for r in prune(settings, ledger)] == ["zeros.wav"]
    ledger.close()
    with app_client(settings) as client:
        [shown] = client.get("/api/jobs").json()["jobs"]
        assert shown["state"] == "deleted" and not shown["can_retry"] and not shown["can_delete"]
        token = csrf_of(client)
        assert client.post(f"/api/jobs/{job}/retry", headers=unsafe_headers(client, token)).status_code == 409
        assert 'id="quarantine-usage"' not in client.get("/").text


@pytest.mark.parametrize("job_id", ["%C2%B2", "1%C2%B2", "%EF%BC%91", "%F0%9D%9F%99", "%D9%A1"])
def test_a_job_id_in_other_digits_than_ascii_is_a_404_never_a_500_nor_another_job(tmp_path, job_id):
    settings = web_settings(tmp_path)
    two_jobs(settings)
    with app_client(settings) as client:
        for path in (f"/jobs/{job_id}", f"/api/jobs/{job_id}", f"/jobs/{job_id}/original", f"/jobs/{job_id}/files/x.txt"):
            assert client.get(path).status_code == 404, path
        assert client.post(f"/api/jobs/{job_id}/retry", headers=unsafe_headers(client, csrf_of(client))).status_code == 404
