"""The API's refusals, each in the shape the calling client reads.

OpenAI's clients (``/v1/…``) read ``{"error": {"message", "type", "param", "code"}}`` and raise
their own exception class by the status (400 ``BadRequestError``, 401 ``AuthenticationError``,
429 ``RateLimitError`` …); whisper-asr-webservice's clients (``/asr``, ``/detect-language``)
read FastAPI's ``{"detail": message}``.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

OPENAI_PREFIX = "/v1/"
WEBSERVICE_PATHS = frozenset({"/asr", "/detect-language"})

# the error ``type`` OpenAI's API gives for each status
_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
    404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
    415: "invalid_request_error", 429: "rate_limit_error", 504: "timeout",
}


def is_api_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX) or path in WEBSERVICE_PATHS


class ApiError(Exception):
    """A request the API refuses or cannot answer: the status and a message a person can act on."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_response(path: str, error: ApiError) -> JSONResponse:
    if path.startswith(OPENAI_PREFIX):
        body = {"error": {
            "message": error.message, "type": _OPENAI_TYPES.get(error.status, "server_error"),
            "param": error.param, "code": error.code,
        }}
    else:
        body = {"detail": error.message}
    return JSONResponse(body, error.status, headers=error.headers)
