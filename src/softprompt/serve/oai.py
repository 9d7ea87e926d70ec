"""OpenAI-compatible generation: /v1/completions, /v1/chat/completions, /v1/models.

`model` names an adapter, or the base model itself for no soft prompt. Responses and stream
chunks have OpenAI's shapes (`text_completion`, `chat.completion`, `chat.completion.chunk`),
streams are server-sent events (sse-starlette) ending with `data: [DONE]`, and errors are
`{"error": {"message", "type", "param", "code"}}`. The official `openai` client works unchanged.
Extension: `ignore_eos` (as vLLM): keep generating past end-of-sequence up to max_tokens.
Fields OpenAI has but this server does not implement (logprobs, penalties, tools, n > 1, ...)
are refused with 400 when set to anything but their neutral value, never silently ignored.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from softprompt.errors import AdapterError
from softprompt.serve.engine import Finish, SamplingParams
from softprompt.serve.streams import Generations, Refused

INT64 = 2**63
GREEDY_BELOW = 1e-4  # temperatures under this are greedy (dividing logits by ~0 overflows to inf/NaN)
OPENAI_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/models")


def is_openai_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in OPENAI_PATHS)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(err: Refused) -> JSONResponse:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    return JSONResponse(error_body(err.message, err.type, err.param, err.code), status_code=err.status, headers=headers)


# -- request bodies -----------------------------------------------------------------------------------
class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class Sampling(BaseModel):
    """Fields both endpoints share."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256, description="adapter name, or the base model's name for no prompt")
    max_tokens: int | None = Field(default=None, ge=1, description="most tokens to generate")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, description=f"0 (or below {GREEDY_BELOW}): greedy")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-INT64, lt=INT64)
    stop: str | list[str] | None = Field(default=None, description="up to 4 stop strings; the text ends before one")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, description="only 1 is supported")
    presence_penalty: float = Field(default=0.0, description="only 0 is supported")
    frequency_penalty: float = Field(default=0.0, description="only 0 is supported")
    logit_bias: dict[str, float] | None = Field(default=None, description="not supported (null or empty only)")
    user: str | None = Field(default=None, max_length=256, description="caller id (not used)")
    ignore_eos: bool = Field(default=False, description="extension: generate past end-of-sequence up to max_tokens")


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[int] = Field(description="text, [text] or a list of token ids")
    max_tokens: int | None = Field(default=16, ge=1, description="most tokens to generate (default 16)")
    logprobs: int | None = Field(default=None, description="not supported (null only)")
    echo: bool = Field(default=False, description="not supported (false only)")
    best_of: int | None = Field(default=None, description="only 1 is supported")
    suffix: str | None = Field(default=None, description="not supported (null only)")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, description="same as max_tokens")
    logprobs: bool = Field(default=False, description="not supported (false only)")
    top_logprobs: int | None = Field(default=None, description="not supported (null only)")
    tools: list[dict[str, Any]] | None = Field(default=None, description="not supported (null or empty only)")
    tool_choice: str | dict[str, Any] | None = Field(default=None, description="not supported (null or 'none')")
    response_format: dict[str, Any] | None = Field(default=None, description="only {'type': 'text'}")


# -- response bodies (for the schema) ------------------------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in (
    (400, "invalid request (bad field, unsupported option, context too long, no chat template)"),
    (401, "missing bearer token"), (403, "wrong token"), (404, "unknown model"), (413, "body too large"),
    (500, "the adapter failed"), (503, "overloaded or shutting down; see Retry-After"))}
STREAM_DOC = {"description": "JSON, or server-sent events (`data: {chunk}` ... `data: [DONE]`) with stream=true",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}}


