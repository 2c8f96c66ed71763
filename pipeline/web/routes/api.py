"""What the page's script (and any other program) calls: the queue, one job, an edit of its
transcript, retry and delete of a quarantined job, an upload, search. The answers are JSON;
the routes that change something are POST or PUT, and their writes go through
:mod:`pipeline.watch.page_requests`."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from hushdrop.pipeline.watch.ledger import State
from hushdrop.pipeline.web import quarantine, uploads, views
from hushdrop.pipeline.web.catalog import query_problem
from hushdrop.pipeline.web.render import not_found, web_of
from hushdrop.pipeline.web.routes import job_or_404, plain_number, small_body

JSON_BODY_LIMIT = 8 << 20

router = APIRouter(prefix="/api")


@router.get("/jobs")
def api_jobs(request: Request, limit: int = 200) -> dict:
    web = web_of(request)
    return {"now": time.time(), "jobs": views.queue_rows(web.settings, web.ledger, web.tracker, max(1, min(limit, 1000)))}


@router.get("/jobs/{job_id}")
def api_job(request: Request, job_id: str) -> Response:
    web = web_of(request)
    row = job_or_404(request, job_id)
    if row is None:
        return not_found(request)
    item = views.queue_row(web.settings, row, web.tracker, time.time())
    loaded = views.load_result(web.settings, row) if row.state == State.DONE else None
    if loaded:
        item.update(record=loaded[1], sha=loaded[2])
    return JSONResponse(item)


@router.put("/jobs/{job_id}/transcript")
async def api_edit(request: Request, job_id: str) -> Response:
    web = web_of(request)
    row = job_or_404(request, job_id)
    if row is None or row.state != State.DONE:
        return not_found(request)
    body = await small_body(request, JSON_BODY_LIMIT)
    try:
        data = json.loads(body or b"")
        edits = data["segments"]
        base = str(data["base"])
        if not isinstance(edits, list):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        return JSONResponse({"error": "send {\"base\": sha256, \"segments\": [{\"index\": n, \"text\": \"…\"}]}"}, 400)
    try:
        record, sha = views.save_edits(web.settings, row, edits, base)
    except views.JobActionError as exc:
        return JSONResponse({"error": exc.message}, exc.status)
    path = views.load_result(web.settings, row)
    if path is not None:
        web.catalog.reindex(row.id, row.profile, row.name, row.finished_at, path[0], record)
    return JSONResponse({"ok": True, "sha": sha, "edited_at": record.get("edited_at")})


@router.post("/jobs/{job_id}/retry")
def api_retry(request: Request, job_id: str) -> Response:
    if job_or_404(request, job_id) is None:
        return not_found(request)
    web = web_of(request)
    try:
        return JSONResponse(quarantine.retry_quarantined(web.settings, web.ledger, int(job_id)))
    except (views.JobActionError, uploads.UploadError) as exc:
        return JSONResponse({"error": exc.message}, exc.status)


@router.post("/jobs/{job_id}/delete")
def api_delete(request: Request, job_id: str) -> Response:
    if job_or_404(request, job_id) is None:
        return not_found(request)
    web = web_of(request)
    try:
        quarantine.delete_quarantined(web.settings, web.ledger, int(job_id))
    except views.JobActionError as exc:
        return JSONResponse({"error": exc.message}, exc.status)
    return JSONResponse({"ok": True})


@router.post("/uploads")
async def api_upload(request: Request, profile: str = "default", name: str = "", language: str = "") -> Response:
    web = web_of(request)
    chosen = web.settings.profiles.get(profile)
    if chosen is None:
        return JSONResponse({"error": f"no profile named {profile!r}"}, 400)
    length = plain_number(request.headers.get("content-length"))
    try:
        result = await uploads.receive(web.settings, web.ledger, request.stream(), chosen, name, language or None, length)
    except uploads.UploadError as exc:
        return JSONResponse({"error": exc.message}, exc.status)
    except ClientDisconnect:
        return JSONResponse({"error": "the upload was interrupted"}, 400)
    return JSONResponse(result, 201)


@router.get("/search")
def api_search(request: Request, q: str = "") -> Response:
    web = web_of(request)
    problem = query_problem(q)
    if problem:
        return JSONResponse({"error": problem}, 400)
    web.catalog.sync(web.ledger)
    return JSONResponse({"query": q, "hits": [
        {"job": h.job_id, "name": h.name, "profile": h.profile, "language": h.language,
         "finished_at": h.finished_at, "snippet": h.snippet, "url": f"/jobs/{h.job_id}"}
        for h in web.catalog.search(q)
    ]})
