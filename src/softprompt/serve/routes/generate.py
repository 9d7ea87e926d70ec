"""POST /v1/generate {adapter, text, max_new_tokens?}: greedy generation with an adapter, through the
generation engine (decoder and encoder-decoder bases). `finish_reason` is the engine's: "stop"
(end-of-sequence) or "length"."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from softprompt.serve.context import ServeContext, get_context, read_access
from softprompt.serve.engine import SamplingParams
from softprompt.serve.protocol import GenerateRequest, GenerateResponse

router = APIRouter()


@router.post("/v1/generate", response_model=GenerateResponse, dependencies=[Depends(read_access)],
             responses={404: {"description": "unknown adapter"}, 422: {"description": "encoder base or bad input"},
                        503: {"description": "overloaded; see Retry-After"}})
async def generate(req: GenerateRequest, ctx: ServeContext = Depends(get_context)) -> dict[str, Any]:
    ctx.check_length("text", req.text)
    backbone = ctx.backbone
    if ctx.service is None:
        raise HTTPException(422, f"base {backbone.name!r} is an encoder ({backbone.family}); generation needs a "
                                 "decoder or encoder-decoder base: use /v1/classify")
    ctx.refuse_while_draining()
    entry = await ctx.acquire(req.adapter)
    limit = max(entry.max_tokens - req.max_new_tokens, 1)  # the input's start is cut to leave room for the answer
    ids = list(ctx.tokenizer(req.text)["input_ids"])
    run = ctx.service.submit(entry.name, entry, ids[-limit:], SamplingParams(max_tokens=req.max_new_tokens,
                                                                             temperature=0.0))
    try:
        f = await run.collect()
    finally:
        run.close()
    if f.reason not in ("stop", "length"):
        raise HTTPException(500, f"generation with adapter {entry.name!r} failed: {f.error or f.reason}")
    return {"adapter": entry.name, "text": f.text, "tokens": f.completion_tokens, "finish_reason": f.reason,
            "truncated": len(ids) > limit}
