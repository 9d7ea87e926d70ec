"""Continuous batching of generation across adapters: one frozen base, many soft prompts, one decode batch.

Requests for any adapter (or none) join the running decode batch at step boundaries: each is
prefilled once (its prompt and prefix key/values go into its rows of the key/value cache),
then every step feeds one token per running request through ONE pass of the base
(`runners.loop.decode_step`). A finished or cancelled request leaves without stalling others.
Each request samples with its own settings (temperature, top_p, seed, stop, max_tokens).

    engine = GenerationEngine(backbone, max_batch=32).start()
    stream = engine.submit(model_or_None, prompt_ids, SamplingParams(max_tokens=64))
    for event in stream:            # Token(...), then one Finish(...)
        ...
    engine.stop()
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from softprompt.errors import SoftPromptError
from softprompt.serve.errors import QueueFull
from softprompt.serve.lanes import DecoderLane, EncoderDecoderLane


class ContextTooLong(SoftPromptError, ValueError):
    """The prompt plus max_tokens exceeds what the base can attend to (HTTP 400 naming the limit)."""


class EngineStopped(SoftPromptError):
    """The engine is shutting down and takes no new requests (HTTP 503)."""


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class Token:
    id: int
    text: str  # the text this token adds (may be "" while a multi-byte character is incomplete)


@dataclass
class Finish:
    reason: str  # "stop" (eos or a stop string), "length", "cancelled" or "error"
    prompt_tokens: int
    completion_tokens: int
    text: str  # the whole completion (stop string cut)
    ttft_s: float | None = None  # time to first token
    itl_s: list[float] = field(default_factory=list)  # inter-token latencies
    error: str | None = None


class Stream:
    """The events of one request, in order; iterate from any thread, or `await stream.next_event()`."""

    def __init__(self):
        self._events: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()
        self.submitted = time.monotonic()

    def __iter__(self):
        while True:
            event = self._events.get()
            yield event
            if isinstance(event, Finish):
                return

    async def next_event(self):
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self._events.get)

    def cancel(self) -> None:
        """The client went away: the request leaves the batch at the next step and frees its slot."""
        self.cancelled.set()

    def _put(self, event) -> None:
        self._events.put(event)


@dataclass
class _Request:
    model: object  # SoftPromptModel, or None: the base with no prompt
    prompt: list[int]
    params: SamplingParams
    stream: Stream
    ignore_eos: bool = False
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    generator: object = None
    last_token_at: float | None = None
    itl: list[float] = field(default_factory=list)
    ttft: float | None = None
    prefix_offset: int = 0  # incremental detokenization: tokens[prefix_offset:read_offset] decode to text's tail
    read_offset: int = 0


class GenerationEngine:
    """One decode batch across adapters on a decoder base (see the module docstring).

    `per_adapter=True` is the baseline that servers without mixed batches use: each step runs
    one forward per adapter with running requests (same sampling, same results).
    """

    def __init__(self, backbone, max_batch: int = 32, max_queue: int = 256, per_adapter: bool = False,
                 max_context: int | None = None):
        from softprompt.runners import runner_class, runner_for

        if backbone.kind == "encoder":
            raise ValueError(f"generation needs a decoder or an encoder-decoder base, not an encoder ({backbone.name})")
        self.backbone = backbone
        self.tokenizer = backbone.tokenizer
        self.runner = runner_for(backbone.model, backbone.kind)
        self.max_batch, self.max_queue, self.per_adapter = max_batch, max_queue, per_adapter
        self.max_context = max_context or runner_class(backbone.model, backbone.kind).max_positions(backbone.model.config)
        self._pending: queue.Queue = queue.Queue()
        self._lanes: dict = {}  # key -> lane (one lane = one key/value cache); mixed: a single lane
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.steps = 0
        self._running = 0

    # -- public ------------------------------------------------------------------------------------
    def start(self) -> "GenerationEngine":
        self._thread = threading.Thread(target=self._loop, name="softprompt-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Take no new requests; with `drain`, running ones finish first (else they end 'cancelled')."""
        self._stopping = True
        if not drain:
            for lane in self._lanes.values():
                for req in lane.requests:
                    req.stream.cancel()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> int:
        """Requests in the decode batch (kept by the engine thread; safe to read from any thread)."""
        return self._running

    @property
    def waiting(self) -> int:
        return self._pending.qsize()

    def submit(self, model, prompt_ids: list[int], params: SamplingParams, ignore_eos: bool = False) -> Stream:
        if self._stopping:
            raise EngineStopped("the server is shutting down")
        if self._pending.qsize() >= self.max_queue:
            raise QueueFull(f"{self._pending.qsize()} requests are waiting (max_queue {self.max_queue})")
        if not prompt_ids:
            raise ValueError("the prompt has no tokens")
        need = len(prompt_ids) + params.max_tokens + _prompt_positions(model)
        if self.max_context is not None and need > self.max_context:
            raise ContextTooLong(f"prompt ({len(prompt_ids)} tokens) + max_tokens ({params.max_tokens}) + soft prompt "
                                 f"({_prompt_positions(model)}) = {need} exceeds the base's context of "
                                 f"{self.max_context} positions")
        req = _Request(model, list(prompt_ids), params, Stream(), ignore_eos)
        req.generator = torch.Generator().manual_seed(params.seed if params.seed is not None else
                                                      int(torch.randint(0, 2**62, (1,))))
        self._pending.put(req)
        self._wake.set()
        return req.stream

    # -- the loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                self._admit()
                if not self._lanes:
                    if self._stopping and self._pending.empty():
                        return
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                for key in list(self._lanes):
                    try:
                        self._advance(key)
                    except Exception as err:  # a failing step fails only that lane's requests
                        for req in self._lanes.pop(key).requests:
                            self._finish(req, "error", error=f"{type(err).__name__}: {err}")
                self._running = sum(len(lane.requests) for lane in self._lanes.values())
                self.steps += 1

    def _admit(self) -> None:
        room = self.max_batch - sum(len(lane.requests) for lane in self._lanes.values())
        fresh: list[_Request] = []
        while room > 0 and not self._pending.empty():
            req = self._pending.get()
            if req.stream.cancelled.is_set():
                self._finish(req, "cancelled")
                continue
            fresh.append(req)
            room -= 1
        if not fresh:
            return
        by_lane: dict = {}
        for req in fresh:
            by_lane.setdefault(self._lane_key(req), []).append(req)
        for key, reqs in by_lane.items():
            for new in self._prefilled(reqs):
                lane = self._lanes.get(key)
                if lane is None:
                    self._lanes[key] = new
                else:
                    lane.join(new)

    def _prefilled(self, reqs: list[_Request]) -> list:
        """Lanes for newcomers: one mixed prefill; if it fails, one per adapter, so an adapter that
        fails fails only its own requests."""
        try:
            return [self._prefill(reqs)]
        except Exception as err:
            if len({id(r.model) for r in reqs}) == 1:
                for req in reqs:
                    self._finish(req, "error", error=f"{type(err).__name__}: {err}")
                return []
        by_model: dict = {}
        for req in reqs:
            by_model.setdefault(id(req.model), []).append(req)
        return [batch for group in by_model.values() for batch in self._prefilled(group)]

    def _lane_key(self, req: _Request):
        return id(req.model) if self.per_adapter else "mixed"

    def _prefill(self, reqs: list[_Request]):
        if self.backbone.kind == "encoder-decoder":
            return EncoderDecoderLane.prefill(self.runner, self.tokenizer, reqs, self.backbone.model)
        return DecoderLane.prefill(self.runner, self.tokenizer, reqs)

    def _advance(self, key) -> None:
        lane = self._lanes[key]
        nxt = self._sample(lane)
        keep = []
        now = time.monotonic()
        for r, req in enumerate(lane.requests):
            if req.stream.cancelled.is_set():
                self._finish(req, "cancelled")
                continue
            reason = self._emit(req, int(nxt[r]), now)
            if reason:
                self._finish(req, reason)
            else:
                keep.append(r)
        if not keep:
            del self._lanes[key]
            return
        if len(keep) < len(lane.requests):
            index = torch.tensor(keep, device=nxt.device)
            lane.keep(index)
            nxt = nxt[index]
        lane.step(nxt)

    def _sample(self, lane) -> torch.Tensor:
        """Each request's next token with its own settings: greedy at temperature 0, else nucleus sampling."""
        out = lane.logits.argmax(-1)
        for r, req in enumerate(lane.requests):
            p = req.params
            if p.temperature >= 1e-4:  # below that, sampling is greedy (and dividing by it overflows)
                probs = (lane.logits[r].float() / p.temperature).softmax(-1)
                if p.top_p < 1:
                    sorted_p, order = probs.sort(descending=True)
                    sorted_p = sorted_p.masked_fill(sorted_p.cumsum(0) - sorted_p >= p.top_p, 0.0)
                    probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
                if not bool(torch.isfinite(probs).all()):
                    raise ValueError(f"non-finite next-token probabilities (temperature {p.temperature})")
                out[r] = torch.multinomial(probs, 1, generator=req.generator)[0]
        return out

    def _emit(self, req: _Request, token: int, now: float) -> str | None:
        """Record one token; the finish reason if the request is done."""
        eos = self.tokenizer.eos_token_id
        if req.ttft is None:
            req.ttft = now - req.stream.submitted
        elif req.last_token_at is not None:
            req.itl.append(now - req.last_token_at)
        req.last_token_at = now
        if token == eos and not req.ignore_eos:
            return "stop"
        req.tokens.append(token)
        done = len(req.tokens) >= req.params.max_tokens
        delta = self._new_text(req, flush=done)
        text = req.text + delta
        for stop in req.params.stop:  # only where the new text can complete a stop string
            at = text.find(stop, max(0, len(req.text) - len(stop) + 1)) if stop else -1
            if at >= 0:
                cut = text[:at]
                if len(cut) > len(req.text):
                    req.stream._put(Token(token, cut[len(req.text):]))
                req.text = cut
                return "stop"
        req.text += delta
        req.stream._put(Token(token, delta))
        return "length" if done else None

    def _new_text(self, req: _Request, flush: bool) -> str:
        """The text the newest token adds, decoding only a short window (not the whole answer) per step;
        "" while a multi-byte character is incomplete, unless `flush`."""
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        before = decode(req.tokens[req.prefix_offset:req.read_offset])
        now = decode(req.tokens[req.prefix_offset:])
        if len(now) > len(before) and (flush or not now.endswith("\ufffd")):
            req.prefix_offset, req.read_offset = req.read_offset, len(req.tokens)
            return now[len(before):]
        return ""

    def _finish(self, req: _Request, reason: str, error: str | None = None) -> None:
        req.stream._put(Finish(reason, len(req.prompt), len(req.tokens), req.text, req.ttft, req.itl, error))


def _prompt_positions(model) -> int:
    """Positions a soft prompt takes in front of the text (hidden-state prompts and prefixes alike)."""
    return 0 if model is None or model.producer is None else model.producer.num_tokens
