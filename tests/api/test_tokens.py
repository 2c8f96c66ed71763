"""API tokens: made and revoked by the real CLI, stored only hashed, checked on every request
(loopback too unless the config says otherwise), wrong ones rate-limited per address; the API
off by default. The app runs in-process (no model needed: every request here is refused or
answered before a recording is taken)."""

from __future__ import annotations

import hashlib
import json
import re
import stat

import pytest
import yaml

from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.errors import ConfigError
from tests.harness import hushdrop
from tests.web.conftest import client_for, web_settings

TOKEN = re.compile(r"^hd-[A-Za-z0-9_-]{40,}$", re.M)


def settings_with_api(tmp_path, **api):
    root = tmp_path / "site"
    root.mkdir()
    raw = {"profiles": {"default": {"originals": "shred"}}, "web": {"listen": "127.0.0.1:8765"}, "api": {"enabled": True, **api}}
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    return parse_config(raw, root / "config.yaml")


def add_token(settings, name: str, *options: str) -> str:
    made = hushdrop(settings.source, "api", "add-token", name, *options)
    assert made.returncode == 0, made.stdout + made.stderr
    found = TOKEN.search(made.stdout)
    assert found, made.stdout
    return found.group()


def test_a_token_is_printed_once_and_stored_only_as_its_hash(tmp_path):
    settings = settings_with_api(tmp_path)
    token = add_token(settings, "bazarr", "--concurrent-jobs", "3")
    store = settings.workdir / "api-tokens.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    text = store.read_text()
    assert token not in text and token[3:] not in text
    [entry] = json.loads(text)["tokens"]
    assert entry["name"] == "bazarr" and entry["concurrent_jobs"] == 3
    assert entry["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    listed = hushdrop(settings.source, "api", "list-tokens")
    assert "bazarr" in listed.stdout and "concurrent_jobs 3" in listed.stdout and token not in listed.stdout
    again = hushdrop(settings.source, "api", "add-token", "bazarr")
    assert again.returncode != 0 and "exists already" in again.stdout + again.stderr


def test_requests_need_a_valid_token_even_from_loopback_and_a_revoked_one_is_refused(tmp_path):
    settings = settings_with_api(tmp_path)
    token = add_token(settings, "scripts")
    with client_for(settings) as http:  # from 127.0.0.1
        missing = http.get("/v1/models")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "invalid_api_key" and "add-token" in missing.json()["error"]["message"]
        assert "set-cookie" not in missing.headers  # the API never starts a page session
        ok = http.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "whisper-1" in [m["id"] for m in ok.json()["data"]]
        asr = http.post("/asr", headers={"Authorization": "Bearer nope"})
        assert asr.status_code == 401 and "detail" in asr.json()  # whisper-asr-webservice's shape
        revoked = hushdrop(settings.source, "api", "revoke-token", "scripts")
        assert revoked.returncode == 0, revoked.stdout
        gone = http.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert gone.status_code == 401 and "not valid" in gone.json()["error"]["message"]


def test_a_page_session_cannot_call_the_api_and_a_token_cannot_open_the_page(tmp_path):
    settings = settings_with_api(tmp_path)
    token = add_token(settings, "scripts")
    with client_for(settings) as http:
        assert http.get("/").status_code == 200  # the page, local, no password: a session cookie
        assert http.cookies
        assert http.get("/v1/models").status_code == 401  # the cookie is no token
        # an API request skips the page's CSRF check (no cookie is read), yet needs its token
        refused = http.post("/v1/audio/transcriptions", headers={"Origin": "http://evil.example"})
        assert refused.status_code == 401


def test_wrong_tokens_are_rate_limited_per_address_like_wrong_passwords(tmp_path):
    settings = settings_with_api(tmp_path)
    token = add_token(settings, "scripts")
    with client_for(settings, peer="127.0.0.1") as http:
        for _ in range(5):
            assert http.get("/v1/models", headers={"Authorization": "Bearer hd-guess"}).status_code == 401
        limited = http.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert limited.json()["error"]["type"] == "rate_limit_error"
    with client_for(settings, peer="127.0.0.2") as other:  # another address is not held back
        assert other.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_loopback_without_token_lets_in_only_direct_local_requests(tmp_path):
    settings = settings_with_api(tmp_path, loopback_without_token=True)
    with client_for(settings) as http:
        assert http.get("/v1/models").status_code == 200
        proxied = http.get("/v1/models", headers={"X-Forwarded-For": "203.0.113.5"})
        assert proxied.status_code == 401  # through a proxy: someone else, who needs a token
        assert http.get("/v1/models", headers={"Authorization": "Bearer hd-wrong"}).status_code == 401


def test_the_api_is_off_by_default(tmp_path):
    settings = web_settings(tmp_path / "site")
    assert settings.api.enabled is False
    with client_for(settings) as http:
        off = http.get("/v1/models")
        assert off.status_code == 404 and "api.enabled" in off.json()["error"]["message"]
        assert http.post("/asr").status_code == 404


@pytest.mark.parametrize("api, problem", [
    ({"enabled": True, "profile": "nope"}, "api.profile: no profile named 'nope'"),
    ({"concurrent_jobs": 0}, "concurrent_jobs"),
    ({"surprise": 1}, "surprise"),
])
def test_api_settings_are_checked_when_the_config_loads(tmp_path, api, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config({"api": api}, tmp_path / "config.yaml")
    assert any(problem in p for p in caught.value.problems), caught.value.problems
