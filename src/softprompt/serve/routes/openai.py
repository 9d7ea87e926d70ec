"""OpenAI-compatible generation: /v1/completions, /v1/chat/completions, /v1/models.

`model` names an adapter, or the base model itself for no soft prompt. Responses and stream
chunks have OpenAI's shapes (`text_completion`, `chat.completion`, `chat.completion.chunk`),
streams are server-sent events (sse-starlette) ending with `data: [DONE]`, and errors are
`{"error": {"message", "type", "param", "code"}}`. The official `openai` client works unchanged.
Extension: `ignore_eos` (as vLLM): keep generating past end-of-sequence up to max_tokens.
Fields OpenAI has but this server does not implement (logprobs, penalties, tools, n > 1, ...)
are refused with 400 when set to anything but their neutral value, never silently ignored.
The temperature goes to the engine as given (it samples greedily at 0).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from softprompt.errors import AdapterError
from softprompt.serve.context import ServeContext, acquire_entry, get_context, read_access
from softprompt.serve.engine import Finish, SamplingParams
from softprompt.serve.errors import Refused, error_body
from softprompt.serve.protocol import (ERRORS, STREAM_DOC, ChatMessage, ChatRequest, ChatResponse, CompletionRequest,
                                       CompletionResponse, ModelCard, ModelList, Sampling)
from softprompt.serve.streams import Run
from softprompt.tasks.chat import has_chat_template, render_messages

router = APIRouter(dependencies=[Depends(read_access)])
ANSWERED = ("stop", "length")  # finish reasons of a request that ran to its end


# -- models ------------------------------------------------------------------------------------------
def base_names(ctx: ServeContext) -> set[str]:
    backbone = ctx.backbone
    return {backbone.name, str(getattr(backbone.config, "_name_or_path", "") or backbone.name)}


def model_names(ctx: ServeContext) -> list[str]:
    return [ctx.backbone.name] + [n for n in ctx.store.names() if n != ctx.backbone.name]


def card(ctx: ServeContext, name: str) -> dict[str, Any]:
    base = ctx.backbone.name
    return {"id": name, "object": "model", "created": ctx.started,
            "owned_by": "softprompt" if name == base else f"softprompt:{base}"}


def unknown_model(ctx: ServeContext, name: str) -> Refused:
    names = model_names(ctx)
    shown = ", ".join(names[:20]) + (f" (and {len(names) - 20} more)" if len(names) > 20 else "")
    return Refused(404, f"The model {name!r} does not exist; available: {shown}", param="model", code="model_not_found")


@router.get("/v1/models", response_model=ModelList, responses={k: ERRORS[k] for k in (401, 403)})
async def list_models(ctx: ServeContext = Depends(get_context)) -> dict[str, Any]:
    await asyncio.to_thread(ctx.store.rescan, False)
    return {"object": "list", "data": [card(ctx, n) for n in model_names(ctx)]}


@router.get("/v1/models/{model:path}", response_model=ModelCard, responses={k: ERRORS[k] for k in (401, 403, 404)})
async def get_model(model: str, ctx: ServeContext = Depends(get_context)) -> dict[str, Any]:
    store = ctx.store
    if model not in base_names(ctx) and model not in store:
        store.rescan(False, want=model)
        if model not in store:
            raise unknown_model(ctx, model)
    return card(ctx, ctx.backbone.name if model in base_names(ctx) else model)


# -- completions -------------------------------------------------------------------------------------
@router.post("/v1/completions", response_model=CompletionResponse, responses={200: STREAM_DOC, **ERRORS})
async def completions(req: CompletionRequest, ctx: ServeContext = Depends(get_context)):
    check_common(ctx, req)
    check_completion(req)
    run = await start(ctx, req, prompt_ids(ctx, req.prompt), req.max_tokens or 16)
    rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def body(text: str, reason: str | None) -> dict[str, Any]:
        return {"id": rid, "object": "text_completion", "created": created, "model": req.model,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}]}

    if not req.stream:
        def full(f: Finish) -> dict[str, Any]:
            out = {**body(f.text, f.reason), "usage": usage(f)}
            if req.return_token_ids:
                out["choices"][0]["token_ids"] = f.token_ids
            return out

        return await answer(run, full)
    return await stream_out(ctx, run, req, lambda piece: body(piece, None), lambda f: body("", f.reason),
                            lambda f: {**body("", None), "choices": [], "usage": usage(f)})


def check_completion(req: CompletionRequest) -> None:
    if req.logprobs is not None:
        raise Refused(400, "logprobs is not supported", param="logprobs")
    if req.echo:
        raise Refused(400, "echo is not supported", param="echo")
    if req.best_of not in (None, 1):
        raise Refused(400, f"best_of={req.best_of}: only 1 is supported", param="best_of")
    if req.suffix is not None:
        raise Refused(400, "suffix is not supported", param="suffix")
    if req.return_token_ids and req.stream:
        raise Refused(400, "return_token_ids is for non-streamed requests", param="return_token_ids")


def prompt_ids(ctx: ServeContext, prompt) -> list[int]:
    vocab = len(ctx.tokenizer)
    if isinstance(prompt, list) and prompt and all(isinstance(x, int) for x in prompt):
        bad = [x for x in prompt if not 0 <= x < vocab]
        if bad:
            raise Refused(400, f"prompt token ids must be in [0, {vocab}); got {bad[:5]}", param="prompt")
        return list(prompt)
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise Refused(400, f"prompt is a list of {len(prompt)} texts; only one prompt per request is supported",
                          param="prompt")
        prompt = prompt[0]
    ids = list(ctx.tokenizer(prompt)["input_ids"])
    if not ids:
        raise Refused(400, "the prompt has no tokens", param="prompt")
    return ids


# -- chat --------------------------------------------------------------------------------------------
@router.post("/v1/chat/completions", response_model=ChatResponse, responses={200: STREAM_DOC, **ERRORS})
async def chat(req: ChatRequest, ctx: ServeContext = Depends(get_context)):
    check_common(ctx, req)
    limit = check_chat(ctx, req)
    run = await start(ctx, req, render_chat(ctx, req.messages), limit)  # no limit: OpenAI's "up to the context"
    rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    head = {"id": rid, "created": created, "model": req.model, "system_fingerprint": None}

    def chunk(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
        return {"id": rid, "object": "chat.completion.chunk", **head,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}

    if not req.stream:
        return await answer(run, lambda f: {
            "id": rid, "object": "chat.completion", **head,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f.text}, "logprobs": None,
                         "finish_reason": f.reason}],
            "usage": usage(f)})
    return await stream_out(ctx, run, req, lambda piece: chunk({"content": piece}, None), lambda f: chunk({}, f.reason),
                            lambda f: {**chunk({}, None), "choices": [], "usage": usage(f)},
                            opening=chunk({"role": "assistant", "content": ""}, None))


def check_chat(ctx: ServeContext, req: ChatRequest) -> int | None:
    """Refuse what chat does not support; the request's token limit (None: up to the context)."""
    if req.logprobs or req.top_logprobs is not None:
        raise Refused(400, "logprobs is not supported", param="logprobs")
    if req.tools or req.tool_choice not in (None, "none"):
        raise Refused(400, "tools are not supported", param="tools")
    if req.response_format not in (None, {"type": "text"}):
        raise Refused(400, "only response_format {'type': 'text'} is supported", param="response_format")
    if req.max_completion_tokens is not None and req.max_tokens is not None \
            and req.max_completion_tokens != req.max_tokens:
        raise Refused(400, "max_tokens and max_completion_tokens differ; give one", param="max_completion_tokens")
    limit = req.max_completion_tokens or req.max_tokens
    most = ctx.settings.max_tokens_limit
    if limit is not None and limit > most:
        raise Refused(400, f"max_completion_tokens={limit} is over this server's limit of {most} (--max-tokens-limit)",
                      param="max_completion_tokens")
    return limit


