"""Continuous batching of generation across adapters: one frozen base, many soft prompts, one decode batch.

Requests for any adapter (or none) join the running decode batch at step boundaries: each is
prefilled once (its prompt and prefix key/values go into its rows of the key/value cache),
then every step feeds one token per running request through ONE pass of the base
(`decode.advance`, the same step offline generation takes). A finished or cancelled request leaves without stalling others.
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

import torch

from softprompt.decode import Finish, Request, SamplingParams, Token, advance, new_request, open_lane
from softprompt.errors import SoftPromptError
from softprompt.serve.errors import QueueFull

__all__ = ["ContextTooLong", "EngineStopped", "Finish", "GenerationEngine", "QueueFull", "SamplingParams", "Stream",
           "Token"]


class ContextTooLong(SoftPromptError, ValueError):
    """The prompt plus max_tokens exceeds what the base can attend to (HTTP 400 naming the limit)."""


class EngineStopped(SoftPromptError):
    """The engine is shutting down and takes no new requests (HTTP 503)."""


class Stream:
    """The events of one request, in order (`decode.Token`s, then one `decode.Finish`); iterate from any thread."""

    def __init__(self):
        self._events: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()

    def __iter__(self):
        while True:
            event = self._events.get()
            yield event
            if isinstance(event, Finish):
                return

    def cancel(self) -> None:
        """The client went away: the request leaves the batch at the next step and frees its slot."""
        self.cancelled.set()

    def put(self, event) -> None:
        self._events.put(event)


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
        self._cancel_all = False  # stop(drain=False): running requests end 'cancelled'
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
            self._cancel_all = True
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
        taken = 0 if model is None else model.positions_taken
        need = len(prompt_ids) + params.max_tokens + taken
        if self.max_context is not None and need > self.max_context:
            raise ContextTooLong(f"prompt ({len(prompt_ids)} tokens) + max_tokens ({params.max_tokens}) + soft prompt "
                                 f"({taken}) = {need} exceeds the base's context of {self.max_context} positions")
        stream = Stream()
        eos = None if ignore_eos else self.tokenizer.eos_token_id
        self._pending.put(new_request(model, prompt_ids, params, self.tokenizer, eos, report=stream.put,
                                      cancelled=lambda: stream.cancelled.is_set() or self._cancel_all))
        self._wake.set()
        return stream

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
                    lane = self._lanes[key]
                    try:
                        advance(lane)
                    except Exception as err:  # a failing step fails only that lane's requests
                        for req in lane.requests:
                            req.end("error", error=f"{type(err).__name__}: {err}")
                        lane.requests = []
                    if not lane.requests:
                        del self._lanes[key]
                self._running = sum(len(lane.requests) for lane in self._lanes.values())
                self.steps += 1

    def _admit(self) -> None:
        room = self.max_batch - sum(len(lane.requests) for lane in self._lanes.values())
        fresh: list[Request] = []
        while room > 0 and not self._pending.empty():
            req = self._pending.get()
            if req.cancelled():
                req.end("cancelled")
                continue
            fresh.append(req)
            room -= 1
        by_lane: dict = {}
        for req in fresh:
            by_lane.setdefault(id(req.model) if self.per_adapter else "mixed", []).append(req)
        for key, reqs in by_lane.items():
            for new in self._prefilled(reqs):
                lane = self._lanes.get(key)
                if lane is None:
                    self._lanes[key] = new
                else:
                    lane.join(new)

    def _prefilled(self, reqs: list[Request]) -> list:
        """Lanes for newcomers: one mixed prefill; if it fails, one per adapter, so an adapter that
        fails fails only its own requests."""
        try:
            return [open_lane(self.runner, self.tokenizer, reqs, self.backbone.model)]
        except Exception as err:
            if len({id(r.model) for r in reqs}) == 1:
                for req in reqs:
                    req.end("error", error=f"{type(err).__name__}: {err}")
                return []
        by_model: dict = {}
        for req in reqs:
            by_model.setdefault(id(req.model), []).append(req)
        return [batch for group in by_model.values() for batch in self._prefilled(group)]
