"""One generation request: its settings, the tokens it has produced, and the events it reports.

Finish reasons, for every entry point (offline, `/v1/generate`, the OpenAI API):
"stop" (end-of-sequence or a stop string), "length" (max_tokens reached), "cancelled" (the client
left or the server stopped), "error" (the request failed; `Finish.error` says why).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Literal

from softprompt.decode.text import TextTail, find_stop

FinishReason = Literal["stop", "length", "cancelled", "error"]
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "cancelled", "error")


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0  # below sampler.GREEDY_BELOW (e.g. 0): greedy
    top_p: float = 1.0
    seed: int | None = None  # None: a random seed per request
    stop: list[str] = field(default_factory=list)


@dataclass
class Token:
    id: int
    text: str  # the text this token adds (may be "" while a multi-byte character is incomplete)


@dataclass
class Finish:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    text: str  # the whole completion (stop string cut)
    ttft_s: float | None = None  # time to first token
    itl_s: list[float] = field(default_factory=list)  # inter-token latencies
    error: str | None = None
    at_eos: bool = False  # it ended on the end-of-sequence token (not kept in the tokens)
    token_ids: list[int] = field(default_factory=list)  # the generated tokens (eos not included)


@dataclass
class Request:
    """`model`: a SoftPromptModel, or None (the base with no prompt); `eos`: None never stops early.
    `report` receives each Token and the Finish (the engine's stream); None: keep them here only."""

    model: object
    prompt: list[int]
    params: SamplingParams
    seed: int
    eos: int | None
    tail: TextTail
    report: Callable[[object], None] | None = None
    cancelled: Callable[[], bool] = lambda: False
    submitted: float = field(default_factory=time.monotonic)
    finish: Finish | None = None
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    _last_at: float | None = None

    @property
    def tokens(self) -> list[int]:
        return self.tail.tokens

    def take(self, token: int, now: float) -> FinishReason | None:
        """Record one sampled token; the finish reason if the request is done (it is then finished)."""
        if self.ttft is None:
            self.ttft = now - self.submitted
        elif self._last_at is not None:
            self.itl.append(now - self._last_at)
        self._last_at = now
        if token == self.eos:
            self.end("stop", at_eos=True)
            return "stop"
        done = len(self.tokens) + 1 >= self.params.max_tokens
        before = len(self.tail.text)
        delta = self.tail.add(token, flush=done)
        at = find_stop(self.tail.text, before, self.params.stop) if self.params.stop else -1
        if at >= 0:
            self.tail.text = self.tail.text[:at]
            if at > before:
                self._report(Token(token, self.tail.text[before:]))
            self.end("stop")
            return "stop"
        self._report(Token(token, delta))
        if done:
            self.end("length")
            return "length"
        return None

    def end(self, reason: FinishReason, error: str | None = None, at_eos: bool = False) -> None:
        if self.finish is None:
            self.finish = Finish(reason, len(self.prompt), len(self.tokens), self.tail.text, self.ttft, self.itl,
                                 error, at_eos, list(self.tokens))
            self._report(self.finish)

    def _report(self, event) -> None:
        if self.report is not None:
            self.report(event)
