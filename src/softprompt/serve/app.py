"""The HTTP API (FastAPI): classify with any loaded adapter, generate, manage adapters, health, metrics.

    POST   /v1/classify          {adapter, text, text_pair?} -> {adapter, label, score, scores, logits, truncated}
    POST   /v1/generate          {adapter, text, max_new_tokens?} -> {adapter, text, tokens, finish_reason, truncated}
                                 (decoder and encoder-decoder bases; greedy; finish_reason "stop" or "length")
    POST   /v1/completions       OpenAI-compatible: model = adapter or base name; stream = SSE
    POST   /v1/chat/completions  OpenAI-compatible chat (the base tokenizer's chat template)
    GET    /v1/models            the base and every servable adapter (OpenAI list of models)
    GET    /v1/adapters          adapters (in memory or loaded on first use), skipped folders, memory
    POST   /v1/adapters/{name}   {path}: load (or replace) an adapter at run time   [token]
    DELETE /v1/adapters/{name}   unload                                           [token]
    GET    /healthz              liveness (always open)
    GET    /metrics              Prometheus text format
Read endpoints need the token too with `protect_reads`. The OpenAPI schema is at /openapi.json.

The app is assembled here from its parts: the routers (serve/routes/, one module per API), the
request and response bodies (serve/protocol.py), the errors and their handlers (serve/errors.py),
the request guard (serve/guard.py) and the context every route gets (serve/context.py).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from softprompt.serve import errors
from softprompt.serve.config import ServeSettings
from softprompt.serve.context import ServeContext, build_context
from softprompt.serve.guard import Guard
from softprompt.serve.metrics import Metrics
from softprompt.serve.routes import admin, classify, generate, health, openai
from softprompt.serve.routes import metrics as metrics_route
from softprompt.serve.store import AdapterStore

log = logging.getLogger("softprompt.serve")

ROUTERS = (classify.router, generate.router, admin.router, health.router, metrics_route.router, openai.router)


def create_app(settings: ServeSettings, store: AdapterStore, metrics: Metrics | None = None) -> FastAPI:
    settings.validate()
    ctx = build_context(settings, store, metrics or Metrics())
    app = FastAPI(title="softprompt serve", version="1", lifespan=lifespan,
                  description="One frozen base model, many soft prompts, mixed-task batches; OpenAI-compatible "
                              "generation with continuous batching across adapters.")
    app.state.context = ctx
    app.state.settings, app.state.store, app.state.batcher, app.state.metrics = settings, store, ctx.batcher, ctx.metrics
    app.state.engine, app.state.service = ctx.engine, ctx.service
    app.add_middleware(Guard, metrics=ctx.metrics, max_body_bytes=settings.max_body_bytes)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the batcher and the engine; on shutdown finish what is queued, then stop them."""
    ctx: ServeContext = app.state.context
    settings, engine, service = ctx.settings, ctx.engine, ctx.service
    ctx.batcher.start()
    if engine is not None:
        engine.start()
    log.info("serving %d adapters on %s (%s batching%s)", len(ctx.store), ctx.backbone.name, settings.batching,
             f", {settings.generation_batching} generation" if engine is not None else "")
    yield
    # uvicorn has stopped accepting and waited for in-flight requests; finish anything queued
    if service is not None:
        service.begin_drain()
    await asyncio.to_thread(ctx.batcher.stop, settings.graceful_timeout)
    if engine is not None:
        await asyncio.to_thread(engine.stop, True, settings.graceful_timeout)
        service.shutdown()