# -- the routes ----------------------------------------------------------------------------------------
def openai_router(app, service: Generations | None, read_access) -> APIRouter:
    store = app.state.store
    backbone = store.backbone
    settings = app.state.settings
    tokenizer = copy.deepcopy(backbone.tokenizer)  # the engine thread decodes with the original
    vocab = len(tokenizer)
    started = int(time.time())
    router = APIRouter(dependencies=[Depends(read_access)])

    def base_names() -> set[str]:
        return {backbone.name, str(getattr(backbone.config, "_name_or_path", "") or backbone.name)}

    def model_names() -> list[str]:
        return [backbone.name] + [n for n in store.names() if n != backbone.name]

    def card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": started,
                "owned_by": "softprompt" if name == backbone.name else f"softprompt:{backbone.name}"}

    @router.get("/v1/models", response_model=ModelList, responses={k: ERRORS[k] for k in (401, 403)})
    async def list_models() -> dict[str, Any]:
        await asyncio.to_thread(store.rescan, False)
        return {"object": "list", "data": [card(n) for n in model_names()]}

    @router.get("/v1/models/{model:path}", response_model=ModelCard, responses={k: ERRORS[k] for k in (401, 403, 404)})
    async def get_model(model: str) -> dict[str, Any]:
        if model not in base_names() and model not in store:
            store.rescan(False, want=model)
            if model not in store:
                raise unknown_model(model)
        return card(backbone.name if model in base_names() else model)

    def unknown_model(name: str) -> Refused:
        names = model_names()
        shown = ", ".join(names[:20]) + (f" (and {len(names) - 20} more)" if len(names) > 20 else "")
        return Refused(404, f"The model {name!r} does not exist; available: {shown}", param="model",
                       code="model_not_found")

    def check_common(req: Sampling) -> None:
        if service is None:
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
        if req.max_tokens is not None and req.max_tokens > settings.max_tokens_limit:
            raise Refused(400, f"max_tokens={req.max_tokens} is over this server's limit of {settings.max_tokens_limit} "
                               "(--max-tokens-limit)", param="max_tokens")

    async def resolve(name: str):
        """(adapter name for metrics, acquired entry or None for the base)."""
        if name in base_names():
            return backbone.name, None
        entry = store.resident(name)
        try:
            entry = store.acquire(name) if entry is not None else await asyncio.to_thread(store.acquire, name)
        except AdapterError as err:
            raise Refused(500, str(err), "server_error", param="model", code="adapter_unavailable") from None
        if entry is None:
            raise unknown_model(name)
        return name, entry

    def params_of(req: Sampling, max_tokens: int) -> SamplingParams:
        temperature = 0.0 if req.temperature < GREEDY_BELOW else req.temperature
        return SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=req.top_p, seed=req.seed,
                              stop=stop_list(req.stop))

    async def start(req: Sampling, ids: list[int], max_tokens: int | None):
        """Submit; max_tokens None: what the context leaves (at most --max-tokens-limit)."""
        adapter, entry = await resolve(req.model)
        if max_tokens is None:
            producer = getattr(getattr(entry, "model", None), "producer", None)
            room = (service.engine.max_context or settings.max_tokens_limit) - len(ids) \
                - (producer.num_tokens if producer is not None else 0)
            max_tokens = max(min(settings.max_tokens_limit, room), 1)
        return service.submit(adapter, entry, ids, params_of(req, max_tokens), ignore_eos=req.ignore_eos)

    def usage(f: Finish) -> dict[str, int]:
        return {"prompt_tokens": f.prompt_tokens, "completion_tokens": f.completion_tokens,
                "total_tokens": f.prompt_tokens + f.completion_tokens}

    def failed(run, f: Finish) -> Refused:
        return Refused(500, f"generation with model {run.adapter!r} failed: {f.error or f.reason}", "server_error",
                       code="generation_failed")

    # -- completions --------------------------------------------------------------------------------
    @router.post("/v1/completions", response_model=CompletionResponse,
                 responses={200: STREAM_DOC, **{k: v for k, v in ERRORS.items()}})
    async def completions(req: CompletionRequest, request: Request):
        check_common(req)
        if req.logprobs is not None:
            raise Refused(400, "logprobs is not supported", param="logprobs")
        if req.echo:
            raise Refused(400, "echo is not supported", param="echo")
        if req.best_of not in (None, 1):
            raise Refused(400, f"best_of={req.best_of}: only 1 is supported", param="best_of")
        if req.suffix is not None:
            raise Refused(400, "suffix is not supported", param="suffix")
        ids = prompt_ids(req.prompt)
        run = await start(req, ids, req.max_tokens or 16)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def body(text: str, reason: str | None) -> dict[str, Any]:
            return {"id": rid, "object": "text_completion", "created": created, "model": req.model,
                    "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}]}

        if not req.stream:
            return await answer(run, lambda f: {**body(f.text, f.reason), "usage": usage(f)})
        return await stream_out(run, req, lambda piece: body(piece, None), lambda f: body("", f.reason),
                                lambda f: {**body("", None), "choices": [], "usage": usage(f)})

    def prompt_ids(prompt) -> list[int]:
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
        ids = list(tokenizer(prompt)["input_ids"])
        if not ids:
            raise Refused(400, "the prompt has no tokens", param="prompt")
        return ids

    # -- chat ---------------------------------------------------------------------------------------
    @router.post("/v1/chat/completions", response_model=ChatResponse,
                 responses={200: STREAM_DOC, **{k: v for k, v in ERRORS.items()}})
    async def chat(req: ChatRequest, request: Request):
        check_common(req)
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
        if limit is not None and limit > settings.max_tokens_limit:
            raise Refused(400, f"max_completion_tokens={limit} is over this server's limit of "
                               f"{settings.max_tokens_limit} (--max-tokens-limit)", param="max_completion_tokens")
        ids = render_chat(req.messages)
        run = await start(req, ids, limit)  # no limit: OpenAI's "up to the context"
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
            return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}

        if not req.stream:
            return await answer(run, lambda f: {
                "id": rid, "object": "chat.completion", "created": created, "model": req.model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": f.text}, "logprobs": None,
                             "finish_reason": f.reason}],
                "usage": usage(f)})
        return await stream_out(run, req, lambda piece: chunk({"content": piece}, None), lambda f: chunk({}, f.reason),
                                lambda f: {**chunk({}, None), "choices": [], "usage": usage(f)},
                                opening=chunk({"role": "assistant", "content": ""}, None))

    def render_chat(messages: list[ChatMessage]) -> list[int]:
        if not getattr(tokenizer, "chat_template", None):
            raise Refused(400, f"the base model {backbone.name!r} has no chat template (its tokenizer defines none); "
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
            text = tokenizer.apply_chat_template(plain, add_generation_prompt=True, tokenize=False)
        except Exception as err:  # the template refused the conversation (e.g. roles out of order)
            raise Refused(400, f"the chat template could not render these messages: {type(err).__name__}: {err}",
                          param="messages") from None
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if not ids:
            raise Refused(400, "the rendered conversation has no tokens", param="messages")
        return ids

    # -- answering ----------------------------------------------------------------------------------
    async def answer(run, build) -> JSONResponse:
        try:
            f = await run.collect()
        finally:
            run.close()  # a client gone while waiting: the handler is cancelled, the request too
        if f.reason not in ("stop", "length"):
            raise failed(run, f)
        return JSONResponse(build(f))

    async def stream_out(run, req: Sampling, piece_body, final_body, usage_body, opening=None):
        try:
            first = await run.first()  # a request that fails at once is a plain 500, not a broken stream
        except BaseException:
            run.close()
            raise
        if isinstance(first, Finish) and first.reason not in ("stop", "length"):
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
                if f.reason in ("stop", "length"):
                    yield {"data": json.dumps(final_body(f))}
                    if include_usage:
                        yield {"data": json.dumps(usage_body(f))}
                else:  # failed mid-stream: OpenAI's way, an error object in the stream
                    err = failed(run, f)
                    yield {"data": json.dumps(error_body(err.message, err.type, None, err.code))}
                yield {"data": "[DONE]"}
            finally:
                run.close()

        return EventSourceResponse(events(), sep="\n", ping=15, shutdown_grace_period=settings.graceful_timeout,
                                   headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def stop_list(stop) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)
