"""The page is a third process beside the coordinator and its workers: what it may change goes
through the service's one door (``pipeline.watch.page_requests``), and a GET changes nothing."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

from starlette.routing import Route

from hushdrop.pipeline.web.app import ROUTERS
from tests.harness import REPO
from tests.web.conftest import add_done_job, csrf_of, unsafe_headers
from tests.web.test_routes import quarantined_job

PAGE_OWN = ("web-catalog.sqlite3", "web-session.key")  # the page's own files: no other process reads them


def service_files(settings) -> dict[str, bytes]:
    """Every file of the service's data, byte for byte: the ledger and its log, spool, quarantine,
    kept originals (the workdir), the outbox and the inbox. Left out: the page's own files, and
    the ledger's ``-shm`` index, which every SQLite reader updates."""
    found: dict[str, bytes] = {}
    for root in (settings.workdir, settings.outbox, settings.inbox):
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and not path.name.startswith(PAGE_OWN) and not path.name.endswith("-shm"):
                found[str(path)] = path.read_bytes()
    return found


def urls_of(route: Route, values: dict[str, list[str]]) -> list[str]:
    """``route``'s path with each of its parameters filled by every value given for it."""
    urls = [route.path]
    for param in route.param_convertors:
        urls = [url.replace(f"{{{param}}}", value) for url in urls for value in values[param]]
    return urls


def test_every_get_route_leaves_the_ledger_and_the_service_files_as_they_were(client, settings, ledger):
    done = add_done_job(settings, ledger)
    broken = quarantined_job(settings, ledger)
    token = csrf_of(client)
    assert client.post("/api/uploads", params={"name": "waiting.wav"}, content=b"RIFF",
                       headers=unsafe_headers(client, token)).status_code == 201
    name = ledger.get(done).outputs[0].name
    values = {"job_id": [str(done), str(broken), "999"], "name": [name], "code": ["en"]}
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, Route) and "GET" in (r.methods or ())]
    assert {r.path for r in routes} >= {"/", "/readyz", "/metrics", "/api/jobs", "/search", "/jobs/{job_id}/files/{name}"}
    urls = [url for route in routes for url in urls_of(route, values)]
    urls += ["/search?q=beans", "/api/search?q=beans", "/api/jobs?limit=5"]

    watcher_side = sqlite3.connect(settings.ledger_path)  # its data_version moves with every commit of another connection
    try:
        before_version = watcher_side.execute("PRAGMA data_version").fetchone()[0]
        before_files = service_files(settings)
        for url in urls:
            response = client.get(url)
            assert response.status_code < 500 or url == "/readyz", (url, response.status_code, response.text[:300])
        assert watcher_side.execute("PRAGMA data_version").fetchone()[0] == before_version, "a GET committed to the ledger"
        assert service_files(settings) == before_files
    finally:
        watcher_side.close()


def test_the_page_writes_the_ledger_only_through_the_services_door():
    """No module of the page calls a method that writes the ledger; ``page_requests`` does."""
    # the job table's writes, and those of its other faces (ledger.uploads.add, ledger.facts.set)
    writes = {"add", "add_upload", "forget", "forget_upload", "update", "transition", "set", "set_service", "start",
              "release", "progress", "plan_outputs"}
    found = []
    for path in sorted((REPO / "pipeline" / "web").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in writes:
                receiver = [n.id if isinstance(n, ast.Name) else getattr(n, "attr", "") for n in ast.walk(node.func.value)]
                if "ledger" in receiver:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {ast.unparse(node.func)}")
    assert found == []
