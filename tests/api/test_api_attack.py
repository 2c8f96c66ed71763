"""The API as an attacker and an unlucky client would use it, against a real ``hushdrop watch``.

Each test is a hole found by trying: a form cut off before its closing boundary (its truncated
recording was transcribed as if whole), a browser page on this machine calling the API without
a token where ``loopback_without_token`` is on (a cross-site request forgery), a client getting
past its token's ``concurrent_jobs`` by hanging up or timing out (and the record of such a job
kept for a day), a folder copy of a recording an API request translated being "skipped as a
duplicate" onto that English translation, an upload deleted from the inbox before it was taken
(the request waited out ``api.wait_seconds`` and its note stayed forever), a request's job
claimed between the two reads that look for it (answered 500 though the job was running), a
request waiting while the service stops (a bare 500 and a traceback), a damaged token store
(a bare 500 for every request), and a claim that dropped the note of the next upload placed
under the same name (that request answered 500, its file run as a folder job).
"""

from __future__ import annotations

import threading
from typing import Callable

import httpx
import pytest

from tests.api.service import ApiService, start_api_service
from tests.api.test_api_jobs import add_token, idle, results_kept
from tests.api.test_tokens import settings_with_api
from tests.api.test_tokens import add_token as add_token_to
from tests.web.conftest import client_for, web_settings
from tests.harness import speech_clip, speech_variant, wait_for
from tests.helpers import SPEECH_DE

from hushdrop.pipeline.api.jobs import _job_of
from hushdrop.pipeline.watch import page_requests
from hushdrop.pipeline.watch.intake import claim
from hushdrop.pipeline.watch.ledger import Ledger, Priority, State, UploadNote

TRANSCRIBE = "/v1/audio/transcriptions"
TRANSLATE = "/v1/audio/translations"


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> ApiService:
    # a short wait, so a request outlasts it; loopback without a token, so a browser page could try that door
    started = start_api_service(tmp_path_factory.mktemp("api-attack") / "site", wait_seconds=3, loopback_without_token=True)
    yield started
    started.stop()


def uploads_noted(service: ApiService) -> int:
    ledger = Ledger(service.run.workdir / "ledger.sqlite3", readonly=True)
    try:
        return len(ledger.uploads.pending())
    finally:
        ledger.close()


def post(service: ApiService, path: str, data: bytes, name: str, token: str | None = "", timeout: float = 120,
         **fields: str) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token or service.token}"}
    return httpx.post(service.url + path, headers=headers, data=fields, files={"file": (name, data, "audio/wav")},
                      timeout=timeout)


