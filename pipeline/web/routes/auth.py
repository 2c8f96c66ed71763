"""Logging in (the password, checked against ``web.password_hash``, at most a few wrong guesses
per client: ``security.LoginLimiter``) and out. A login makes a fresh session, so a session
made before it (and its CSRF token) is worth nothing after."""

from __future__ import annotations

import math
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from hushdrop.pipeline.web.address import Client
from hushdrop.pipeline.web.render import messages, page, web_of
from hushdrop.pipeline.web.routes import small_body
from hushdrop.pipeline.web.security import Session, same_token, verify_password
from hushdrop.pipeline.web.state import WebState

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    web = web_of(request)
    if web.password_hash is None or request.state.session.authed:
        return RedirectResponse("/", 303)
    return page(request, "login.html", cleartext=cleartext(web, request), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    web = web_of(request)
    if web.password_hash is None:
        return RedirectResponse("/", 303)
    client = request.state.client.address
    _, t = messages(request)
    plain = cleartext(web, request)
    wait = web.limiter.retry_after(client)
    if wait > 0:
        minutes = max(1, math.ceil(wait / 60))
        return page(request, "login.html", 429, cleartext=plain, error=t("login_limited", minutes=minutes))
    body = await small_body(request, 8192)
    form = parse_qs(body.decode("utf-8", "replace")) if body is not None else {}
    session: Session = request.state.session
    if not same_token((form.get("csrf") or [""])[0], session.csrf):
        return JSONResponse({"error": "refused: missing or wrong CSRF token; reload the page"}, 403)
    password = (form.get("password") or [""])[0]
    if not verify_password(password, web.password_hash):
        web.limiter.failed(client)
        return page(request, "login.html", 401, cleartext=plain, error=t("login_wrong"))
    web.limiter.succeeded(client)
    fresh = Session.fresh(web.signer.fingerprint)
    fresh.authed = True
    request.state.session = fresh
    return RedirectResponse("/", 303)


@router.post("/logout")
def logout(request: Request) -> Response:
    request.state.session = Session.fresh(web_of(request).signer.fingerprint)
    return JSONResponse({"ok": True})


def cleartext(web: WebState, request: Request) -> bool:
    """Whether a password typed into this page crosses a network unencrypted: not HTTPS here, not
    HTTPS at a trusted proxy, and not a direct request from this machine."""
    client: Client = request.state.client
    return not (web.tls or client.https or client.local)
