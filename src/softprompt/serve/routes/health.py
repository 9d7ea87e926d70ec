"""GET /healthz: liveness (always open), with the queues' state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from softprompt.serve.context import ServeContext, get_context, safe_count

router = APIRouter()


@router.get("/healthz")
async def healthz(ctx: ServeContext = Depends(get_context)) -> dict[str, Any]:
    engine, batcher = ctx.engine, ctx.batcher
    out = {"status": "draining" if ctx.draining else "ok", "base": ctx.backbone.name, "adapters": len(ctx.store),
           "queue_depth": batcher.depth, "in_flight": batcher.in_flight}
    if engine is not None:
        out["generation"] = {"running": safe_count(lambda: engine.running),
                             "waiting": safe_count(lambda: engine.waiting), "in_flight": ctx.service.active,
                             "batching": ctx.settings.generation_batching}
    return out
