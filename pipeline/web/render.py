"""How the page answers: its templates and their filters, the context every page gets, and the
plain answers for a missing thing or a state no request can change."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.requests import Request

from hushdrop.pipeline.config import Settings, known_languages
from hushdrop.pipeline.outputs import short_clock
from hushdrop.pipeline.watch import quarantine
from hushdrop.pipeline.web import i18n
from hushdrop.pipeline.job import timestamp_of
from hushdrop.pipeline.web.security import Session
from hushdrop.pipeline.web.state import WebState

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LEDGER_DAMAGED = (
    "the ledger is damaged; nothing was lost: stop hushdrop and run `hushdrop doctor --rebuild-ledger`"
)


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
        timestamp = timestamp_of(timestamp) or 0
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


def language_choices(settings: Settings, lang: str) -> list[dict[str, Any]]:
    profiles = []
    for profile in settings.profiles.values():
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


def quarantine_line(settings: Settings, t: i18n.Messages) -> str | None:
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


templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters["hundredths"] = duration_hundredths
templates.env.filters["size"] = human_size
templates.env.filters["localtime"] = local_time
templates.env.filters["clock"] = short_clock


def web_of(request: Request) -> WebState:
    """The state :func:`pipeline.web.app.create_app` made for this app."""
    return request.app.state.web


def messages(request: Request) -> tuple[str, i18n.Messages]:
    """The page's language for this request (its cookie, else ``Accept-Language``) and its texts."""
    lang = i18n.pick(request.headers.get("accept-language"), request.cookies.get(i18n.LANG_COOKIE))
    return lang, i18n.Messages(lang)


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered with ``context`` and what every page needs (texts, CSRF token, login)."""
    web = web_of(request)
    lang, t = messages(request)
    session: Session = request.state.session
    base = {
        "t": t, "lang": lang, "csrf": session.csrf, "needs_login": web.password_hash is not None,
        "authed": session.authed,
        "i18n_json": json.dumps(i18n.MESSAGES[lang], ensure_ascii=False),
        "port": web.port, "query": "",
    }
    return templates.TemplateResponse(request, template, {**base, **context}, status_code=status)


def not_found(request: Request) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "not found"}, 404)
    return PlainTextResponse("not found", 404)


def unavailable(request: Request, message: str) -> Response:
    """A 503 for a state no request can change, said in one line (never a traceback, never a path)."""
    headers = {"retry-after": "30"}
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, 503, headers=headers)
    return PlainTextResponse(message, 503, headers=headers)
