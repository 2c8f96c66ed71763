"""The page's endpoints, one router per audience: ``pages`` (what a browser shows), ``auth``
(log in and out), ``api`` (what the page's script and other programs call), ``ops`` (health,
readiness, metrics). The helpers they share live here."""

from __future__ import annotations

from starlette.requests import Request

from hushdrop.pipeline.watch.ledger import JobRow
from hushdrop.pipeline.web.render import web_of


def plain_number(text: str | None, digits: int = 18) -> int | None:
    """``text`` as a number when it is 1 to ``digits`` ASCII digits, else None (``str.isdigit``
    also takes '²' and '１', which ``int`` then refuses or reads as another number)."""
    if text and len(text) <= digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def job_or_404(request: Request, job_id: str) -> JobRow | None:
    """The ledger row of ``job_id`` as written in a URL, or None (the route answers 404)."""
    number = plain_number(job_id)
    if number is None:
        return None
    try:
        return web_of(request).ledger.get(number)
    except KeyError:
        return None


async def small_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes (read no further than that)."""
    length = plain_number(request.headers.get("content-length"))
    if length is not None and length > limit:
        return None
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)
