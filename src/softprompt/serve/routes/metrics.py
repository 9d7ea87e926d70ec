"""GET /metrics: Prometheus text format (serve/metrics.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from softprompt.serve.context import ServeContext, get_context, read_access
from softprompt.serve.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(read_access)])
async def metrics_endpoint(ctx: ServeContext = Depends(get_context)) -> PlainTextResponse:
    return PlainTextResponse(ctx.metrics.render(), media_type=CONTENT_TYPE)
