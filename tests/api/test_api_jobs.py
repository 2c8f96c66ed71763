"""An API request is a job like any other, run first: against a real ``hushdrop watch`` with the
bundled model, a request sent while a backlog of folder files waits is answered after at most
the one job already running; a client that hangs up does not cancel its job (done once, its
transcript written, nothing kept for it); a token's concurrent_jobs and max_upload_mb hold."""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import pytest

from tests.api.service import ApiService, start_api_service
from tests.harness import hushdrop, speech_variant, wait_for
from tests.helpers import SPEECH_EN

TRANSCRIBE = "/v1/audio/transcriptions"


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> ApiService:
    started = start_api_service(tmp_path_factory.mktemp("api-jobs") / "site")
    yield started
    started.stop()


def post_recording(service: ApiService, data: bytes, name: str, token: str | None = None, timeout: float = 300) -> httpx.Response:
    return httpx.post(
        service.url + TRANSCRIBE, headers={"Authorization": f"Bearer {token or service.token}"},
        data={"model": "whisper-1", "response_format": "json"}, files={"file": (name, data, "audio/wav")}, timeout=timeout,
    )


def idle(service: ApiService) -> bool:
    return all(j["state"] in ("done", "quarantined", "abandoned") for j in service.run.jobs())


def results_kept(service: ApiService) -> int:
    db = sqlite3.connect(f"file:{service.run.workdir / 'ledger.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    finally:
        db.close()


def add_token(service: ApiService, name: str, *options: str) -> str:
    made = hushdrop(service.run.config_path, "api", "add-token", name, *options)
    assert made.returncode == 0, made.stdout + made.stderr
    return made.stdout.strip().splitlines()[-1]


def test_an_api_request_overtakes_the_folder_backlog_behind_at_most_one_running_job(service):
    backlog = [f"night-{n}.wav" for n in range(5)]
    for n, name in enumerate(backlog):
        service.run.drop(name, speech_variant(100 + n))
    wait_for(lambda: sum(j["state"] == "processing" for j in service.run.jobs()) == 1
             and sum(j["state"] == "claimed" for j in service.run.jobs()) >= 3, 60, "a running job and a claimed backlog")
    sent = time.time()
    answer = post_recording(service, SPEECH_EN.read_bytes(), "urgent.wav")
    answered = time.time()
    assert answer.status_code == 200, answer.text
    assert "garden project" in answer.json()["text"].lower()
    jobs = service.run.jobs()
    [api_job] = [j for j in jobs if j["request_id"]]
    folder = [j for j in jobs if j["name"] in backlog]
    assert api_job["priority"] == 2 and {j["priority"] for j in folder} == {0}
    finished_meanwhile = [j["name"] for j in folder if j["finished_at"] and sent < j["finished_at"] < api_job["started_at"]]
    started_meanwhile = [j["name"] for j in folder if j["started_at"] and sent < j["started_at"] < api_job["started_at"]]
    assert len(finished_meanwhile) <= 1 and not started_meanwhile, (finished_meanwhile, started_meanwhile)
    waiting_then = [j["name"] for j in folder if not j["finished_at"] or j["finished_at"] > answered]
    assert len(waiting_then) >= 3, "the backlog was not behind the request"
    # taken at once: a placed upload waits out no settle period
    assert api_job["claimed_at"] - sent < 5.0
    wait_for(lambda: idle(service), 300, "the backlog to finish")
    assert sorted(service.run.done_names()) == sorted(backlog + ["urgent.wav"])
    assert results_kept(service) == 0


def test_a_client_that_hangs_up_mid_wait_does_not_cancel_its_job(service):
    wait_for(lambda: idle(service), 300, "an idle service")
    before = {j["id"] for j in service.run.jobs()}
    with pytest.raises(httpx.ReadTimeout):
        # the upload goes through; the answer takes longer than the client waits, so it hangs up
        post_recording(service, speech_variant(7), "hung-up.wav", timeout=1.5)
    wait_for(lambda: [j for j in service.run.jobs() if j["id"] not in before and j["state"] == "done"], 120, "the job")
    new = [j for j in service.run.jobs() if j["id"] not in before]
    assert [(j["name"], j["state"], j["attempts"]) for j in new] == [("hung-up.wav", "done", 1)]
    assert service.run.output_sets()["hung-up"] == {"txt", "srt", "vtt", "json", "md"}
    assert "hung-up.wav" not in [p.name for p in service.kept_recordings()]  # shredded by the profile's policy
    wait_for(lambda: results_kept(service) == 0, 30, "the record nobody came for to be dropped")
    assert "went away" in service.run.log_text()


def test_a_tokens_concurrent_jobs_and_upload_size_are_its_limits(service):
    wait_for(lambda: idle(service), 300, "an idle service")
    one = add_token(service, "one-at-a-time", "--concurrent-jobs", "1")  # read by the running server: no restart
    first: dict = {}
    sender = threading.Thread(target=lambda: first.update(r=post_recording(service, speech_variant(8), "first.wav", one)))
    sender.start()
    wait_for(lambda: any(j["name"] == "first.wav" for j in service.run.jobs()), 60, "the first request's job")
    second = post_recording(service, speech_variant(9), "second.wav", one)
    assert second.status_code == 429, second.text
    assert second.json()["error"]["code"] == "concurrent_jobs"
    sender.join(120)
    assert first["r"].status_code == 200, first["r"].text
    assert post_recording(service, speech_variant(9), "second.wav", one).status_code == 200  # its turn now

    small = add_token(service, "small", "--max-upload-mb", "0.05")
    too_big = post_recording(service, speech_variant(10), "too-big.wav", small)
    assert too_big.status_code == 413 and "0.05 MB" in too_big.json()["error"]["message"]
    names = [j["name"] for j in service.run.jobs()]
    assert "too-big.wav" not in names
    assert not [p for p in service.run.inbox.rglob("*") if p.is_file()], "an upload refused left a file behind"


def test_a_requests_prompt_joins_the_glossary_for_that_job_only(service):
    wait_for(lambda: idle(service), 300, "an idle service")
    answer = httpx.post(
        service.url + TRANSCRIBE, headers={"Authorization": f"Bearer {service.token}"},
        data={"model": "whisper-1", "prompt": "GardenProject", "language": "en"},
        files={"file": ("with-prompt.wav", speech_variant(11), "audio/wav")}, timeout=300,
    )
    assert answer.status_code == 200, answer.text
    assert "GardenProject" in answer.json()["text"]  # the glossary's spelling rule applied the prompt's term
    [job] = [j for j in service.run.jobs() if j["name"] == "with-prompt.wav"]
    assert (job["prompt"], job["language"]) == ("GardenProject", "en")
    plain = post_recording(service, speech_variant(12), "without-prompt.wav")
    assert "GardenProject" not in plain.json()["text"]
