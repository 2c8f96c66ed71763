"""The page behind a real reverse proxy: Debian's nginx in front of a real ``hushdrop web``.

A proxy on this machine connects from 127.0.0.1 on behalf of whoever reached it, so without a
password nothing but ``/healthz`` may answer through it; with a password and the proxy named in
``web.trusted_proxies``, each client behind it is counted apart by the login limit."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from hushdrop.pipeline.config import Settings, parse_config
from hushdrop.pipeline.watch.ledger import Ledger
from hushdrop.pipeline.web.security import hash_password
from tests.web.conftest import WebProcess, add_done_job, cheap_wav, csrf_of, free_port, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
PASSWORD = "correct horse battery"

if NGINX is None and os.environ.get("HUSHDROP_NO_NGINX") != "1":
    pytest.fail(
        "the proxy tests need Debian's nginx: `make test-deps` installs it (apt-get install nginx-light); "
        "set HUSHDROP_NO_NGINX=1 to skip them knowingly",
        pytrace=False,
    )
pytestmark = pytest.mark.skipif(NGINX is None, reason="HUSHDROP_NO_NGINX=1 and no nginx")

# What docs/web.md tells people to write; BARE is nginx's default, which adds no header at all.
FORWARDING = """
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;"""
BARE = ""


class Nginx:
    """nginx in the foreground as the current user, one process, every path under ``folder``."""

    def __init__(self, folder: Path, upstream_port: int, headers: str):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True)
        temp = {kind: folder / kind for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for path in temp.values():
            path.mkdir()
        (folder / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    server {{
        listen 127.0.0.1:{self.port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_request_buffering off;{headers}
        }}
    }}
}}
""")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(folder / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: self.proc.poll() is not None or self._accepts(), 30, "nginx to listen")
        assert self.proc.poll() is None, (folder / "error.log").read_text()

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def browser(base_url: str, **headers: str) -> httpx.Client:
    """An HTTP client that talks only to ``base_url`` (no proxy from the environment)."""
    return httpx.Client(base_url=base_url, follow_redirects=False, trust_env=False, timeout=30, headers=headers)


def settings_of(server: WebProcess) -> Settings:
    return parse_config(yaml.safe_load(server.config_path.read_text()), server.config_path)


@pytest.fixture
def site(tmp_path):
    """Start a ``hushdrop web`` with a web: section, and nginx instances in front of it."""
    started: list = []

    def start(web: dict) -> tuple[WebProcess, int]:
        server = WebProcess(tmp_path / "site", {"profiles": {"default": {"originals": "shred"}}, "web": dict(web)}).start()
        started.append(server)
        ledger = Ledger(settings_of(server).ledger_path)
        try:
            job_id = add_done_job(settings_of(server), ledger)
        finally:
            ledger.close()
        return server, job_id

    def proxy(server: WebProcess, headers: str, name: str) -> Nginx:
        front = Nginx(tmp_path / name, server.port, headers)
        started.append(front)
        return front

    yield start, proxy
    for thing in reversed(started):
        thing.stop()


def sensitive_paths(job_id: int) -> list[str]:
    return ["/", "/api/jobs", f"/api/jobs/{job_id}", f"/jobs/{job_id}", f"/jobs/{job_id}/files/meeting.txt",
            f"/jobs/{job_id}/original", "/search?q=beans", "/api/search?q=beans", "/metrics", "/readyz", "/login"]


def test_through_nginx_a_page_without_a_password_shows_nothing(site):
    start, proxy = site
    server, job_id = start({})
    direct = browser(server.url)
    # straight from this machine the page needs no password, and it does hold the transcript
    assert "beans" in direct.get("/api/search?q=beans").text
    assert direct.get(f"/jobs/{job_id}/files/meeting.txt").status_code == 200
    assert direct.get("/metrics").status_code == 200
    for style, headers in (("bare", BARE), ("forwarding", FORWARDING)):
        front = proxy(server, headers, f"nginx-{style}")
        with browser(front.url) as outside:
            for path in sensitive_paths(job_id):
                response = outside.get(path)
                assert response.status_code == 403, (style, path, response.status_code)
                assert "hushdrop web --set-password" in response.text, (style, path)
                assert "beans" not in response.text and "meeting" not in response.text, (style, path)
            upload = outside.post("/api/uploads", params={"name": "x.wav"}, content=cheap_wav(1),
                                  headers={"Origin": front.url})
            assert upload.status_code == 403, style
            assert outside.get("/healthz").json() == {"status": "ok"}
    assert not any(settings_of(server).inbox.rglob("x*.wav"))


