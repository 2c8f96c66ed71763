"""The web page's app: the shared state, the guards in their order, the routers, and the answers
for the states no request can change.

The guards (:mod:`pipeline.web.guards`, outermost first): security headers, host check, who is
asking, the API's tokens, local-only without a password, sessions, login, CSRF. The routers
(:mod:`pipeline.web.routes`): pages, auth, api, ops; and the transcription API's
(:mod:`pipeline.api`): OpenAI's and whisper-asr-webservice's.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware import Middleware

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.watch.ledger import LedgerCorrupt
from hushdrop.pipeline.web.catalog import CatalogUnavailable
from hushdrop.pipeline.web.guards import GUARDS
from hushdrop.pipeline.web.render import LEDGER_DAMAGED, STATIC, not_found, unavailable
from hushdrop.pipeline.api import asr_routes, openai_routes
from hushdrop.pipeline.web.routes import api, auth, ops, pages
from hushdrop.pipeline.web.state import WebState

ROUTERS = (ops.router, pages.router, auth.router, api.router, openai_routes.router, asr_routes.router)


def create_app(settings: Settings, listen: str | None = None, tls: bool | None = None) -> FastAPI:
    web = WebState(settings, listen, tls)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        try:
            yield
        finally:
            web.close()

    app = FastAPI(
        title="hushdrop", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan,
        middleware=[Middleware(guard, web=web) for guard in GUARDS],
    )
    app.state.web = web
    app.mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static")
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(404, _missing)
    app.add_exception_handler(CatalogUnavailable, _catalog_unavailable)
    app.add_exception_handler(LedgerCorrupt, _ledger_damaged)
    return app


async def _missing(request: Request, exc: Exception) -> Response:
    return not_found(request)


# a state no request can change, said in one line (never a traceback, never a path): a damaged
# catalog rebuilds itself, so these are a busy or unwritable catalog and a damaged ledger
async def _catalog_unavailable(request: Request, exc: Exception) -> Response:
    return unavailable(request, str(exc))


async def _ledger_damaged(request: Request, exc: Exception) -> Response:
    return unavailable(request, LEDGER_DAMAGED)
