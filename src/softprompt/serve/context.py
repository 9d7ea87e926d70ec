"""What every route works with, built once per app and handed to the routes as a FastAPI dependency.

    ctx = build_context(settings, store, metrics)    # the batcher, the generation engine and service
    app.state.context = ctx
    async def route(..., ctx: ServeContext = Depends(get_context))
    dependencies=[Depends(read_access)] / [Depends(admin_access)]   the bearer token, where required
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, HTTPException, Request

from softprompt.errors import AdapterError
from softprompt.runners import runner_for
from softprompt.serve.batcher import Batcher
from softprompt.serve.config import ServeSettings
from softprompt.serve.metrics import Metrics
from softprompt.serve.store import AdapterEntry, AdapterStore
from softprompt.serve.streams import Generations


@dataclass
class ServeContext:
    settings: ServeSettings
    store: AdapterStore
    metrics: Metrics
    batcher: Batcher  # classification
    engine: Any = None  # GenerationEngine (decoder and encoder-decoder bases); None for an encoder
    service: Generations | None = None  # generation requests between the routes and the engine
    tokenizer: Any = None  # the routes' own copy: the engine and batcher threads use the original
    token: str | None = None  # the bearer token (read from the environment at start-up); None: no management
    started: int = field(default_factory=lambda: int(time.time()))

    @property
    def backbone(self):
        return self.store.backbone

    @property
    def draining(self) -> bool:
        return self.service is not None and self.service.draining

    # -- checks shared by the routes ---------------------------------------------------------------
    def check_token(self, request: Request, required: bool) -> None:
        if not required:
            return
        token = self.token
        if token is None:
            raise HTTPException(403, f"adapter management is disabled: start the server with ${self.settings.token_env} set")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HTTPException(401, "missing bearer token (header 'Authorization: Bearer <token>')",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(403, "wrong token")

    def check_length(self, field: str, value: str | None) -> None:
        limit = self.settings.max_text_chars
        if value is not None and len(value) > limit:
            raise HTTPException(422, f"{field} has {len(value)} characters; the limit is {limit} (--max-text-chars)")

    def refuse_while_draining(self) -> None:
        if self.draining:
            raise HTTPException(503, "the server is shutting down; retry later",
                                headers={"Retry-After": str(self.settings.retry_after_s)})

    def unknown_adapter(self, name: str) -> HTTPException:
        names = self.store.names()
        return HTTPException(404, f"unknown adapter {name!r}; available: {', '.join(names) if names else 'none loaded'}")

    async def acquire(self, name: str) -> AdapterEntry:
        """The adapter, loaded if need be and marked in use (release it), or 404; 500 if its files broke."""
        try:
            entry = await acquire_entry(self.store, name)
        except AdapterError as err:
            raise HTTPException(500, str(err)) from None
        if entry is None:
            raise self.unknown_adapter(name)
        return entry


async def acquire_entry(store: AdapterStore, name: str) -> AdapterEntry | None:
    """`store.acquire(name)`, reading the adapter's files in a thread if it is not in memory (the event
    loop goes on meanwhile); None if unknown, AdapterError if its files cannot be read."""
    if store.resident(name) is not None:
        return store.acquire(name)
    return await asyncio.to_thread(store.acquire, name)


def get_context(request: Request) -> ServeContext:
    return request.app.state.context


def read_access(request: Request, ctx: ServeContext = Depends(get_context)) -> None:
    """Read endpoints: open, or the token with `protect_reads`."""
    ctx.check_token(request, ctx.settings.protect_reads)


def admin_access(request: Request, ctx: ServeContext = Depends(get_context)) -> None:
    ctx.check_token(request, True)


# -- building ----------------------------------------------------------------------------------------
def build_context(settings: ServeSettings, store: AdapterStore, metrics: Metrics) -> ServeContext:
    backbone = store.backbone
    if store.budget is None and settings.adapter_memory_bytes is not None:
        store.budget = settings.adapter_memory_bytes
    batcher = Batcher(runner_for(backbone.model, backbone.kind), backbone.tokenizer, metrics, settings.max_batch,
                      settings.max_wait_ms, settings.max_queue, settings.batching)
    ctx = ServeContext(settings, store, metrics, batcher, tokenizer=copy.deepcopy(backbone.tokenizer),
                       token=settings.token())
    if backbone.kind != "encoder":  # continuous batching of generation (serve/engine.py), decoders and T5
        from softprompt.serve.engine import GenerationEngine

        ctx.engine = GenerationEngine(backbone, max_batch=settings.max_batch,
                                      max_queue=settings.max_gen_queue or settings.max_queue,
                                      per_adapter=settings.generation_batching == "per-adapter")
        ctx.service = Generations(ctx.engine, store, metrics, settings)
    watch(metrics, ctx)
    return ctx


def watch(metrics: Metrics, ctx: ServeContext) -> None:
    """Point the metrics' gauges at the live structures."""
    store, batcher, engine = ctx.store, ctx.batcher, ctx.engine
    metrics.queue_depth = lambda: batcher.depth
    metrics.adapters_loaded = lambda: len(store.entries())
    metrics.adapters_servable = lambda: len(store)
    metrics.adapter_memory = lambda: store.memory_bytes
    metrics.adapter_loads = lambda: store.loads
    metrics.adapter_evictions = lambda: store.evictions
    if engine is not None:
        metrics.gen_running = lambda: safe_count(lambda: engine.running)
        metrics.gen_waiting = lambda: safe_count(lambda: engine.waiting)


def safe_count(read) -> int:
    """A count read from another thread's structures (a dict may change size while read)."""
    for _ in range(3):
        try:
            return int(read())
        except RuntimeError:
            continue
    return -1
