"""whisper-asr-webservice's API, as Bazarr and other self-hosted tools call it (docs/api.md):

- ``POST /asr?task=transcribe|translate&language=&output=txt|vtt|srt|tsv|json&encode=true|false&word_timestamps=``
  with the recording in the multipart field ``audio_file``; ``encode=false`` means the field
  holds bare 16 kHz mono s16le samples (what Bazarr sends after its own ffmpeg), kept as a WAV
  file; ``initial_prompt`` is added to the profile's glossary;
- ``POST /detect-language?encode=…`` with the same field: ``{"detected_language",
  "language_code", "confidence"}``. It runs the API profile's chain as a job that writes no
  outputs (the record only). Bazarr sends a film's whole audio track here: of raw PCM only the
  first 30 s are kept (what Whisper's detection looks at); an encoded file is run whole.
- ``video_file`` (Bazarr's "pass video name") names the job after the video.

Both run in the API's profile (``api.profile``). A refusal is FastAPI's ``{"detail": …}``; an
unknown ``output`` or ``task`` is 422, as that service answers.
"""

from __future__ import annotations

from pathlib import PurePath

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hushdrop.pipeline.api.errors import ApiError, error_response
from hushdrop.pipeline.api.formats import ASR_OUTPUTS, asr_response, detect_language_response, language_code
from hushdrop.pipeline.api.jobs import Ask, ClientGone, run_request
from hushdrop.pipeline.web.render import web_of

router = APIRouter()
FILE_FIELD = "audio_file"
DETECT_SECONDS = 30.0  # what Whisper's language detection looks at (whisper-asr-webservice's too)


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _language(value: str | None) -> str | None:
    """A code or a name; a code hushdrop's table lacks (Whisper's ``jw``, ``haw``) is passed on
    as it is, for the profile's engine to accept or refuse."""
    if not (value or "").strip():
        return None
    return language_code(value) or value.strip().lower()


def _job_name(video_file: str | None) -> str | None:
    """The name of the job: the video's (``video_file``, which Bazarr sends when "pass video name"
    is on) as a WAV, so the outbox says which film it was; else the file field's."""
    if not (video_file or "").strip():
        return None
    stem = PurePath(video_file.replace("\\", "/")).stem
    return f"{stem}.wav" if stem else None


@router.post("/asr")
async def asr(request: Request, task: str = "transcribe", language: str | None = None, initial_prompt: str | None = None,
              encode: str | None = None, output: str = "txt", word_timestamps: str | None = None,
              video_file: str | None = None) -> Response:
    web = web_of(request)
    try:
        if output not in ASR_OUTPUTS:
            raise ApiError(422, f"output must be one of {', '.join(ASR_OUTPUTS)}, not {output!r}")
        if task not in ("transcribe", "translate"):
            raise ApiError(422, f"task must be transcribe or translate, not {task!r}")
        profile = web.settings.profiles[web.settings.api.profile]
        ask = Ask(profile, language=_language(language), task=task, prompt=initial_prompt)
        answer = await run_request(web, request, FILE_FIELD, lambda fields: ask, raw_pcm=not _flag(encode, True),
                                   name=_job_name(video_file))
    except ApiError as refused:
        return error_response(request.url.path, refused)
    except ClientGone:
        return Response(status_code=499)
    body, media_type = asr_response(answer.record, output, _flag(word_timestamps, False))
    return Response(body, media_type=media_type, headers={"asr-engine": "hushdrop"})


@router.post("/detect-language")
async def detect_language(request: Request, encode: str | None = None, video_file: str | None = None) -> Response:
    web = web_of(request)
    profile = web.settings.profiles[web.settings.api.profile]
    ask = Ask(profile, language="auto", write_outputs=False)
    try:
        answer = await run_request(web, request, FILE_FIELD, lambda fields: ask, raw_pcm=not _flag(encode, True),
                                   pcm_seconds=DETECT_SECONDS, name=_job_name(video_file))
    except ApiError as refused:
        return error_response(request.url.path, refused)
    except ClientGone:
        return Response(status_code=499)
    return JSONResponse(detect_language_response(answer.record))
