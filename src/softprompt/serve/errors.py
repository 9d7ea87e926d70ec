"""The server's errors, and how each becomes an HTTP answer.

    Refused      a request that was not run: status, message, and OpenAI's type / param / code
    QueueFull    too many requests are waiting (HTTP 503 with Retry-After): the classification
                 batcher and the generation engine raise this one class
    install(app) the exception handlers: OpenAI paths answer `{"error": {message, type, param, code}}`,
                 the other paths `{"detail": ...}` (validation errors: 400 on OpenAI paths, 422 elsewhere)
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from softprompt.errors import SoftPromptError

OPENAI_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/models")


class Refused(Exception):
    """A request that was not run: `status` (400/404/500/503), message, OpenAI type/param/code."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.retry_after = retry_after


class QueueFull(SoftPromptError):
    """Too many requests are waiting (HTTP 503 with Retry-After)."""


def is_openai_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in OPENAI_PATHS)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(err: Refused) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    return JSONResponse(error_body(err.message, err.type, err.param, err.code), status_code=err.status, headers=headers)


# -- the handlers ------------------------------------------------------------------------------------
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    summary = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors[:5])
    if is_openai_path(request.url.path):
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        code = "unrecognized_argument" if first.get("type") == "extra_forbidden" else "invalid_value"
        return JSONResponse(error_body(f"invalid request: {summary}", param=".".join(loc) or None, code=code),
                            status_code=400)
    return JSONResponse({"detail": f"invalid request: {summary}", "errors": json.loads(json.dumps(errors, default=str))},
                        status_code=422)


async def refused(request: Request, exc: Refused) -> JSONResponse:
    if is_openai_path(request.url.path):
        return error_response(exc)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    if is_openai_path(request.url.path):
        kind = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}.get(
            exc.status_code, "invalid_request_error" if exc.status_code < 500 else "server_error")
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code, headers=headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def install(app: FastAPI) -> None:
    """Answer every error in the shape of the API it happened in."""
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(StarletteHTTPException, http_error)
