"""The request guard (pure ASGI middleware): the request body limit (413) and the request metrics."""

from __future__ import annotations

import json
import time

from softprompt.serve.errors import error_body, is_openai_path
from softprompt.serve.metrics import Metrics

ENDPOINTS = ("/v1/classify", "/v1/generate", "/v1/adapters", "/healthz", "/metrics", "/openapi.json", "/docs",
             "/v1/completions", "/v1/chat/completions", "/v1/models")


def endpoint_label(path: str) -> str:
    if path.startswith("/v1/adapters/"):
        return "/v1/adapters/{name}"
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return path if path in ENDPOINTS else "other"


class Guard:
    """Pure ASGI middleware: request body limit (413) and request metrics."""

    def __init__(self, app, metrics: Metrics, max_body_bytes: int):
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            body_receive = await self._bounded_body(scope, receive, send_wrapper)
            if body_receive is None:
                status["code"] = status["code"] if status["code"] == 413 else 499  # 499: client went away
            else:
                await self.app(scope, body_receive, send_wrapper)
        finally:
            self.metrics.observe_request(scope["method"], endpoint_label(scope["path"]), status["code"],
                                         time.perf_counter() - start)

    async def _bounded_body(self, scope, receive, send):
        """Read the whole body (at most max_body bytes) and replay it; None after a 413 or a disconnect."""
        length = dict(scope.get("headers") or {}).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = 0
            if declared > self.max_body:
                await self._too_large(send, declared, scope["path"])
                return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: nobody to answer
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(send, size, scope["path"])
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _too_large(self, send, size: int, path: str = "") -> None:
        message = f"request body of {size} bytes is over the limit of {self.max_body} bytes (--max-body-bytes)"
        shaped = error_body(message, code="request_too_large") if is_openai_path(path) else {"detail": message}
        body = json.dumps(shaped).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
