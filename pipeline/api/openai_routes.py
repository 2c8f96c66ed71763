"""OpenAI's audio API, as its clients call it: ``POST /v1/audio/transcriptions``,
``POST /v1/audio/translations`` and ``GET /v1/models`` (docs/api.md).

The form's fields: ``file`` (the recording), ``model`` (``whisper-1``, a profile's name or a
model a profile uses: :func:`pipeline.api.jobs.profile_for_model`), ``language`` (a code or a
name), ``prompt`` (added to the profile's glossary for this job), ``response_format`` (json,
text, srt, vtt, verbose_json), ``timestamp_granularities[]`` (segment, word); ``temperature``
and any other field are accepted and ignored, as the engine decides those itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hushdrop.pipeline.api.errors import ApiError, error_response
from hushdrop.pipeline.api.formats import OPENAI_FORMATS, OPENAI_GRANULARITIES, language_code, openai_response
from hushdrop.pipeline.api.jobs import Ask, ClientGone, model_names, profile_for_model, run_request
from hushdrop.pipeline.web.render import web_of

router = APIRouter(prefix="/v1")


@router.post("/audio/transcriptions")
async def transcriptions(request: Request) -> Response:
    return await _answer(request, task=None)


@router.post("/audio/translations")
async def translations(request: Request) -> Response:
    return await _answer(request, task="translate")


@router.get("/models")
def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": f"hushdrop (profile {profile.name})"}
        for name, profile in model_names(web_of(request).settings).items()
    ]})


async def _answer(request: Request, task: str | None) -> Response:
    web = web_of(request)
    asked: dict[str, Any] = {}

    def decide(fields: dict[str, Any]) -> Ask:
        profile = profile_for_model(web.settings, fields.get("model"))
        response_format = (fields.get("response_format") or "json").strip()
        if response_format not in OPENAI_FORMATS:
            raise ApiError(400, f"response_format must be one of {', '.join(OPENAI_FORMATS)}, not {response_format!r}",
                           param="response_format")
        granularities = fields.get("timestamp_granularities") or []
        if isinstance(granularities, str):
            granularities = [granularities]
        unknown = [g for g in granularities if g not in OPENAI_GRANULARITIES]
        if unknown:
            raise ApiError(400, f"timestamp_granularities may be {' and '.join(OPENAI_GRANULARITIES)}, not {unknown[0]!r}",
                           param="timestamp_granularities")
        language = None
        if (fields.get("language") or "").strip():
            language = language_code(fields["language"])
            if language is None:
                raise ApiError(400, f"unknown language {fields['language']!r}: use an ISO-639-1 code such as en or de",
                               param="language")
        asked.update(response_format=response_format, granularities=granularities)
        return Ask(profile, language=language, task=task, prompt=fields.get("prompt"))

    try:
        answer = await run_request(web, request, "file", decide)
    except ApiError as refused:
        return error_response(request.url.path, refused)
    except ClientGone:
        return Response(status_code=499)
    body, media_type = openai_response(answer.record, asked["response_format"], asked["granularities"])
    if isinstance(body, dict):
        return JSONResponse(body, media_type=media_type)
    return Response(body, media_type=media_type)
