"""What a browser shows: the queue and upload page, a job's page, its files and original,
search, and the language switch. Every route here only reads (a search brings the page's own
catalog up to date first)."""

from __future__ import annotations

import json
import math
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response

from hushdrop.pipeline.names import display_name
from hushdrop.pipeline.watch.ledger import State
from hushdrop.pipeline.web import i18n, views
from hushdrop.pipeline.web.catalog import query_problem
from hushdrop.pipeline.web.render import language_choices, messages, not_found, page, quarantine_line, transcript_items, web_of
from hushdrop.pipeline.web.routes import job_or_404

PREVIEW_LIMIT_MB = 200

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    settings = web_of(request).settings
    lang, t = messages(request)
    profiles = language_choices(settings, lang)
    extensions = sorted({e for p in settings.profiles.values() for e in p.extensions})
    return page(
        request, "index.html", profiles=profiles, profiles_json=json.dumps(profiles, ensure_ascii=False),
        extensions=extensions, accept=",".join(f".{e}" for e in extensions) + ",audio/*,video/*",
        max_mb=f"{settings.web.max_upload_mb:g}", max_bytes=int(settings.web.max_upload_mb * 1024 * 1024),
        preview_limit=PREVIEW_LIMIT_MB * 1_000_000, quarantine_line=quarantine_line(settings, t),
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> Response:
    settings = web_of(request).settings
    row = job_or_404(request, job_id)
    if row is None:
        return not_found(request)
    loaded = views.load_result(settings, row) if row.state == State.DONE else None
    record, sha = (loaded[1], loaded[2]) if loaded else ({}, "")
    files = [p.name for p in row.outputs if views.output_file(settings, row, p.name)] if row.state == State.DONE else []
    waveform = record.get("waveform") if isinstance(record.get("waveform"), dict) else None
    segments = [
        {"index": i, "start": s.get("start"), "end": s.get("end")}
        for i, s in enumerate(record.get("segments") or []) if s.get("text")
    ]
    stage_seconds = sum(float(s.get("seconds") or 0) for s in record.get("stages") or [])
    return page(
        request, "job.html", row=row, name=display_name(row.name), state=views.shown_state(row),
        record=record, sha=sha, items=transcript_items(record) if record else [], files=files,
        original=views.original_path(settings, row) is not None, note=views.error_note(row),
        waveform_json=json.dumps({"waveform": waveform, "segments": segments}),
        processed=stage_seconds, quote=quote, model_memory=model_memory(record),
        can_act=views.shown_state(row) == "quarantined" and row.quarantine_path is not None,
        percent=lambda p: f"{p * 100:.0f}" if isinstance(p, (int, float)) and not math.isnan(p) else None,
    )


def model_memory(record: dict | None) -> int | None:
    """Bytes one worker holds with the model that made ``record`` (the catalogue's figure for its
    device: float16 on a GPU, else int8), or None for a model the catalogue does not know."""
    from hushdrop.pipeline.engines import catalogue

    engine = (record or {}).get("engine") or {}
    entry = catalogue.current().find(str(engine.get("model") or ""), str(engine.get("engine") or "")) if engine else None
    if entry is None:
        return None
    return (entry.memory_float16 if engine.get("device") == "cuda" else entry.memory_int8) or None


@router.get("/jobs/{job_id}/files/{name}")
def download(request: Request, job_id: str, name: str) -> Response:
    settings = web_of(request).settings
    row = job_or_404(request, job_id)
    path = views.output_file(settings, row, name) if row is not None else None
    data = views.read_output(path) if path is not None else None
    if data is None:
        return not_found(request)
    media = {"json": "application/json", "vtt": "text/vtt"}.get(path.suffix.lstrip("."), "text/plain")
    return Response(
        data, media_type=f"{media}; charset=utf-8",
        headers={"content-disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
    )


@router.get("/jobs/{job_id}/original")
def original(request: Request, job_id: str) -> Response:
    row = job_or_404(request, job_id)
    path = views.original_path(web_of(request).settings, row) if row is not None else None
    if path is None:
        return not_found(request)
    return FileResponse(path, media_type="application/octet-stream", headers={"cache-control": "no-store"})


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, q: str = "") -> HTMLResponse:
    web = web_of(request)
    problem = query_problem(q)
    if problem:
        return page(request, "search.html", 400, query="", hits=[], error=problem)
    hits = []
    if q.strip():
        web.catalog.sync(web.ledger)
        hits = web.catalog.search(q)
    return page(request, "search.html", query=q, hits=hits)


@router.get("/lang/{code}")
def switch_language(request: Request, code: str) -> Response:
    if code not in i18n.UI_LANGUAGES:
        return PlainTextResponse("not found", 404)
    response = RedirectResponse("/", 303)
    response.set_cookie(i18n.LANG_COOKIE, code, max_age=365 * 86400, httponly=True, samesite="strict",
                        secure=web_of(request).tls)
    return response
