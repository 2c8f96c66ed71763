"""Who may call the API: the guard that runs before any API route (``/v1/…``, ``/asr``,
``/detect-language``), between the page's "who is asking" guard and its session guards.

- With ``api.enabled`` false the routes do not exist: 404, saying how to turn them on.
- A request carries ``Authorization: Bearer <token>`` (or Basic credentials with the token as
  the password, for clients that can only put one in the URL; never a cookie, so the page's session,
  login and CSRF rules do not apply to it, and the page's own cookie cannot call the API). A
  token the store does not know is a 401 in the client's shape, and counts against its
  address like a wrong password (:class:`pipeline.web.security.LoginLimiter`): too many, and
  that address gets 429 until the window passes.
- ``api.loopback_without_token``: a request straight from this machine (not through a proxy)
  with no Authorization header is let in without a token, for tools such as Bazarr running
  beside hushdrop that cannot send one, but never one a web browser sent (``Origin`` or
  ``Sec-Fetch-Site``): any page a browser on this machine opens can post a form to localhost, and
  the page's CSRF rules do not cover the API. Every other request needs a token, loopback included.

The token (or None for such a local request) is kept as ``scope["state"]["api_token"]``, and
``scope["state"]["api"]`` marks the request for the page's later guards, which pass it through.
"""

from __future__ import annotations

import base64
import math

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from hushdrop.pipeline.api.errors import ApiError, error_response, is_api_path
from hushdrop.pipeline.api.tokens import TokenError
from hushdrop.pipeline.logs import log
from hushdrop.pipeline.web.address import Client

LOCAL_WITHOUT_TOKEN = None


def bearer(headers: Headers) -> str | None:
    """The token a request presents: ``Authorization: Bearer TOKEN``, or ``Basic`` credentials
    whose password is the token (what a client sends for ``http://any:TOKEN@host/``, the one way
    Bazarr's Whisper provider can carry one); "" for anything else; None without the header."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


BROWSER_HEADERS = ("origin", "sec-fetch-site")


def from_a_browser(headers: Headers) -> bool:
    """Whether a web browser sent the request: browsers add ``Sec-Fetch-Site`` to every request and
    ``Origin`` to every cross-site POST, which the tools the API is for never send (Node's fetch
    adds only ``Sec-Fetch-Mode``, so it is not taken for one). Any page open on this machine could
    have made a browser send it."""
    return any(name in headers for name in BROWSER_HEADERS)


class ApiAccess:
    """The API's guard (an HTTP-only ASGI middleware like the page's guards)."""

    def __init__(self, app, web):
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        try:
            scope["state"]["api_token"] = self.check(scope)
        except ApiError as refused:
            await error_response(path, refused)(scope, receive, send)
            return
        scope["state"]["api"] = True
        await self.app(scope, receive, send)

    def check(self, scope: Scope):
        web = self.web
        api = web.settings.api
        if not api.enabled:
            raise ApiError(404, "the transcription API is off: set api.enabled: true in config.yaml and add a token "
                                "with `hushdrop api add-token NAME` (docs/api.md)", code="api_disabled")
        client: Client = scope["state"]["client"]
        wait = web.token_limiter.retry_after(client.address)
        if wait > 0:
            raise ApiError(429, f"too many wrong API tokens from this address; try again in {math.ceil(wait / 60)} minute(s)",
                           code="rate_limit_exceeded", headers={"retry-after": str(math.ceil(wait))})
        headers = Headers(scope=scope)
        presented = bearer(headers)
        if presented is None and api.loopback_without_token and client.local and not from_a_browser(headers):
            return LOCAL_WITHOUT_TOKEN
        try:
            token = web.tokens.find(presented)
        except TokenError as exc:  # a damaged store: said in the log, never its path to a client
            log().error("api: %s", exc)
            raise ApiError(503, "the server cannot read its API tokens; its log says why and what to do",
                           code="token_store_unreadable") from None
        if token is None:
            if presented:
                web.token_limiter.failed(client.address)
            raise ApiError(
                401, "missing API token: send Authorization: Bearer <token>; `hushdrop api add-token NAME` makes one"
                if not presented else "this API token is not valid (revoked, or mistyped): `hushdrop api list-tokens` "
                "shows the tokens there are", code="invalid_api_key",
            )
        return token
