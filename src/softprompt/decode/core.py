"""The decode step every entry point shares, and offline generation on top of it.

`advance(lane)`: sample every row's next token in one batched pass, let each request take its
token (text, stop strings, finish), drop finished rows, step the rest. The server's engine calls
it between admissions; `generate` calls it until the lane is empty. Same sampler, same stop
checks, same finish reasons: offline and served outputs are equal by construction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from softprompt.decode.beam import beam_search
from softprompt.decode.lanes import Lane
from softprompt.decode.request import Request, SamplingParams
from softprompt.decode.sampler import sample
from softprompt.decode.text import TextTail, cut_at_stop
from softprompt.errors import ConfigError


@dataclass
class GenerationConfig:
    """Offline generation settings (Hugging Face's names); `seed` seeds every row alike."""

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    eos_token_id: int | None = None  # None: the tokenizer's; -1: never stop early

    def __post_init__(self):
        checks = {"max_new_tokens": self.max_new_tokens >= 1, "temperature": self.temperature > 0,
                  "top_p": 0 < self.top_p <= 1, "num_beams": self.num_beams >= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"generation: invalid value for {', '.join(bad)}")
        if self.num_beams > 1 and self.do_sample:
            raise ConfigError("generation: num_beams > 1 is beam search; it does not sample (do_sample: false)")

    def sampling(self) -> SamplingParams:
        return SamplingParams(self.max_new_tokens, self.temperature if self.do_sample else 0.0, self.top_p,
                              self.seed, list(self.stop))


@dataclass
class Generated:
    tokens: list[list[int]]  # new tokens per row, up to (not including) eos or a stop string
    texts: list[str]
    finish_reasons: list[str]  # "stop" | "length" (see decode.request)
    at_eos: list[bool]  # the row ended on the end-of-sequence token


def new_request(model, prompt: list[int], params: SamplingParams, tokenizer, eos: int | None, **hooks) -> Request:
    seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,)))
    return Request(model, list(prompt), params, seed, eos, TextTail(tokenizer), **hooks)


def advance(lane: Lane) -> list[Request]:
    """One decode step for every row of `lane`; returns the requests that finished (they left it)."""
    reqs = lane.requests
    nxt = sample(lane.logits,
                 torch.tensor([r.params.temperature for r in reqs]), torch.tensor([r.params.top_p for r in reqs]),
                 torch.tensor([r.seed for r in reqs]), torch.tensor([len(r.tokens) for r in reqs]))
    now = time.monotonic()
    keep, done = [], []
    for r, (req, token) in enumerate(zip(reqs, nxt.tolist())):
        if req.cancelled():
            req.end("cancelled")
        elif req.take(token, now) is None:
            keep.append(r)
            continue
        done.append(req)
    if not keep:
        lane.requests = []
        return done
    if len(keep) < len(reqs):
        index = torch.tensor(keep, device=nxt.device)
        lane.keep(index)
        nxt = nxt[index]
    lane.step(nxt)
    return done


def generate(open_lane, prompts: list[list[int]], model, cfg: GenerationConfig, tokenizer) -> Generated:
    """Generate for every prompt; `open_lane(requests)` prefills them into a lane."""
    eos = tokenizer.eos_token_id if cfg.eos_token_id is None else cfg.eos_token_id
    eos = None if eos is None or eos < 0 else eos
    params = cfg.sampling()
    requests = [new_request(model, p, params, tokenizer, eos) for p in prompts]
    lane = open_lane(requests)
    if cfg.num_beams > 1:
        rows = beam_search(lane, cfg.num_beams, cfg.max_new_tokens, cfg.length_penalty, eos)
        at_eos = [bool(row) and row[-1] == eos for row in rows]
        rows = [row[:-1] if end else row for row, end in zip(rows, at_eos)]
        texts = [cut_at_stop(tokenizer.decode(row, skip_special_tokens=True), cfg.stop) for row in rows]
        return Generated(rows, texts, ["stop" if end else "length" for end in at_eos], at_eos)
    while lane.requests:
        advance(lane)
    ends = [r.finish for r in requests]
    return Generated([r.tokens for r in requests], [f.text for f in ends], [f.reason for f in ends],
                     [f.at_eos for f in ends])
