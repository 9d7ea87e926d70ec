"""The request and response bodies of every endpoint (pydantic; they make the OpenAPI schema).

    classification and generation   ClassifyRequest / ClassifyResponse, GenerateRequest / GenerateResponse
    adapter management              LoadRequest
    OpenAI-compatible               CompletionRequest / CompletionResponse, ChatRequest / ChatResponse,
                                    ModelCard / ModelList, ErrorResponse (and their parts)

Fields OpenAI has but this server does not implement are declared so that setting them to anything
but their neutral value is refused with 400 (the checks are in serve/routes/openai.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

INT64 = 2**63


# -- classification and generation ------------------------------------------------------------------
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
    finish_reason: str = Field(description="'stop' (end-of-sequence) or 'length'")
    truncated: bool = Field(description="the input's start was cut to leave room for the prompt and the answer")


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=4096, description="adapter folder on the server's filesystem")


# -- OpenAI-compatible: requests ------------------------------------------------------------------
class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class Sampling(BaseModel):
    """Fields both endpoints share."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=256, description="adapter name, or the base model's name for no prompt")
    max_tokens: int | None = Field(default=None, ge=1, description="most tokens to generate")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, description="0 (or below 0.0001): greedy")
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
    return_token_ids: bool = Field(default=False, description="extension (as vLLM): the choice carries the "
                                   "generated token ids (`token_ids`); non-streamed requests only")


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


# -- OpenAI-compatible: responses (for the schema) ---------------------------------------------------
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None
    token_ids: list[int] | None = Field(default=None, description="with return_token_ids: the generated tokens")


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
