"""Who may use the page: loopback by default, a password anywhere else, signed strict cookies,
Origin and CSRF on every change, a limit on wrong passwords, and headers that keep the page
to itself."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.web.security import SESSION_COOKIE, hash_password, verify_password
from hushdrop.pipeline.web.server import set_yaml_password
from tests.harness import REPO
from tests.web.conftest import BASE, WebProcess, client_for, csrf_of, free_port, unsafe_headers, web_settings

LAN = "http://192.0.2.10:8765"  # a documentation address: nothing is ever sent there
PASSWORD = "correct horse battery"


@pytest.fixture
def lan(tmp_path):
    """The page on every address, with a password (a cheap scrypt cost keeps the test fast)."""
    settings = web_settings(tmp_path / "site", {"listen": "0.0.0.0:8765", "password_hash": hash_password(PASSWORD, n=2**10)})
    with client_for(settings, base_url=LAN) as client:
        yield client


def login(client, password=PASSWORD):
    token = csrf_of(client, "/login")
    return client.post("/login", data={"password": password, "csrf": token}, headers={"Origin": LAN})


def test_scrypt_hashes_verify_and_differ_each_time():
    first, second = hash_password("s3cret pass", n=2**10), hash_password("s3cret pass", n=2**10)
    assert first.startswith("scrypt$1024$8$1$") and first != second
    assert verify_password("s3cret pass", first) and verify_password("s3cret pass", second)
    assert not verify_password("s3cret pasS", first)
    assert not verify_password("x", "scrypt$garbage") and not verify_password("x", "md5$abc")


def test_off_loopback_the_page_will_not_start_without_a_password(tmp_path):
    settings = web_settings(tmp_path / "site", {"listen": "0.0.0.0:8765"})
    with pytest.raises(ConfigError, match="needs a password"):
        client_for(settings)
    config = tmp_path / "site" / "config.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(config), "web", "--listen", f"0.0.0.0:{free_port()}"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.returncode == 2 and "--set-password" in proc.stderr


def test_a_loopback_server_answers_only_to_loopback_host_names(client):
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:8765"}).status_code == 200
    # a DNS-rebinding page reaches 127.0.0.1 under its own name: refused
    rebound = client.get("/api/jobs", headers={"Host": "attacker.example:8765"})
    assert rebound.status_code == 421 and "jobs" not in rebound.text


def test_off_loopback_everything_but_health_needs_the_password(lan):
    assert lan.get("/healthz").json() == {"status": "ok"}
    page = lan.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    for path in ("/api/jobs", "/api/search?q=x", "/api/jobs/1", "/jobs/1/files/a.txt", "/readyz", "/metrics"):
        assert lan.get(path).status_code in (401, 303), path
    login_page = lan.get("/login")
    assert login_page.status_code == 200 and 'type="password"' in login_page.text
    assert 'id="cleartext"' in login_page.text  # no TLS: it says the password crosses the network in clear


def test_a_wrong_password_is_refused_and_the_right_one_gives_a_strict_httponly_cookie(lan):
    wrong = login(lan, "not it")
    assert wrong.status_code == 401 and 'id="login-error"' in wrong.text
    right = login(lan)
    assert right.status_code == 303 and right.headers["location"] == "/"
    cookie = next(c for c in right.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert lan.get("/").status_code == 200
    assert lan.get("/api/jobs").status_code == 200


def test_a_tampered_or_foreign_session_cookie_is_not_a_login(lan, tmp_path):
    assert login(lan).status_code == 303
    value = lan.cookies.get(SESSION_COOKIE)
    payload, _, signature = value.rpartition(".")
    lan.cookies.clear()
    lan.cookies.set(SESSION_COOKIE, payload + "." + signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB"))
    assert lan.get("/api/jobs").status_code == 401
    # a cookie signed by another installation's key is worthless here
    other = web_settings(tmp_path / "other", {"listen": "0.0.0.0:8765", "password_hash": hash_password(PASSWORD, n=2**10)})
    with client_for(other, base_url=LAN) as elsewhere:
        assert login(elsewhere).status_code == 303
        lan.cookies.clear()
        lan.cookies.set(SESSION_COOKIE, elsewhere.cookies.get(SESSION_COOKIE))
    assert lan.get("/api/jobs").status_code == 401


def test_changing_the_password_ends_every_session(lan, tmp_path):
    assert login(lan).status_code == 303
    cookie = lan.cookies.get(SESSION_COOKIE)
    settings = lan.app.state.web.settings
    changed = settings.model_copy(update={"web": settings.web.model_copy(update={"password_hash": hash_password("another one", n=2**10)})})
    with client_for(changed, base_url=LAN) as after:
        after.cookies.set(SESSION_COOKIE, cookie)
        assert after.get("/api/jobs").status_code == 401


def test_wrong_passwords_are_rate_limited(lan):
    for _ in range(5):
        assert login(lan, "guess").status_code == 401
    limited = login(lan)  # even the right password, until the window passes
    assert limited.status_code == 429 and 'id="login-error"' in limited.text
    assert lan.get("/api/jobs").status_code == 401


def test_every_change_needs_the_pages_origin_and_its_csrf_token(client):
    token = csrf_of(client)
    url = "/api/uploads?name=x.wav"
    assert client.post(url, content=b"RIFF", headers={"X-CSRF-Token": token}).status_code == 403  # no Origin
    assert client.post(url, content=b"RIFF", headers={"Origin": "http://evil.example", "X-CSRF-Token": token}).status_code == 403
    assert client.post(url, content=b"RIFF", headers={"Origin": "null", "X-CSRF-Token": token}).status_code == 403
    assert client.post(url, content=b"RIFF", headers={"Origin": BASE}).status_code == 403  # no token
    assert client.post(url, content=b"RIFF", headers={"Origin": BASE, "X-CSRF-Token": "forged"}).status_code == 403
    for method, path in (("PUT", "/api/jobs/1/transcript"), ("POST", "/api/jobs/1/retry"), ("POST", "/api/jobs/1/delete"),
                         ("POST", "/logout")):
        assert client.request(method, path, headers={"Origin": BASE}).status_code == 403, path
    assert client.post(url, content=b"RIFF", headers=unsafe_headers(client, token)).status_code == 201


def test_the_login_form_checks_origin_and_token_too(lan):
    token = csrf_of(lan, "/login")
    assert lan.post("/login", data={"password": PASSWORD, "csrf": token}).status_code == 403
    assert lan.post("/login", data={"password": PASSWORD, "csrf": "forged"}, headers={"Origin": LAN}).status_code == 403
    assert lan.get("/api/jobs").status_code == 401


def test_every_response_keeps_the_page_to_itself(client):
    for path in ("/", "/healthz", "/static/app.css", "/static/drop.js", "/search?q=x", "/no/such/page", "/api/jobs"):
        response = client.get(path)
        assert response.headers["content-security-policy"].startswith("default-src 'self'"), path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_metrics_and_readiness_are_for_this_machine_or_a_logged_in_user(lan):
    assert lan.get("/metrics").status_code == 401
    assert login(lan).status_code == 303
    assert lan.get("/metrics").status_code == 200


def test_set_password_writes_only_the_hash_and_keeps_the_comments(tmp_path):
    text = "# my settings\ninbox: inbox  # the NAS share\nweb:\n  enabled: true  # serve it\n  listen: 0.0.0.0:8765\n"
    new = set_yaml_password(text, "scrypt$1024$8$1$c2FsdA$aGFzaA")
    assert "# the NAS share" in new and "# serve it" in new
    assert yaml.safe_load(new)["web"] == {"enabled": True, "listen": "0.0.0.0:8765", "password_hash": "scrypt$1024$8$1$c2FsdA$aGFzaA"}
    again = set_yaml_password(new, "scrypt$1024$8$1$b3RoZXI$b3RoZXI")
    assert yaml.safe_load(again)["web"]["password_hash"] == "scrypt$1024$8$1$b3RoZXI$b3RoZXI"
    assert again.count("password_hash") == 1
    assert yaml.safe_load(set_yaml_password("profiles: {}\n", "scrypt$1$1$1$a$b"))["web"] == {"password_hash": "scrypt$1$1$1$a$b"}

    config = tmp_path / "config.yaml"
    config.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(config), "web", "--set-password"],
        input="a long enough password\n", capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    stored = yaml.safe_load(config.read_text())["web"]["password_hash"]
    assert verify_password("a long enough password", stored) and "a long enough password" not in config.read_text()
    assert "# the NAS share" in config.read_text()


def test_raw_dot_segments_reach_no_file_on_a_real_server(tmp_path):
    """A client that does not fold "../" (curl --path-as-is, a script) gets nothing either."""
    import socket

    server = WebProcess(tmp_path / "site", {"profiles": {"default": {"originals": "shred"}}}).start()
    (tmp_path / "site" / "secret.txt").write_text("SECRET")
    try:
        for target in ("/jobs/1/files/../../../config.yaml", "/static/../../../../config.yaml", "/static/../app.py",
                       "/static/..%2f..%2fapp.py", "/jobs/1/files/..%2f..%2fsecret.txt", "//etc/passwd",
                       "/jobs/1/original/../../secret.txt", "/%2e%2e/%2e%2e/secret.txt"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
                conn.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode())
                reply = b""
                while chunk := conn.recv(65536):
                    reply += chunk
            status = reply.split(b" ", 2)[1]
            assert status in (b"404", b"400", b"422"), (target, reply[:200])
            assert b"SECRET" not in reply and b"profiles" not in reply and b"root:" not in reply and b"def " not in reply, target
    finally:
        server.stop()


def test_a_forwarding_header_makes_a_request_from_this_machine_remote(client):
    """Without a password only direct requests from this machine are served: a proxy there
    connects from 127.0.0.1 for anyone, and its headers give it away."""
    assert client.get("/api/jobs").status_code == 200 and client.get("/metrics").status_code == 200
    for header, value in (("X-Forwarded-For", "127.0.0.1"), ("Forwarded", 'for="[::1]"'), ("X-Real-IP", "127.0.0.1"),
                          ("X-Forwarded-Host", "localhost:8765")):
        for path in ("/", "/api/jobs", "/metrics", "/readyz", "/search?q=x", "/api/search?q=x"):
            refused = client.get(path, headers={header: value})
            assert refused.status_code == 403 and "--set-password" in refused.text, (header, path)
        assert client.get("/healthz", headers={header: value}).json() == {"status": "ok"}
    page = client.get("/", headers={"X-Forwarded-For": "203.0.113.5"})
    assert page.headers["content-type"].startswith("text/html") and 'id="needs-password"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def loopback_with_password(tmp_path, base_url=BASE, **web):
    settings = web_settings(tmp_path / "site", {"password_hash": hash_password(PASSWORD, n=2**10), **web})
    return client_for(settings, base_url=base_url)


def test_a_forged_forwarded_for_from_an_untrusted_client_does_not_dodge_the_login_limit(tmp_path):
    with loopback_with_password(tmp_path) as client:
        for n in range(5):
            token = csrf_of(client, "/login")
            wrong = client.post("/login", data={"password": "guess", "csrf": token},
                                headers={"Origin": BASE, "X-Forwarded-For": f"198.51.100.{n}"})
            assert wrong.status_code == 401
        token = csrf_of(client, "/login")
        again = client.post("/login", data={"password": PASSWORD, "csrf": token},
                            headers={"Origin": BASE, "X-Forwarded-For": "198.51.100.99"})
        assert again.status_code == 429
        # and with a header, /metrics is no longer "this machine"
        assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 401
        assert client.get("/metrics").status_code == 200


def test_the_client_behind_a_trusted_proxy_is_the_right_most_address_it_does_not_trust():
    from starlette.datastructures import Headers

    from hushdrop.pipeline.web.address import client_of, parse_networks

    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])

    def who(peer, http_version="1.1", **headers):
        return client_of(peer, Headers({k.replace("_", "-"): v for k, v in headers.items()}), trusted, http_version)

    assert who("127.0.0.1").local and who("::1").local and not who("127.0.0.1").proxied
    assert who("::ffff:127.0.0.1").address == "127.0.0.1"
    assert not who("192.0.2.4").local and who("192.0.2.4").address == "192.0.2.4"
    assert not who("127.0.0.1", http_version="1.0").local  # nginx's bare proxy_pass speaks HTTP/1.0
    # a client's own entries come first; each proxy appends the address it saw
    chained = who("127.0.0.1", x_forwarded_for="127.0.0.1, 198.51.100.7, 10.1.2.3")
    assert chained.address == "198.51.100.7" and not chained.local and chained.proxied
    assert who("127.0.0.1", forwarded='for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711"').address == "2001:db8:cafe::17"
    assert who("127.0.0.1", x_real_ip="192.0.2.9").address == "192.0.2.9"
    # every hop trusted: the first one, and still not local (a proxy's word cannot be checked)
    inside = who("127.0.0.1", x_forwarded_for="127.0.0.1")
    assert inside.address == "127.0.0.1" and not inside.local
    # from a peer that is not trusted the headers change nothing but make it remote
    spoofed = who("192.0.2.4", x_forwarded_for="127.0.0.1", x_forwarded_proto="https", x_forwarded_host="bank.example")
    assert spoofed.address == "192.0.2.4" and not spoofed.local and spoofed.origin is None and not spoofed.https
    public = who("10.0.0.2", x_forwarded_for="192.0.2.5", x_forwarded_proto="https", x_forwarded_host="Notes.Example:8443")
    assert public.origin == "https://notes.example:8443" and public.https
    assert who("10.0.0.2", x_forwarded_for="192.0.2.5", x_forwarded_proto="javascript", x_forwarded_host="x").origin is None


def test_trusted_proxies_must_be_addresses_or_blocks(tmp_path):
    settings = web_settings(tmp_path / "ok", {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]})
    assert settings.web.trusted_proxies == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert web_settings(tmp_path / "default").web.trusted_proxies == []
    with pytest.raises(ConfigError, match="proxy.example.*not an IP address or CIDR block"):
        web_settings(tmp_path / "bad", {"trusted_proxies": ["proxy.example"]})


def test_behind_a_trusted_https_proxy_the_cookie_is_secure_and_the_login_is_not_cleartext(tmp_path):
    public = {"X-Forwarded-For": "192.0.2.5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "notes.example"}
    # the proxy speaks HTTP to the page, the browser HTTPS to the proxy (so its cookie jar sends a Secure cookie)
    with loopback_with_password(tmp_path, "https://127.0.0.1:8765", trusted_proxies=["127.0.0.1"]) as client:
        client.headers.update(public)
        login_page = client.get("/login")
        assert 'id="cleartext"' not in login_page.text
        token = csrf_of(client, "/login")
        right = client.post("/login", data={"password": PASSWORD, "csrf": token}, headers={"Origin": "https://notes.example"})
        assert right.status_code == 303
        cookie = next(c for c in right.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
        assert "secure" in {part.strip().lower() for part in cookie.split(";")}
    # the same headers from a client that is not a trusted proxy name no origin
    with loopback_with_password(tmp_path / "untrusted") as client:
        client.headers.update(public)
        assert 'id="cleartext"' in client.get("/login").text
        token = csrf_of(client, "/login")
        refused = client.post("/login", data={"password": PASSWORD, "csrf": token}, headers={"Origin": "https://notes.example"})
        assert refused.status_code == 403


def test_an_ipv6_client_is_limited_by_its_64():
    from hushdrop.pipeline.web.security import LoginLimiter

    limiter = LoginLimiter(per_client=2)
    limiter.failed("2001:db8:1:2::a")
    limiter.failed("2001:db8:1:2:ffff::b")  # the same host's /64, another address
    assert limiter.retry_after("2001:db8:1:2::c") > 0
    assert limiter.retry_after("2001:db8:1:3::a") == 0 and limiter.retry_after("192.0.2.1") == 0


def _who(peer, trusted=("127.0.0.1",), http_version="1.1", **headers):
    from starlette.datastructures import Headers

    from hushdrop.pipeline.web.address import client_of, parse_networks

    return client_of(peer, Headers({k.replace("_", "-"): v for k, v in headers.items()}), parse_networks(trusted), http_version)


@pytest.mark.parametrize("header", ["via", "x_forwarded_proto", "x_forwarded_port", "x_forwarded_server", "x_client_ip"])
def test_any_header_a_proxy_announces_itself_with_makes_a_loopback_request_remote(header):
    assert _who("127.0.0.1", trusted=(), **{header: "1.1 nginx" if header == "via" else "https"}).local is False
    assert _who("127.0.0.1", trusted=()).local is True


def test_a_forged_x_forwarded_for_behind_a_proxy_that_sets_x_real_ip_buys_no_fresh_logins():
    from hushdrop.pipeline.web.security import LoginLimiter

    limiter = LoginLimiter(per_client=5)
    # nginx with only `proxy_set_header X-Real-IP $remote_addr` passes the client's own XFF through
    forged = {_who("127.0.0.1", x_real_ip="192.0.2.60", x_forwarded_for=f"203.0.113.{k}").address for k in range(12)}
    assert len(forged) == 1, forged
    (one,) = forged
    for _ in range(5):
        limiter.failed(one)
    assert limiter.retry_after(one) > 0
    # a proxy that sets both from the connection agrees with itself: the client is the client
    agreed = _who("127.0.0.1", x_real_ip="192.0.2.61", x_forwarded_for="203.0.113.9, 192.0.2.61")
    assert agreed.address == "192.0.2.61"


def test_a_flood_of_wrong_guesses_from_many_addresses_never_locks_out_a_client_that_has_not_failed():
    from hushdrop.pipeline.web.security import LoginLimiter

    limiter = LoginLimiter(per_client=5, overall=50)
    for k in range(10):
        for _ in range(5):
            limiter.failed(f"198.51.100.{k}")
    assert limiter.retry_after("198.51.100.0") > 0  # each attacker is held back
    assert limiter.retry_after("192.0.2.50") == 0  # the owner, who has not failed, may still log in
    limiter.failed("192.0.2.50")
    assert limiter.retry_after("192.0.2.50") > 0  # one failure during the flood: the overall limit holds it


@pytest.mark.parametrize("host", ["localhost:80@elsewhere.example", "localhost:8765, elsewhere.example",
                                  "127.0.0.1:x", "user@127.0.0.1", "[::1", ""])
def test_a_host_header_that_is_not_host_and_port_is_no_loopback(host):
    from hushdrop.pipeline.web.address import host_of, is_loopback

    assert not is_loopback(host_of(host))
    assert is_loopback(host_of("127.0.0.1:8765")) and is_loopback(host_of("[::1]:8765")) and is_loopback(host_of("localhost"))