def render_chat(ctx: ServeContext, messages: list[ChatMessage]) -> list[int]:
    tokenizer = ctx.tokenizer
    if not has_chat_template(tokenizer):
        raise Refused(400, f"the base model {ctx.backbone.name!r} has no chat template (its tokenizer defines none); "
                           "use /v1/completions with a plain prompt", param="messages", code="no_chat_template")
    plain = []
    for m in messages:
        content = m.content if isinstance(m.content, str) or m.content is None \
            else "".join(part.text for part in m.content)
        item = {"role": m.role, "content": content or ""}
        if m.name is not None:
            item["name"] = m.name
        plain.append(item)
    try:
        text = render_messages(tokenizer, plain)
    except Exception as err:  # the template refused the conversation (e.g. roles out of order)
        raise Refused(400, f"the chat template could not render these messages: {type(err).__name__}: {err}",
                      param="messages") from None
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise Refused(400, "the rendered conversation has no tokens", param="messages")
    return ids


# -- both --------------------------------------------------------------------------------------------
def check_common(ctx: ServeContext, req: Sampling) -> None:
    backbone, most = ctx.backbone, ctx.settings.max_tokens_limit
    if ctx.service is None:
        raise Refused(400, f"base {backbone.name!r} is {'an' if backbone.kind[0] in 'ae' else 'a'} {backbone.kind} "
                           f"({backbone.family}); OpenAI-style generation needs a decoder base "
                           f"(use /v1/classify{', or /v1/generate' if backbone.kind == 'encoder-decoder' else ''})",
                      param="model", code="model_not_supported")
    if req.n != 1:
        raise Refused(400, f"n={req.n}: only n=1 is supported", param="n")
    if req.presence_penalty != 0 or req.frequency_penalty != 0:
        raise Refused(400, "presence_penalty and frequency_penalty are not supported (use 0)", param="presence_penalty")
    if req.logit_bias:
        raise Refused(400, "logit_bias is not supported", param="logit_bias")
    stops = stop_list(req.stop)
    if len(stops) > 4:
        raise Refused(400, f"stop has {len(stops)} strings; at most 4 are allowed", param="stop")
    if req.max_tokens is not None and req.max_tokens > most:
        raise Refused(400, f"max_tokens={req.max_tokens} is over this server's limit of {most} (--max-tokens-limit)",
                      param="max_tokens")


