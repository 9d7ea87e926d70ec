"""POST /v1/classify {adapter, text, text_pair?}: the label, its probability and every label's, through
the dynamic batcher (serve/batcher.py; mixed-task batches)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from softprompt.serve.batcher import ShuttingDown
from softprompt.serve.context import ServeContext, get_context, read_access
from softprompt.serve.errors import QueueFull
from softprompt.serve.protocol import ClassifyRequest, ClassifyResponse

router = APIRouter()


@router.post("/v1/classify", response_model=ClassifyResponse, dependencies=[Depends(read_access)],
             responses={404: {"description": "unknown adapter"}, 413: {"description": "body too large"},
                        503: {"description": "overloaded; see Retry-After"}})
async def classify(req: ClassifyRequest, ctx: ServeContext = Depends(get_context)) -> dict[str, Any]:
    ctx.check_length("text", req.text)
    ctx.check_length("text_pair", req.text_pair)
    ctx.refuse_while_draining()
    entry = await ctx.acquire(req.adapter)
    try:
        result = await queued(ctx, ctx.batcher.classify(entry, req.text, req.text_pair))
    finally:
        ctx.store.release(entry)
    return {"adapter": entry.name, **result}


async def queued(ctx: ServeContext, work) -> dict[str, Any]:
    """Await a batcher job, mapping queue and inference failures to HTTP errors."""
    retry = {"Retry-After": str(ctx.settings.retry_after_s)}
    try:
        return await work
    except QueueFull as err:
        ctx.metrics.count_overload()
        raise HTTPException(503, f"server overloaded: {err}; retry later", headers=retry) from None
    except ShuttingDown as err:
        raise HTTPException(503, str(err), headers=retry) from None
    except Exception as err:
        raise HTTPException(500, f"inference failed: {type(err).__name__}: {err}") from None
