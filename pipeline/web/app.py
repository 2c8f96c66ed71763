"""The web page's routes, and the guard every request passes first.

The guard (a plain ASGI middleware) decides before any route runs:

1. a server on a loopback address answers only requests whose ``Host`` is a loopback
   name (a DNS-rebinding page cannot talk to it);
2. who is asking (``address.client_of``): the connection's peer, or the client named by a
   proxy listed in ``web.trusted_proxies``; a request is *local* only when it comes straight
   from this machine with no forwarding header (``Forwarded``, ``X-Forwarded-For``,
   ``X-Real-IP``, ``X-Forwarded-Host``) — a proxy connects from 127.0.0.1 for anyone;
3. without a password only local requests are served: anything else but ``/healthz`` and
   ``/static/`` gets a 403 that says to set one;
4. the session comes from its signed cookie, or a new one is made (for its CSRF token);
5. ``/healthz``, ``/static/``, ``/login`` and ``/lang/`` are open; ``/readyz`` and
   ``/metrics`` are open to local requests; everything else needs the password when one is
   set (a page answers with the login page, the API with 401);
6. every request that changes something (not GET/HEAD) must carry ``Origin`` equal to
   the page's own (or, from a trusted proxy, the one its ``X-Forwarded-Proto``/``-Host``
   name) and the session's CSRF token (``X-CSRF-Token``, or the login form's field), else 403;
7. every response gets ``Content-Security-Policy: default-src 'self'`` and the usual
   headers; a new session's cookie is HttpOnly, SameSite=Strict (and Secure over HTTPS,
   or when a trusted proxy says the browser used HTTPS).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
import unicodedata
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hushdrop.pipeline.config import Settings, known_languages
from hushdrop.pipeline.errors import ConfigError
from hushdrop.pipeline.fsutil import private_dir
from hushdrop.pipeline.watch.ledger import Ledger, LedgerCorrupt, State
from hushdrop.pipeline.names import display_name
from hushdrop.pipeline.outputs import short_clock
from hushdrop.pipeline.watch import quarantine
from hushdrop.pipeline.web import i18n, jobs as jobviews, uploads
from hushdrop.pipeline.web.address import Client, client_of, host_of, is_loopback, parse_listen, parse_networks
from hushdrop.pipeline.web.catalog import Catalog, CatalogUnavailable
from hushdrop.pipeline.web.metrics import LedgerCollector, watcher_running
from hushdrop.pipeline.web.security import SESSION_COOKIE, SESSION_SECONDS, LoginLimiter, Session, SessionSigner, load_key, same_token, verify_password

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PREFIXES = ("/static/", "/lang/")
OPEN_PATHS = frozenset({"/healthz", "/login", "/favicon.ico"})
LOCAL_PATHS = frozenset({"/readyz", "/metrics"})
JSON_BODY_LIMIT = 8 << 20
PREVIEW_LIMIT_MB = 200
MIN_FREE_BYTES = 100 << 20


class WebState:
    """Everything the routes share: the settings, a ledger connection, the catalog, the keys."""

    def __init__(self, settings: Settings, listen: str | None = None, tls: bool | None = None):
        self.settings = settings
        self.listen = listen or settings.web.listen
        self.host, self.port = parse_listen(self.listen)
        self.loopback = is_loopback(self.host)
        self.tls = bool(settings.web.tls_cert) if tls is None else tls
        self.password_hash = settings.web.password_hash
        if not self.loopback and not self.password_hash:
            raise ConfigError(str(settings.source), [
                f"web.listen: {self.listen} is reachable from other machines, so the page needs a password: "
                f"run `hushdrop web --set-password` (or listen on 127.0.0.1)"
            ])
        private_dir(settings.workdir)
        self.ledger = Ledger(settings.ledger_path)
        self.catalog = Catalog(settings.workdir / "web-catalog.sqlite3", self.ledger)
        self.signer = SessionSigner(load_key(settings.workdir / "web-session.key"), self.password_hash)
        self.limiter = LoginLimiter()
        self.trusted_proxies = parse_networks(settings.web.trusted_proxies)
        self.tracker = jobviews.ProgressTracker()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LedgerCollector(settings, self.ledger, self.catalog))
        uploads.sweep_stale(settings)

    def close(self) -> None:
        self.catalog.close()
        self.ledger.close()

    def cookie(self, session: Session, https: bool = False) -> str:
        parts = [
            f"{SESSION_COOKIE}={self.signer.dump(session)}", "Path=/", "HttpOnly", "SameSite=Strict",
            f"Max-Age={SESSION_SECONDS}",
        ]
        if self.tls or https:
            parts.append("Secure")
        return "; ".join(parts)


class Guard:
    def __init__(self, app: ASGIApp, web: WebState):
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        web = self.web
        path = scope["path"]
        host_header = request.headers.get("host", "")
        if web.loopback and not is_loopback(host_of(host_header)):
            await PlainTextResponse("this server answers only to localhost", 421, headers=_security_headers())(scope, receive, send)
            return
        peer = scope.get("client")
        client = client_of(peer[0] if peer else None, request.headers, web.trusted_proxies, scope.get("http_version", "1.1"))
        scope.setdefault("state", {})["client"] = client
        if web.password_hash is None and not client.local and not (path == "/healthz" or path.startswith("/static/")):
            await _needs_a_password(scope)(scope, receive, send)
            return
        session = web.signer.load(request.cookies.get(SESSION_COOKIE)) or Session.fresh(web.signer.fingerprint)
        scope["state"]["session"] = session
        authed = web.password_hash is None or session.authed
        response: Response | None = None
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            pass
        elif path in LOCAL_PATHS:
            if not (client.local or authed):
                response = JSONResponse({"error": "log in first, or ask from this machine"}, 401)
        elif not authed:
            wants_page = scope["method"] == "GET" and not path.startswith("/api/")
            response = RedirectResponse("/login", 303) if wants_page else JSONResponse({"error": "log in first"}, 401)
        if response is None and scope["method"] not in SAFE_METHODS:
            expected = {f"{'https' if web.tls else 'http'}://{host_header}".lower()} | ({client.origin} if client.origin else set())
            origin = (request.headers.get("origin") or "").lower()
            if origin not in expected:
                response = JSONResponse({"error": "refused: the request did not come from this page (Origin)"}, 403)
            elif path != "/login" and not same_token(request.headers.get("x-csrf-token"), session.csrf):
                response = JSONResponse({"error": "refused: missing or wrong CSRF token; reload the page"}, 403)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in _security_headers().items():
                    headers.setdefault(key, value)
                current = scope["state"].get("session")
                if current is not None and current.new:
                    headers.append("set-cookie", web.cookie(current, https=client.https))
            await send(message)

        if response is not None:
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


NEEDS_A_PASSWORD = (
    "this page has no password, so it answers only to this machine directly, not through a proxy "
    "or from elsewhere: run `hushdrop web --set-password` (docs/web.md, \"Behind a reverse proxy\")"
)


def _needs_a_password(scope: Scope) -> Response:
    """The 403 for a proxied or remote request to a page without a password: it says what to do
    and shows nothing of the page."""
    headers = _security_headers()
    if scope["method"] == "GET" and not scope["path"].startswith("/api/") and scope["path"] not in LOCAL_PATHS:
        text = NEEDS_A_PASSWORD.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
        body = f'<!doctype html><meta charset="utf-8"><title>hushdrop: password needed</title><p id="needs-password">{text}</p>\n'
        return HTMLResponse(body, 403, headers=headers)
    return JSONResponse({"error": NEEDS_A_PASSWORD}, 403, headers=headers)


def _security_headers() -> dict[str, str]:
    return {
        "content-security-policy": CSP,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
        "cache-control": "no-store",
    }


# -- helpers for the templates ------------------------------------------------------------


def duration_hundredths(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    centis = int(round(max(0.0, float(seconds)) * 100))
    h, rem = divmod(centis, 360_000)
    m, rem = divmod(rem, 6000)
    s, c = divmod(rem, 100)
    return f"{h:02d}:{m:02d}:{s:02d}.{c:02d}"


def human_size(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def local_time(timestamp: float | str | None) -> str:
    if timestamp is None:
        return "—"
    if isinstance(timestamp, str):
        timestamp = jobviews.timestamp_of(timestamp) or 0
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


_TOKEN = re.compile(r"\s+|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\s\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+")


def timed_tokens(segment: dict[str, Any]) -> list[tuple[str, float | None]]:
    """The segment's text cut into words (a Han character each), each with a time to seek to:
    the engine's word times spread over the corrected text's words in order."""
    text = str(segment.get("text") or "")
    pieces = _TOKEN.findall(text)
    words = [w for w in segment.get("words") or [] if isinstance(w, dict)]
    count = sum(1 for p in pieces if not p.isspace())
    start = float(segment.get("start") or 0.0)
    end = float(segment.get("end") or start)
    out: list[tuple[str, float | None]] = []
    i = 0
    for piece in pieces:
        if piece.isspace():
            out.append((" ", None))
            continue
        if words:
            at = float(words[min(len(words) - 1, i * len(words) // max(1, count))].get("start") or start)
        else:
            at = start + (end - start) * i / max(1, count)
        out.append((piece, round(at, 3)))
        i += 1
    return out


def transcript_items(record: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for index, segment in enumerate(record.get("segments") or []):
        if not segment.get("text"):
            continue
        items.append({
            "kind": "segment", "index": index, "start": float(segment.get("start") or 0.0),
            "end": float(segment.get("end") or 0.0), "stamp": short_clock(float(segment.get("start") or 0.0)),
            "text": segment.get("text"), "tokens": timed_tokens(segment), "edited": bool(segment.get("edited")),
        })
    for event in record.get("events") or []:
        start = float(event.get("start") or 0.0)
        end = float(event.get("end") or start)
        items.append({
            "kind": "event", "start": start, "end": end, "stamp": short_clock(start),
            "text": f"[{event.get('kind')}, {end - start:.0f} s]",
        })
    items.sort(key=lambda item: (item["start"], item["kind"] != "event"))
    return items


def language_choices(web: WebState, lang: str) -> list[dict[str, Any]]:
    profiles = []
    for profile in web.settings.profiles.values():
        supported = profile.transcribe_options().supported_languages()
        codes = sorted(supported if supported is not None else known_languages(),
                       key=lambda c: (c not in ("en", "zh", "yue"), i18n.language_name(c, "en")))
        profiles.append({
            "name": profile.name,
            "language": profile.language,
            "language_name": i18n.language_name(profile.language, lang) if profile.language != "auto" else None,
            "languages": [[code, f"{i18n.language_name(code, lang)} ({code})"] for code in codes],
            "extensions": profile.extensions,
        })
    return profiles


# -- the app --------------------------------------------------------------------------


def create_app(settings: Settings, listen: str | None = None, tls: bool | None = None) -> FastAPI:
    web = WebState(settings, listen, tls)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        try:
            yield
        finally:
            web.close()

    app = FastAPI(title="hushdrop", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.web = web
    app.add_middleware(Guard, web=web)
    app.mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static")
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["hundredths"] = duration_hundredths
    templates.env.filters["size"] = human_size
    templates.env.filters["localtime"] = local_time
    templates.env.filters["clock"] = short_clock

    def messages(request: Request) -> tuple[str, i18n.Messages]:
        lang = i18n.pick(request.headers.get("accept-language"), request.cookies.get(i18n.LANG_COOKIE))
        return lang, i18n.Messages(lang)

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        lang, t = messages(request)
        session: Session = request.state.session
        base = {
            "t": t, "lang": lang, "csrf": session.csrf, "needs_login": web.password_hash is not None,
            "authed": session.authed,
            "i18n_json": json.dumps(i18n.MESSAGES[lang], ensure_ascii=False),
            "port": web.port, "query": "",
        }
        return templates.TemplateResponse(request, template, {**base, **context}, status_code=status)

    def job_or_404(job_id: str):
        if not job_id.isdigit() or len(job_id) > 18:
            return None
        try:
            return web.ledger.get(int(job_id))
        except KeyError:
            return None

    def not_found(request: Request) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "not found"}, 404)
        return PlainTextResponse("not found", 404)

    def unavailable(request: Request, message: str) -> Response:
        headers = {"retry-after": "30"}
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, 503, headers=headers)
        return PlainTextResponse(message, 503, headers=headers)

    # -- health and metrics ----------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        checks: dict[str, dict[str, Any]] = {}
        try:
            web.ledger.set_service(web_ready_checked_at=time.time())
            checks["ledger"] = {"ok": True}
        except LedgerCorrupt:
            checks["ledger"] = {"ok": False, "detail": LEDGER_DAMAGED}  # its own message names the file's path
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["ledger"] = {"ok": False, "detail": f"cannot write the ledger: {exc}"}
        for key, folder in (("inbox", settings.inbox), ("outbox", settings.outbox), ("workdir", settings.workdir)):
            try:
                free = shutil.disk_usage(folder).free
                writable = os.access(folder, os.W_OK | os.X_OK)
                ok = writable and free >= MIN_FREE_BYTES
                detail = f"{free / 1e9:.1f} GB free" + ("" if writable else ", not writable")
            except OSError as exc:
                ok, detail = False, f"missing or unreadable: {exc.strerror}"
            checks[key] = {"ok": ok, "detail": detail}
        service = web.ledger.service()
        running = watcher_running(settings, service)
        checks["watcher"] = {"ok": running, "detail": "heartbeat recent" if running else "no recent heartbeat: is `hushdrop watch` running?"}
        workers = [w for w in service.get("workers") or [] if w.get("ready")] if running else []
        checks["model"] = {
            "ok": bool(workers),
            "detail": ", ".join(f"{w.get('engine')} {w.get('model')} on {w.get('device')}" for w in workers) or "no worker has loaded a model",
        }
        ready = all(c["ok"] for c in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(web.registry), media_type=CONTENT_TYPE_LATEST)

    def quarantine_line(t: i18n.Messages) -> str | None:
        """What quarantine holds and its limits, for the page; None when it is empty or unreadable."""
        try:
            held = quarantine.usage(settings)
        except OSError:
            return None
        if not held.files and not held.bytes:
            return None
        parts = [t("quarantine_usage", files=held.files, size=human_size(held.bytes))]
        if settings.quarantine_max_gb is not None:
            parts.append(t("quarantine_max_size", size=human_size(settings.quarantine_max_gb * 1e9)))
        if settings.quarantine_max_days is not None:
            parts.append(t("quarantine_max_days", days=f"{settings.quarantine_max_days:g}"))
        return " · ".join(parts)

    # -- pages --------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        lang, t = messages(request)
        profiles = language_choices(web, lang)
        extensions = sorted({e for p in settings.profiles.values() for e in p.extensions})
        return page(
            request, "index.html", profiles=profiles, profiles_json=json.dumps(profiles, ensure_ascii=False),
            extensions=extensions, accept=",".join(f".{e}" for e in extensions) + ",audio/*,video/*",
            max_mb=f"{settings.web.max_upload_mb:g}", max_bytes=int(settings.web.max_upload_mb * 1024 * 1024),
            preview_limit=PREVIEW_LIMIT_MB * 1_000_000, quarantine_line=quarantine_line(t),
        )

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: str) -> Response:
        row = job_or_404(job_id)
        if row is None:
            return not_found(request)
        loaded = jobviews.load_result(settings, row) if row.state == State.DONE else None
        record, sha = (loaded[1], loaded[2]) if loaded else ({}, "")
        files = [p.name for p in row.outputs if jobviews.output_file(settings, row, p.name)] if row.state == State.DONE else []
        waveform = record.get("waveform") if isinstance(record.get("waveform"), dict) else None
        segments = [
            {"index": i, "start": s.get("start"), "end": s.get("end")}
            for i, s in enumerate(record.get("segments") or []) if s.get("text")
        ]
        stage_seconds = sum(float(s.get("seconds") or 0) for s in record.get("stages") or [])
        return page(
            request, "job.html", row=row, name=display_name(row.name), state=jobviews.shown_state(row),
            record=record, sha=sha, items=transcript_items(record) if record else [], files=files,
            original=jobviews.original_path(settings, row) is not None, note=jobviews.error_note(row),
            waveform_json=json.dumps({"waveform": waveform, "segments": segments}),
            processed=stage_seconds, quote=quote,
            can_act=jobviews.shown_state(row) == "quarantined" and row.quarantine_path is not None,
            percent=lambda p: f"{p * 100:.0f}" if isinstance(p, (int, float)) and not math.isnan(p) else None,
        )

    @app.get("/jobs/{job_id}/files/{name}")
    def download(request: Request, job_id: str, name: str) -> Response:
        row = job_or_404(job_id)
        path = jobviews.output_file(settings, row, name) if row is not None else None
        data = jobviews.read_output(path) if path is not None else None
        if data is None:
            return not_found(request)
        media = {"json": "application/json", "vtt": "text/vtt"}.get(path.suffix.lstrip("."), "text/plain")
        return Response(
            data, media_type=f"{media}; charset=utf-8",
            headers={"content-disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
        )

    @app.get("/jobs/{job_id}/original")
    def original(request: Request, job_id: str) -> Response:
        row = job_or_404(job_id)
        path = jobviews.original_path(settings, row) if row is not None else None
        if path is None:
            return not_found(request)
        return FileResponse(path, media_type="application/octet-stream", headers={"cache-control": "no-store"})

    @app.get("/search", response_class=HTMLResponse)
    def search_page(request: Request, q: str = "") -> HTMLResponse:
        problem = query_problem(q)
        if problem:
            return page(request, "search.html", 400, query="", hits=[], error=problem)
        hits = []
        if q.strip():
            web.catalog.sync(web.ledger)
            hits = web.catalog.search(q)
        return page(request, "search.html", query=q, hits=hits)

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        if web.password_hash is None or request.state.session.authed:
            return RedirectResponse("/", 303)
        return page(request, "login.html", cleartext=_cleartext(web, request), error=None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        if web.password_hash is None:
            return RedirectResponse("/", 303)
        client = request.state.client.address
        _, t = messages(request)
        cleartext = _cleartext(web, request)
        wait = web.limiter.retry_after(client)
        if wait > 0:
            minutes = max(1, math.ceil(wait / 60))
            return page(request, "login.html", 429, cleartext=cleartext, error=t("login_limited", minutes=minutes))
        body = await _small_body(request, 8192)
        form = parse_qs(body.decode("utf-8", "replace")) if body is not None else {}
        session: Session = request.state.session
        if not same_token((form.get("csrf") or [""])[0], session.csrf):
            return JSONResponse({"error": "refused: missing or wrong CSRF token; reload the page"}, 403)
        password = (form.get("password") or [""])[0]
        if not verify_password(password, web.password_hash):
            web.limiter.failed(client)
            return page(request, "login.html", 401, cleartext=cleartext, error=t("login_wrong"))
        web.limiter.succeeded(client)
        fresh = Session.fresh(web.signer.fingerprint)
        fresh.authed = True
        request.state.session = fresh
        return RedirectResponse("/", 303)

    @app.post("/logout")
    def logout(request: Request) -> Response:
        request.state.session = Session.fresh(web.signer.fingerprint)
        return JSONResponse({"ok": True})

    @app.get("/lang/{code}")
    def switch_language(code: str) -> Response:
        if code not in i18n.UI_LANGUAGES:
            return PlainTextResponse("not found", 404)
        response = RedirectResponse("/", 303)
        response.set_cookie(i18n.LANG_COOKIE, code, max_age=365 * 86400, httponly=True, samesite="strict", secure=web.tls)
        return response

    # -- the API ---------------------------------------------------------------------------

    @app.get("/api/jobs")
    def api_jobs(limit: int = 200) -> dict:
        return {"now": time.time(), "jobs": jobviews.queue_rows(settings, web.ledger, web.tracker, max(1, min(limit, 1000)))}

    @app.get("/api/jobs/{job_id}")
    def api_job(request: Request, job_id: str) -> Response:
        row = job_or_404(job_id)
        if row is None:
            return not_found(request)
        item = jobviews.queue_row(settings, row, web.tracker, time.time())
        loaded = jobviews.load_result(settings, row) if row.state == State.DONE else None
        if loaded:
            item.update(record=loaded[1], sha=loaded[2])
        return JSONResponse(item)

    @app.put("/api/jobs/{job_id}/transcript")
    async def api_edit(request: Request, job_id: str) -> Response:
        row = job_or_404(job_id)
        if row is None or row.state != State.DONE:
            return not_found(request)
        body = await _small_body(request, JSON_BODY_LIMIT)
        try:
            data = json.loads(body or b"")
            edits = data["segments"]
            base = str(data["base"])
            if not isinstance(edits, list):
                raise TypeError
        except (ValueError, KeyError, TypeError, RecursionError):
            return JSONResponse({"error": "send {\"base\": sha256, \"segments\": [{\"index\": n, \"text\": \"…\"}]}"}, 400)
        try:
            record, sha = jobviews.save_edits(settings, row, edits, base)
        except jobviews.JobActionError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        path = jobviews.load_result(settings, row)
        if path is not None:
            web.catalog.reindex(row.id, row.profile, row.name, row.finished_at, path[0], record)
        return JSONResponse({"ok": True, "sha": sha, "edited_at": record.get("edited_at")})

    @app.post("/api/jobs/{job_id}/retry")
    def api_retry(request: Request, job_id: str) -> Response:
        if job_or_404(job_id) is None:
            return not_found(request)
        try:
            return JSONResponse(uploads.retry_quarantined(settings, web.ledger, int(job_id)))
        except (jobviews.JobActionError, uploads.UploadError) as exc:
            return JSONResponse({"error": exc.message}, exc.status)

    @app.post("/api/jobs/{job_id}/delete")
    def api_delete(request: Request, job_id: str) -> Response:
        if job_or_404(job_id) is None:
            return not_found(request)
        try:
            jobviews.delete_quarantined(settings, web.ledger, int(job_id))
        except jobviews.JobActionError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        return JSONResponse({"ok": True})

    @app.post("/api/uploads")
    async def api_upload(request: Request, profile: str = "default", name: str = "", language: str = "") -> Response:
        chosen = settings.profiles.get(profile)
        if chosen is None:
            return JSONResponse({"error": f"no profile named {profile!r}"}, 400)
        length_header = request.headers.get("content-length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        try:
            result = await uploads.receive(settings, web.ledger, request.stream(), chosen, name, language or None, length)
        except uploads.UploadError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        except ClientDisconnect:
            return JSONResponse({"error": "the upload was interrupted"}, 400)
        return JSONResponse(result, 201)

    @app.get("/api/search")
    def api_search(q: str = "") -> Response:
        problem = query_problem(q)
        if problem:
            return JSONResponse({"error": problem}, 400)
        web.catalog.sync(web.ledger)
        return {"query": q, "hits": [
            {"job": h.job_id, "name": h.name, "profile": h.profile, "language": h.language,
             "finished_at": h.finished_at, "snippet": h.snippet, "url": f"/jobs/{h.job_id}"}
            for h in web.catalog.search(q)
        ]}

    @app.exception_handler(404)
    async def missing(request: Request, exc: Exception) -> Response:
        return not_found(request)

    # a state no request can change, said in one line (never a traceback, never a path): a damaged
    # catalog rebuilds itself, so these are a busy or unwritable catalog and a damaged ledger
    @app.exception_handler(CatalogUnavailable)
    async def catalog_unavailable(request: Request, exc: CatalogUnavailable) -> Response:
        return unavailable(request, str(exc))

    @app.exception_handler(LedgerCorrupt)
    async def ledger_damaged(request: Request, exc: LedgerCorrupt) -> Response:
        return unavailable(request, LEDGER_DAMAGED)

    return app


MAX_QUERY_CHARS = 500
LEDGER_DAMAGED = (
    "the ledger is damaged; nothing was lost: stop hushdrop and run `hushdrop doctor --rebuild-ledger`"
)


def query_problem(query: str) -> str | None:
    """Why a search text is refused (400), or None: too long, or holding a control character
    such as NUL, which would cut the full-text query short."""
    if len(query) > MAX_QUERY_CHARS:
        return f"the search text is {len(query)} characters long; search for at most {MAX_QUERY_CHARS}"
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r" for c in query):
        return "the search text holds a control character (such as NUL); search for plain text"
    return None


def _cleartext(web: WebState, request: Request) -> bool:
    """Whether a password typed into this page crosses a network unencrypted: not HTTPS here, not
    HTTPS at a trusted proxy, and not a direct request from this machine."""
    client: Client = request.state.client
    return not (web.tls or client.https or client.local)


async def _small_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes (read no further than that)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return None
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)