def test_a_form_cut_off_before_its_closing_boundary_is_refused_and_runs_nothing(service):
    before = len(service.run.jobs())
    boundary = "cut-off-form"

    def body():  # the file part begins, some of the recording follows, and the body ends there
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.wav\"\r\n"
               "Content-Type: audio/wav\r\n\r\n").encode()
        yield speech_variant(1)[:200_000]

    answer = httpx.post(service.url + TRANSCRIBE, content=body(), timeout=60, headers={
        "Authorization": f"Bearer {service.token}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 400, answer.text
    assert "closing boundary" in answer.json()["error"]["message"]
    assert len(service.run.jobs()) == before, "a truncated recording was run"
    assert not [p for p in service.run.inbox.rglob("*") if p.is_file()], "the cut-off upload was left in the inbox"


@pytest.mark.parametrize("browser", [{"Origin": "http://attacker.example"}, {"Sec-Fetch-Site": "cross-site"}])
def test_loopback_without_token_lets_no_browser_page_in(service, browser):
    assert httpx.get(service.url + "/v1/models", timeout=10).status_code == 200  # a tool beside hushdrop
    node_fetch = httpx.get(service.url + "/v1/models", headers={"Sec-Fetch-Mode": "cors"}, timeout=10)
    assert node_fetch.status_code == 200  # Node's fetch adds only this one: not a browser
    assert httpx.get(service.url + "/v1/models", headers=browser, timeout=10).status_code == 401
    before = len(service.run.jobs())
    forged = httpx.post(service.url + "/asr?output=txt", headers=browser, timeout=60,
                        files={"audio_file": ("forged.wav", speech_variant(2), "audio/wav")})
    assert forged.status_code == 401, forged.text
    assert "token" in forged.json()["detail"]
    assert len(service.run.jobs()) == before
    with_token = httpx.get(service.url + "/v1/models", headers={**browser, "Authorization": f"Bearer {service.token}"})
    assert with_token.status_code == 200


@pytest.mark.parametrize("ending", ["hangs up", "outwaits api.wait_seconds"])
def test_a_request_whose_client_is_gone_keeps_its_tokens_slot_until_its_job_ends(service, ending):
    wait_for(lambda: idle(service), 300, "an idle service")
    token = add_token(service, f"one-{ending.split()[0]}", "--concurrent-jobs", "1")
    name = f"gone-{ending.split()[0]}.wav"
    # two minutes of speech, as its WAV header says: it takes well over api.wait_seconds (3 s) to run
    # on any machine (a minute's bytes behind a 32 s header was read as 32 s, which a quiet machine
    # could transcribe within the wait)
    recording = speech_clip(3 + (ending == "hangs up"), 128.0)
    if ending == "hangs up":
        gone_before = service.run.log_text().count("went away")
        with pytest.raises(httpx.ReadTimeout):
            post(service, TRANSCRIBE, recording, name, token, timeout=1.5)
        wait_for(lambda: service.run.log_text().count("went away") > gone_before, 30, "the server to see the client gone")
    else:
        late = post(service, TRANSCRIBE, recording, name, token)
        assert late.status_code == 504, late.text
    [job] = [j for j in service.run.jobs() if j["name"] == name]
    assert job["state"] in ("claimed", "processing"), job["state"]
    second = post(service, TRANSCRIBE, b"", "second.wav", token)  # refused before its (empty) file is even looked at
    assert second.status_code == 429, second.text
    assert second.json()["error"]["code"] == "concurrent_jobs"
    wait_for(lambda: [j for j in service.run.jobs() if j["name"] == name and j["state"] == "done"], 180, "the job")
    wait_for(lambda: results_kept(service) == 0, 30, "the record nobody came for to be dropped")

    def slot_given_back() -> httpx.Response | None:
        answer = post(service, TRANSCRIBE, b"", "third.wav", token)
        return answer if answer.status_code != 429 else None

    freed = wait_for(slot_given_back, 30, "the slot to be given back")
    assert freed.status_code == 400 and "empty" in freed.json()["error"]["message"]


def test_a_folder_copy_of_a_recording_a_request_translated_is_transcribed_not_given_the_translation(service):
    wait_for(lambda: idle(service), 300, "an idle service")
    german = SPEECH_DE.read_bytes()
    post(service, TRANSLATE, german, "asked-in-english.wav")  # 200 or 504: either way its job runs
    wait_for(lambda: [j for j in service.run.jobs() if j["name"] == "asked-in-english.wav" and j["state"] == "done"], 180,
             "the translation")
    wait_for(lambda: results_kept(service) == 0, 30, "the record to be dropped")
    service.run.drop("dropped-in-german.wav", german)
    wait_for(lambda: [j for j in service.run.jobs() if j["name"] == "dropped-in-german.wav" and j["state"] == "done"], 180,
             "the folder job")
    transcript = (service.run.outbox / "default" / "dropped-in-german.txt").read_text().lower()
    translation = (service.run.outbox / "default" / "asked-in-english.txt").read_text().lower()
    assert transcript != translation
    assert "morgen" in transcript and "hund" in transcript, transcript


def test_an_upload_deleted_from_the_inbox_before_it_is_taken_is_answered_at_once(service):
    wait_for(lambda: idle(service), 300, "an idle service")
    # the claim is held up (the profile's spool folder is a file: the profile waits, its file stays in the inbox)
    blocker = service.run.workdir / "spool" / "default"
    aside = blocker.with_name("default.aside")
    if blocker.exists():
        blocker.rename(aside)
    blocker.write_bytes(b"")
    answer: dict = {}
    sender = threading.Thread(target=lambda: answer.update(r=post(service, TRANSCRIBE, speech_variant(5), "deleted.wav")))
    try:
        sender.start()
        placed = wait_for(lambda: [p for p in service.run.inbox.glob("deleted*.wav")], 30, "the upload in the inbox")
        placed[0].unlink()  # someone tidies the inbox
        sender.join(30)
        assert not sender.is_alive()
    finally:
        blocker.unlink()
        if aside.exists():
            aside.rename(blocker)
    assert answer["r"].status_code == 500, answer["r"].text
    assert "left the inbox" in answer["r"].json()["error"]["message"]
    assert uploads_noted(service) == 0
    assert not [j for j in service.run.jobs() if j["name"] == "deleted.wav"]


class ClaimedBetweenReads(Ledger):
    """A real ledger in which the watcher's claim of a request's upload lands right after the
    request looked for its job, before it looked for its upload: the interleaving to test."""

    claim: dict | None = None

    def for_request(self, request_id):
        row = super().for_request(request_id)
        if self.claim is not None:
            claim, self.claim = self.claim, None
            self.add(**claim)  # what intake does: the job (with the request's id), then the note is dropped
            self.uploads.forget(claim["inbox_path"])
        return row


def test_a_request_whose_upload_is_claimed_while_it_looks_keeps_waiting(tmp_path):
    ledger = ClaimedBetweenReads(tmp_path / "ledger.sqlite3")
    upload = tmp_path / "inbox" / "asked.wav"
    upload.parent.mkdir()
    upload.write_bytes(b"RIFF")
    ledger.uploads.add(upload, "default", UploadNote(priority=Priority.API, request_id="r1"), upload.stat())
    ledger.claim = dict(profile="default", name="asked.wav", inbox_path=upload, spool_path=tmp_path / "spool" / "asked.wav",
                        size=4, mtime_ns=upload.stat().st_mtime_ns, request_id="r1", priority=Priority.API)
    row, unclaimed = _job_of(ledger, "r1")
    assert row is not None or unclaimed, "the request would answer 500 though its job was claimed"
    row, unclaimed = _job_of(ledger, "r1")
    assert row is not None and row.request_id == "r1" and not unclaimed


def test_a_request_waiting_while_the_service_stops_is_answered_in_its_clients_shape(tmp_path):
    stopping = start_api_service(tmp_path / "site", wait_seconds=120)
    answer: dict = {}
    recording = speech_variant(6) + speech_variant(7)[44:]
    sender = threading.Thread(target=lambda: answer.update(r=post(stopping, TRANSCRIBE, recording, "stopped.wav")))
    sender.start()
    wait_for(lambda: [j for j in stopping.run.jobs() if j["name"] == "stopped.wav" and j["state"] == "processing"], 60,
             "the request's job to run")
    stopping.stop()  # SIGTERM, as a restart does
    sender.join(30)
    assert answer["r"].status_code == 503, answer["r"].text
    error = answer["r"].json()["error"]
    assert error["code"] == "service_stopping" and "outbox" in error["message"]
    assert "Traceback" not in stopping.run.log_text()


@pytest.mark.parametrize("damage", [b"{not json", b'{"tokens": [{"name": "x"}]}', b'["a list"]'])
def test_a_damaged_token_store_is_a_503_in_the_clients_shape_that_names_no_path(tmp_path, damage):
    settings = settings_with_api(tmp_path)
    token = add_token_to(settings, "scripts")
    (settings.workdir / "api-tokens.json").write_bytes(damage)
    with client_for(settings) as http:
        openai = http.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert openai.status_code == 503, openai.text
        assert openai.json()["error"]["code"] == "token_store_unreadable"
        asr = http.post("/asr", headers={"Authorization": f"Bearer {token}"})
        assert asr.status_code == 503 and "log" in asr.json()["detail"]
        assert str(settings.workdir) not in openai.text + asr.text


class NextUploadDuringClaim(Ledger):
    """A real ledger in which, while intake claims one upload (its file already moved to the
    spool, the claim not yet marked), the next request places its own file under the same name:
    what two requests with one file name (Bazarr's are all ``audio_file``) do."""

    place_next: Callable[[], None] | None = None

    def transition(self, job_id, state, **fields):
        if self.place_next is not None and state == State.CLAIMED:
            place_next, self.place_next = self.place_next, None
            place_next()
        return super().transition(job_id, state, **fields)


def test_a_claim_drops_only_its_own_uploads_note_not_the_next_one_under_the_same_name(tmp_path):
    settings = web_settings(tmp_path / "site")
    profile = settings.profiles["default"]
    ledger = NextUploadDuringClaim(tmp_path / "ledger.sqlite3")
    path = settings.inbox / "audio_file.wav"
    path.parent.mkdir(parents=True)
    path.write_bytes(speech_variant(8))
    ledger.uploads.add(path, "default", UploadNote(priority=Priority.API, request_id="first"), path.stat())

    def place_next() -> None:
        path.write_bytes(speech_variant(9))
        page_requests.note_upload(ledger, path, "default", UploadNote(priority=Priority.API, request_id="second"), path.stat())

    ledger.place_next = place_next
    first = claim(settings, ledger, path, profile, path.stat())
    assert first.request_id == "first" and ledger.place_next is None
    assert ledger.uploads.note_for(path, path.stat()) == UploadNote(priority=Priority.API, request_id="second"), \
        "the next request's note was dropped with the claimed one's: its file would run as a folder job"