def test_a_refused_upload_through_nginx_gets_its_answer_not_a_502(site):
    """The page refuses before it reads the body; were it to close with 4 MB unread, the kernel would
    reset the connection while nginx still streams the body (proxy_request_buffering off), and the
    browser would see 502 Bad Gateway instead of the 403 that says what to do."""
    start, proxy = site
    server, _ = start({})
    front = proxy(server, BARE, "nginx-bare")
    body = cheap_wav(1) + bytes(4 << 20)
    with browser(front.url) as outside:
        for attempt in range(5):
            upload = outside.post("/api/uploads", params={"name": "big.wav"}, content=body, headers={"Origin": front.url})
            assert upload.status_code == 403, (attempt, upload.status_code, upload.text[:200])
            assert "hushdrop web --set-password" in upload.text
    assert not any(settings_of(server).inbox.rglob("big*.wav"))


def test_a_forged_forwarding_header_sent_straight_to_the_page_makes_the_request_remote(site):
    start, _ = site
    server, job_id = start({})
    for header, value in (("X-Forwarded-For", "127.0.0.1"), ("X-Real-IP", "127.0.0.1"), ("Forwarded", "for=127.0.0.1"),
                          ("X-Forwarded-Host", "127.0.0.1:8765")):
        with browser(server.url, **{header: value}) as forged:
            response = forged.get("/api/search?q=beans")
            assert response.status_code == 403 and "beans" not in response.text, header
            assert forged.get("/metrics").status_code == 403, header


def test_behind_a_trusted_nginx_one_clients_lockout_leaves_the_others_alone(site):
    start, proxy = site
    server, job_id = start({"password_hash": hash_password(PASSWORD, n=2**10), "trusted_proxies": ["127.0.0.1"]})
    front = proxy(server, FORWARDING, "nginx")
    with browser(front.url) as anyone:
        for path in sensitive_paths(job_id):
            if path == "/login":
                continue
            response = anyone.get(path)
            assert response.status_code in (401, 303), (path, response.status_code)
            assert "beans" not in response.text, path

    def log_in(client: httpx.Client, password: str) -> httpx.Response:
        token = csrf_of(client, "/login")
        return client.post("/login", data={"password": password, "csrf": token}, headers={"Origin": front.url})

    # nginx appends the address it saw to what the client sent: "198.51.100.7, 127.0.0.1";
    # the right-most address that is not a trusted proxy is the client
    with browser(front.url, **{"X-Forwarded-For": "198.51.100.7"}) as guesser:
        for _ in range(5):
            assert log_in(guesser, "guess").status_code == 401
        assert log_in(guesser, PASSWORD).status_code == 429
    with browser(front.url, **{"X-Forwarded-For": "198.51.100.8"}) as owner:
        assert log_in(owner, PASSWORD).status_code == 303
        assert "beans" in owner.get("/api/search?q=beans").text
        assert owner.get("/metrics").status_code == 200
        # a change through the proxy: the browser's Origin is the proxy's, named by X-Forwarded-Host
        token = csrf_of(owner, "/")
        upload = owner.post("/api/uploads", params={"name": "through-proxy.wav"}, content=cheap_wav(2),
                            headers={"Origin": front.url, "X-CSRF-Token": token})
        assert upload.status_code == 201, upload.text
        forged_origin = owner.post("/api/uploads", params={"name": "other.wav"}, content=cheap_wav(3),
                                   headers={"Origin": "http://evil.example", "X-CSRF-Token": token})
        assert forged_origin.status_code == 403
    assert [p.name for p in settings_of(server).inbox.rglob("*.wav")] == ["through-proxy.wav"]
    # straight from this machine, with no header, /metrics is still open without a login
    assert browser(server.url).get("/metrics").status_code == 200
