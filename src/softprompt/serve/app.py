"""The HTTP API (FastAPI): classify with any loaded adapter, manage adapters, health, metrics.

    POST   /v1/classify          {adapter, text, text_pair?} -> {adapter, label, score, scores, logits, truncated}
    POST   /v1/generate          {adapter, text, max_new_tokens?} -> {adapter, text, tokens, finish_reason, truncated}
                                 (decoder and encoder-decoder bases; greedy)
    POST   /v1/completions       OpenAI-compatible (serve/oai.py): model = adapter or base name; stream = SSE
    POST   /v1/chat/completions  OpenAI-compatible chat (the base tokenizer's chat template)
    GET    /v1/models            the base and every servable adapter (OpenAI list of models)
    GET    /v1/adapters          adapters (in memory or loaded on first use), skipped folders, memory
    POST   /v1/adapters/{name}   {path}: load (or replace) an adapter at run time   [token]
    DELETE /v1/adapters/{name}   unload                                           [token]
    GET    /healthz              liveness (always open)
    GET    /metrics              Prometheus text format
Read endpoints need the token too with `protect_reads`. The OpenAPI schema is at /openapi.json.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from softprompt.errors import AdapterError
from softprompt.runners import runner_for
from softprompt.serve.batcher import Batcher, QueueFull, ShuttingDown
from softprompt.serve.config import ServeSettings
from softprompt.serve.metrics import CONTENT_TYPE, Metrics
from softprompt.serve.oai import error_body, error_response, is_openai_path, openai_router
from softprompt.serve.store import AdapterStore, WrongBaseError
from softprompt.serve.streams import Generations, Refused

log = logging.getLogger("softprompt.serve")


# -- request / response bodies ---------------------------------------------------------------------
class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    adapter: str = Field(min_length=1, max_length=64, description="name of a loaded adapter")
    text: str = Field(description="input text")
    text_pair: str | None = Field(default=None, description="second text, for pair tasks")


class ClassifyResponse(BaseModel):
    adapter: str
    label: str | None = Field(description="predicted label (None for regression adapters)")
    score: float = Field(description="probability of the label, or the regression value")
    scores: dict[str, float] = Field(description="probability of every label")
    logits: list[float]
    truncated: bool = Field(description="the input was cut to the adapter's token limit")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    adapter: str = Field(min_length=1, max_length=64, description="name of a loaded adapter")
    text: str = Field(description="text to continue (decoders) or to answer (T5)")
    max_new_tokens: int = Field(default=32, ge=1, le=512, description="most tokens to generate")


class GenerateResponse(BaseModel):
    adapter: str
    text: str = Field(description="the generated text (special tokens removed)")
    tokens: int = Field(description="generated tokens before end-of-sequence")
    finish_reason: str = Field(description="'eos' or 'length'")
    truncated: bool = Field(description="the input's start was cut to leave room for the prompt and the answer")


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096, description="adapter folder on the server's filesystem")


# -- middleware ------------------------------------------------------------------------------------
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


# -- the app ---------------------------------------------------------------------------------------
def create_app(settings: ServeSettings, store: AdapterStore, metrics: Metrics | None = None) -> FastAPI:
    settings.validate()
    metrics = metrics or Metrics()
    backbone = store.backbone
    if store.budget is None and settings.adapter_memory_bytes is not None:
        store.budget = settings.adapter_memory_bytes
    runner = runner_for(backbone.model, backbone.kind)
    batcher = Batcher(runner, backbone.tokenizer, metrics, settings.max_batch, settings.max_wait_ms,
                      settings.max_queue, settings.batching)
    engine = service = None
    if backbone.kind != "encoder":  # continuous batching of generation (serve/engine.py), decoders and T5
        from softprompt.serve.engine import GenerationEngine

        engine = GenerationEngine(backbone, max_batch=settings.max_batch,
                                  max_queue=settings.max_gen_queue or settings.max_queue,
                                  per_adapter=settings.generation_batching == "per-adapter")
        service = Generations(engine, store, metrics, settings)
    metrics.queue_depth = lambda: batcher.depth
    metrics.adapters_loaded = lambda: len(store.entries())
    metrics.adapters_servable = lambda: len(store)
    metrics.adapter_memory = lambda: store.memory_bytes
    metrics.adapter_loads = lambda: store.loads
    metrics.adapter_evictions = lambda: store.evictions
    if engine is not None:
        metrics.gen_running = lambda: _safe_count(lambda: engine.running)
        metrics.gen_waiting = lambda: _safe_count(lambda: engine.waiting)
    token = settings.token()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        if engine is not None:
            engine.start()
        log.info("serving %d adapters on %s (%s batching%s)", len(store), backbone.name, settings.batching,
                 f", {settings.generation_batching} generation" if engine is not None else "")
        yield
        # uvicorn has stopped accepting and waited for in-flight requests; finish anything queued
        if service is not None:
            service.begin_drain()
        await asyncio.to_thread(batcher.stop, settings.graceful_timeout)
        if engine is not None:
            await asyncio.to_thread(engine.stop, True, settings.graceful_timeout)
            service.shutdown()

    app = FastAPI(title="softprompt serve", version="1", lifespan=lifespan,
                  description="One frozen base model, many soft prompts, mixed-task batches; OpenAI-compatible "
                              "generation with continuous batching across adapters.")
    app.state.settings, app.state.store, app.state.batcher, app.state.metrics = settings, store, batcher, metrics
    app.state.engine, app.state.service = engine, service
    app.add_middleware(Guard, metrics=metrics, max_body_bytes=settings.max_body_bytes)

    def check_token(request: Request, required: bool) -> None:
        if not required:
            return
        if token is None:
            raise HTTPException(403, f"adapter management is disabled: start the server with ${settings.token_env} set")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HTTPException(401, "missing bearer token (header 'Authorization: Bearer <token>')",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(403, "wrong token")

    def read_access(request: Request) -> None:
        check_token(request, settings.protect_reads)

    def admin_access(request: Request) -> None:
        check_token(request, True)

    def draining() -> bool:
        return service is not None and service.draining

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
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

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        if is_openai_path(request.url.path):
            return error_response(exc)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        if is_openai_path(request.url.path):
            kind = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}.get(
                exc.status_code, "invalid_request_error" if exc.status_code < 500 else "server_error")
            return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code, headers=headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    def unknown(name: str) -> HTTPException:
        names = store.names()
        have = ", ".join(names) if names else "none loaded"
        return HTTPException(404, f"unknown adapter {name!r}; available: {have}")

    async def acquire(name: str):
        """The adapter, loaded if need be and marked in use (release it), or 404; 500 if its files broke."""
        entry = store.resident(name)
        try:
            entry = store.acquire(name) if entry is not None else await asyncio.to_thread(store.acquire, name)
        except AdapterError as err:
            raise HTTPException(500, str(err)) from None
        if entry is None:
            raise unknown(name)
        return entry

    def refuse_while_draining() -> None:
        if draining():
            raise HTTPException(503, "the server is shutting down; retry later",
                                headers={"Retry-After": str(settings.retry_after_s)})

    @app.post("/v1/classify", response_model=ClassifyResponse, dependencies=[Depends(read_access)],
              responses={404: {"description": "unknown adapter"}, 413: {"description": "body too large"},
                         503: {"description": "overloaded; see Retry-After"}})
    async def classify(req: ClassifyRequest) -> dict[str, Any]:
        check_length("text", req.text)
        check_length("text_pair", req.text_pair)
        refuse_while_draining()
        entry = await acquire(req.adapter)
        try:
            result = await queued(batcher.classify(entry, req.text, req.text_pair))
        finally:
            store.release(entry)
        return {"adapter": entry.name, **result}

    @app.post("/v1/generate", response_model=GenerateResponse, dependencies=[Depends(read_access)],
              responses={404: {"description": "unknown adapter"}, 422: {"description": "encoder base or bad input"},
                         503: {"description": "overloaded; see Retry-After"}})
    async def generate(req: GenerateRequest) -> dict[str, Any]:
        check_length("text", req.text)
        if backbone.kind == "encoder":
            raise HTTPException(422, f"base {backbone.name!r} is an encoder ({backbone.family}); generation needs a "
                                     "decoder or encoder-decoder base: use /v1/classify")
        refuse_while_draining()
        entry = await acquire(req.adapter)
        if service is None:  # encoder-decoder (T5): the batcher's greedy generation
            try:
                result = await queued(batcher.generate(entry, req.text, req.max_new_tokens))
            finally:
                store.release(entry)
            return {"adapter": entry.name, **result}
        # decoders: the engine (greedy); the input's start is cut to leave room for the answer
        limit = max(entry.max_tokens - req.max_new_tokens, 1)
        ids = list(gen_tokenizer(req.text)["input_ids"])
        truncated = len(ids) > limit
        from softprompt.serve.engine import SamplingParams

        run = service.submit(entry.name, entry, ids[-limit:], SamplingParams(max_tokens=req.max_new_tokens,
                                                                             temperature=0.0))
        try:
            f = await run.collect()
        finally:
            run.close()
        if f.reason not in ("stop", "length"):
            raise HTTPException(500, f"generation with adapter {entry.name!r} failed: {f.error or f.reason}")
        return {"adapter": entry.name, "text": f.text, "tokens": f.completion_tokens,
                "finish_reason": "eos" if f.reason == "stop" else "length", "truncated": truncated}

    gen_tokenizer = copy.deepcopy(backbone.tokenizer)  # the engine thread decodes with the original

    async def queued(work) -> dict[str, Any]:
        """Await a batcher job, mapping queue and inference failures to HTTP errors."""
        try:
            return await work
        except QueueFull as err:
            metrics.count_overload()
            raise HTTPException(503, f"server overloaded: {err}; retry later",
                                headers={"Retry-After": str(settings.retry_after_s)}) from None
        except ShuttingDown as err:
            raise HTTPException(503, str(err), headers={"Retry-After": str(settings.retry_after_s)}) from None
        except Exception as err:
            raise HTTPException(500, f"inference failed: {type(err).__name__}: {err}") from None

    def check_length(field: str, value: str | None) -> None:
        if value is not None and len(value) > settings.max_text_chars:
            raise HTTPException(422, f"{field} has {len(value)} characters; the limit is "
                                     f"{settings.max_text_chars} (--max-text-chars)")

    @app.get("/v1/adapters", dependencies=[Depends(read_access)])
    async def adapters() -> dict[str, Any]:
        await asyncio.to_thread(store.rescan, False)
        resident = {e.name: e for e in store.entries()}
        listed = []
        for name in store.names():
            if name in resident:
                listed.append({**resident[name].describe(), "loaded": True})
            else:
                source = next((s for s in store.sources() if s.name == name), None)
                if source is not None:
                    listed.append({"name": name, "method": (source.meta.get("method") or {}).get("name"),
                                   "task": source.meta.get("task"), "path": str(source.path), "loaded": False})
        return {
            "base": {"name": backbone.name, "family": backbone.family, "kind": backbone.kind,
                     "fingerprint": backbone.fingerprint()},
            "adapters": listed,
            "skipped": store.skipped,
            "rejected": store.rejected,
            "memory": {"bytes": store.memory_bytes, "budget_bytes": store.budget, "in_memory": len(resident),
                       "loads": store.loads, "evictions": store.evictions},
        }

    @app.post("/v1/adapters/{name}", status_code=201, dependencies=[Depends(admin_access)],
              responses={409: {"description": "made for another base model"}, 422: {"description": "bad adapter"}})
    async def load(name: str, req: LoadRequest) -> dict[str, Any]:
        try:
            entry = await asyncio.to_thread(store.build, name, req.path)
        except WrongBaseError as err:
            raise HTTPException(409, str(err)) from None
        except AdapterError as err:
            raise HTTPException(422, str(err)) from None
        except Exception as err:
            raise HTTPException(422, f"adapter {name!r} could not be loaded: {type(err).__name__}: {err}") from None
        replaced = store.add(entry) is not None
        log.info("adapter %s %s from %s", name, "replaced" if replaced else "loaded", entry.path)
        return {"adapter": entry.describe(), "replaced": replaced}

    @app.delete("/v1/adapters/{name}", dependencies=[Depends(admin_access)])
    async def unload(name: str) -> dict[str, Any]:
        if store.remove(name) is None:
            raise unknown(name)
        log.info("adapter %s unloaded", name)
        return {"deleted": name}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        out = {"status": "draining" if draining() else "ok", "base": backbone.name, "adapters": len(store),
               "queue_depth": batcher.depth, "in_flight": batcher.in_flight}
        if engine is not None:
            out["generation"] = {"running": _safe_count(lambda: engine.running),
                                 "waiting": _safe_count(lambda: engine.waiting), "in_flight": service.active,
                                 "batching": settings.generation_batching}
        return out

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(read_access)])
    async def metrics_endpoint() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(openai_router(app, service, read_access))
    return app


def _safe_count(read) -> int:
    """A count read from another thread's structures (a dict may change size while read)."""
    for _ in range(3):
        try:
            return int(read())
        except RuntimeError:
            continue
    return -1
