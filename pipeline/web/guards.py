"""The page's guards: plain ASGI middlewares, one concern each, that decide before any route runs.

They run in this order (the first wraps all the others; :func:`pipeline.web.app.create_app`
lists them so):

0. :class:`ReadTheBodyFirst`: a response that starts before the request's body was read (a
   refusal, mostly) waits until the body is in, up to :data:`DRAIN_LIMIT_BYTES` and
   :data:`DRAIN_LIMIT_S`: a server that answers and closes with a body still unread resets the
   connection, and a reverse proxy still sending that body reports 502 instead of the answer;
1. :class:`SecurityHeaders`: every response, a refusal from a later guard too, gets
   ``Content-Security-Policy: default-src 'self'`` and the usual headers (a route's own value
   of one of them wins);
2. :class:`HostCheck`: a server on a loopback address answers only requests whose ``Host``
   is a loopback name (a DNS-rebinding page cannot talk to it): 421 otherwise;
3. :class:`ClientAddress`: who is asking (``address.client_of``), kept as
   ``request.state.client``: the connection's peer, or the client named by a proxy listed in
   ``web.trusted_proxies``; a request is *local* only when it comes straight from this machine
   with no forwarding header (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``,
   ``X-Forwarded-Host``): a proxy connects from 127.0.0.1 for anyone;
4. :class:`~pipeline.api.access.ApiAccess`: an API request (``/v1/…``, ``/asr``,
   ``/detect-language``) is let in by its bearer token, or refused in its client's shape; the
   page's guards below (5–8) pass an API request through untouched;
5. :class:`LocalOnlyWithoutPassword`: without a password only local requests are served;
   anything else but ``/healthz`` and ``/static/`` gets a 403 that says to set one;
6. :class:`Sessions`: the session comes from its signed cookie, or a new one is made (for its
   CSRF token), kept as ``request.state.session``; a new session's cookie is HttpOnly,
   SameSite=Strict (and Secure over HTTPS, or when a trusted proxy says the browser used HTTPS);
7. :class:`RequireLogin`: ``/healthz``, ``/static/``, ``/login`` and ``/lang/`` are open;
   ``/readyz`` and ``/metrics`` are open to local requests; everything else needs the password
   when one is set (a page answers with a redirect to the login page, the API with 401);
8. :class:`CsrfCheck`: every request that changes something (not GET/HEAD/OPTIONS) must carry
   ``Origin`` equal to the page's own (or, from a trusted proxy, the one its
   ``X-Forwarded-Proto``/``-Host`` name) and the session's CSRF token (``X-CSRF-Token``; the
   login form carries it in a field, which its route checks), else 403.

Each takes the app it wraps and the shared :class:`~pipeline.web.state.WebState`.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hushdrop.pipeline.api.access import ApiAccess
from hushdrop.pipeline.web.address import Client, client_of, host_of, is_loopback
from hushdrop.pipeline.web.security import SESSION_COOKIE, Session, same_token
from hushdrop.pipeline.web.state import WebState

CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DRAIN_LIMIT_BYTES = 8 << 20
DRAIN_LIMIT_S = 5.0
OPEN_PREFIXES = ("/static/", "/lang/")
OPEN_PATHS = frozenset({"/healthz", "/login", "/favicon.ico"})
LOCAL_PATHS = frozenset({"/readyz", "/metrics"})
NEEDS_A_PASSWORD = (
    "this page has no password, so it answers only to this machine directly, not through a proxy "
    "or from elsewhere: run `hushdrop web --set-password` (docs/web.md, \"Behind a reverse proxy\")"
)


class _Guard:
    """An HTTP-only middleware: other scopes (lifespan) pass straight through, and so does an API
    request (``ApiAccess`` let it in by its token) past a guard that is the page's only."""

    page_only = False

    def __init__(self, app: ASGIApp, web: WebState):
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.page_only and scope.get("state", {}).get("api")):
            await self.app(scope, receive, send)
            return
        await self.guard(scope, receive, send)

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class ReadTheBodyFirst(_Guard):
    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        body_read = False

        async def tracked_receive() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read = True
            return message

        async def drain() -> None:
            nonlocal body_read
            received = 0
            while not body_read and received <= DRAIN_LIMIT_BYTES:
                message = await tracked_receive()
                received += len(message.get("body", b""))

        async def send_after_the_body(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_read:
                try:
                    await asyncio.wait_for(drain(), DRAIN_LIMIT_S)
                except asyncio.TimeoutError:
                    pass  # a client this slow gets the answer, and maybe a reset, now
            await send(message)

        await self.app(scope, tracked_receive, send_after_the_body)


class SecurityHeaders(_Guard):
    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostCheck(_Guard):
    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.web.loopback and not is_loopback(host_of(Headers(scope=scope).get("host", ""))):
            await PlainTextResponse("this server answers only to localhost", 421)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ClientAddress(_Guard):
    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        client = client_of(peer[0] if peer else None, Headers(scope=scope), self.web.trusted_proxies,
                           scope.get("http_version", "1.1"))
        scope.setdefault("state", {})["client"] = client
        await self.app(scope, receive, send)


class LocalOnlyWithoutPassword(_Guard):
    page_only = True

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        client: Client = scope["state"]["client"]
        if self.web.password_hash is None and not client.local and not (path == "/healthz" or path.startswith("/static/")):
            await _needs_a_password(scope)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Sessions(_Guard):
    page_only = True

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        web = self.web
        cookie = Request(scope).cookies.get(SESSION_COOKIE)
        scope["state"]["session"] = web.signer.load(cookie) or Session.fresh(web.signer.fingerprint)
        client: Client = scope["state"]["client"]

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = scope["state"].get("session")  # a login replaces it
                if current is not None and current.new:
                    MutableHeaders(scope=message).append("set-cookie", web.cookie(current, https=client.https))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class RequireLogin(_Guard):
    page_only = True

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        client: Client = scope["state"]["client"]
        session: Session = scope["state"]["session"]
        authed = self.web.password_hash is None or session.authed
        response: Response | None = None
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            pass
        elif path in LOCAL_PATHS:
            if not (client.local or authed):
                response = JSONResponse({"error": "log in first, or ask from this machine"}, 401)
        elif not authed:
            wants_page = scope["method"] == "GET" and not path.startswith("/api/")
            response = RedirectResponse("/login", 303) if wants_page else JSONResponse({"error": "log in first"}, 401)
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class CsrfCheck(_Guard):
    page_only = True

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in SAFE_METHODS:
            headers = Headers(scope=scope)
            client: Client = scope["state"]["client"]
            session: Session = scope["state"]["session"]
            expected = {f"{'https' if self.web.tls else 'http'}://{headers.get('host', '')}".lower()}
            if client.origin:
                expected.add(client.origin)
            response: Response | None = None
            if (headers.get("origin") or "").lower() not in expected:
                response = JSONResponse({"error": "refused: the request did not come from this page (Origin)"}, 403)
            elif scope["path"] != "/login" and not same_token(headers.get("x-csrf-token"), session.csrf):
                response = JSONResponse({"error": "refused: missing or wrong CSRF token; reload the page"}, 403)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _needs_a_password(scope: Scope) -> Response:
    """The 403 for a proxied or remote request to a page without a password: it says what to do
    and shows nothing of the page."""
    if scope["method"] == "GET" and not scope["path"].startswith("/api/") and scope["path"] not in LOCAL_PATHS:
        text = NEEDS_A_PASSWORD.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
        body = f'<!doctype html><meta charset="utf-8"><title>hushdrop: password needed</title><p id="needs-password">{text}</p>\n'
        return HTMLResponse(body, 403)
    return JSONResponse({"error": NEEDS_A_PASSWORD}, 403)


GUARDS = (ReadTheBodyFirst, SecurityHeaders, HostCheck, ClientAddress, ApiAccess, LocalOnlyWithoutPassword, Sessions, RequireLogin, CsrfCheck)
"""Every guard, outermost first: the order the module docstring explains."""
