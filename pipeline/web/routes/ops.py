"""``/healthz`` (the process answers), ``/readyz`` (it can do its work), ``/metrics`` (Prometheus).

``/readyz`` reads and writes nothing: the ledger check reads it and looks whether its file and
folder may be written, never writing a row to find out.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hushdrop.pipeline.watch.ledger import LedgerCorrupt
from hushdrop.pipeline.web.metrics import watcher_running
from hushdrop.pipeline.web.render import LEDGER_DAMAGED, web_of

MIN_FREE_BYTES = 100 << 20

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    web = web_of(request)
    settings = web.settings
    checks: dict[str, dict[str, Any]] = {}
    service: dict[str, Any] = {}
    try:
        service = web.ledger.facts.all()
        path = settings.ledger_path
        writable = os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)
        checks["ledger"] = {"ok": writable} if writable else {"ok": False, "detail": "the ledger or its folder is not writable"}
    except LedgerCorrupt:
        checks["ledger"] = {"ok": False, "detail": LEDGER_DAMAGED}  # its own message names the file's path
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["ledger"] = {"ok": False, "detail": f"cannot read the ledger: {exc}"}
    for key, folder in (("inbox", settings.inbox), ("outbox", settings.outbox), ("workdir", settings.workdir)):
        try:
            free = shutil.disk_usage(folder).free
            writable = os.access(folder, os.W_OK | os.X_OK)
            ok = writable and free >= MIN_FREE_BYTES
            detail = f"{free / 1e9:.1f} GB free" + ("" if writable else ", not writable")
        except OSError as exc:
            ok, detail = False, f"missing or unreadable: {exc.strerror}"
        checks[key] = {"ok": ok, "detail": detail}
    running = watcher_running(settings, service)
    checks["watcher"] = {"ok": running, "detail": "heartbeat recent" if running else "no recent heartbeat: is `hushdrop watch` running?"}
    workers = [w for w in service.get("workers") or [] if w.get("ready")] if running else []
    checks["model"] = {
        "ok": bool(workers),
        "detail": ", ".join(f"{w.get('engine')} {w.get('model')} on {w.get('device')}" for w in workers) or "no worker has loaded a model",
    }
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(generate_latest(web_of(request).registry), media_type=CONTENT_TYPE_LATEST)