def stop_list(stop) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


async def resolve(ctx: ServeContext, name: str):
    """(adapter name for metrics, acquired entry or None for the base)."""
    if name in base_names(ctx):
        return ctx.backbone.name, None
    try:
        entry = await acquire_entry(ctx.store, name)
    except AdapterError as err:
        raise Refused(500, str(err), "server_error", param="model", code="adapter_unavailable") from None
    if entry is None:
        raise unknown_model(ctx, name)
    return name, entry


async def start(ctx: ServeContext, req: Sampling, ids: list[int], max_tokens: int | None) -> Run:
    """Submit; max_tokens None: what the context leaves (at most --max-tokens-limit)."""
    adapter, entry = await resolve(ctx, req.model)
    if max_tokens is None:
        most = ctx.settings.max_tokens_limit
        room = (ctx.engine.max_context or most) - len(ids) - (entry.prompt_positions if entry is not None else 0)
        max_tokens = max(min(most, room), 1)
    params = SamplingParams(max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                            stop=stop_list(req.stop))
    return ctx.service.submit(adapter, entry, ids, params, ignore_eos=req.ignore_eos)


def usage(f: Finish) -> dict[str, int]:
    return {"prompt_tokens": f.prompt_tokens, "completion_tokens": f.completion_tokens,
            "total_tokens": f.prompt_tokens + f.completion_tokens}


def failed(run: Run, f: Finish) -> Refused:
    return Refused(500, f"generation with model {run.adapter!r} failed: {f.error or f.reason}", "server_error",
                   code="generation_failed")


# -- answering ---------------------------------------------------------------------------------------
async def answer(run: Run, build) -> JSONResponse:
    try:
        f = await run.collect()
    finally:
        run.close()  # a client gone while waiting: the handler is cancelled, the request too
    if f.reason not in ANSWERED:
        raise failed(run, f)
    return JSONResponse(build(f))


async def stream_out(ctx: ServeContext, run: Run, req: Sampling, piece_body, final_body, usage_body, opening=None):
    try:
        first = await run.first()  # a request that fails at once is a plain 500, not a broken stream
    except BaseException:
        run.close()
        raise
    if isinstance(first, Finish) and first.reason not in ANSWERED:
        run.close()
        raise failed(run, first)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    async def events():
        try:
            if opening is not None:
                yield {"data": json.dumps(opening)}
            async for piece in run.pieces():
                yield {"data": json.dumps(piece_body(piece))}
            f = run.finish
            if f.reason in ANSWERED:
                yield {"data": json.dumps(final_body(f))}
                if include_usage:
                    yield {"data": json.dumps(usage_body(f))}
            else:  # failed mid-stream: OpenAI's way, an error object in the stream
                err = failed(run, f)
                yield {"data": json.dumps(error_body(err.message, err.type, None, err.code))}
            yield {"data": "[DONE]"}
        finally:
            run.close()

    return EventSourceResponse(events(), sep="\n", ping=15, shutdown_grace_period=ctx.settings.graceful_timeout,
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
