"""Decoding with soft prompts: greedy, sampling (temperature, top-p, seed) and beam search, stop strings.

A `Session` holds one batch's key/value cache: `prefill` puts the prompt (and any prefix
key/values) in once, `step` feeds one token per row, `select` keeps or reorders rows (a
finished request leaves; beams follow their parents). Decoders use the layer loop's cache
(`SoftPromptModel.prefill` / `decode`); T5 runs its prompted encoder once and steps its decoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from softprompt.errors import ConfigError


@dataclass
class GenerationConfig:
    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    eos_token_id: int | None = None  # None: the tokenizer's

    def __post_init__(self):
        checks = {"max_new_tokens": self.max_new_tokens >= 1, "temperature": self.temperature > 0,
                  "top_p": 0 < self.top_p <= 1, "num_beams": self.num_beams >= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"generation: invalid value for {', '.join(bad)}")
        if self.num_beams > 1 and self.do_sample:
            raise ConfigError("generation: num_beams > 1 is beam search; it does not sample (do_sample: false)")


class Session(Protocol):
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...  # (B, V)

    def step(self, tokens: torch.Tensor) -> torch.Tensor: ...  # (B,) -> (B, V)

    def select(self, index: torch.Tensor) -> None: ...


@dataclass
class Generated:
    tokens: list[list[int]]  # new tokens per row, up to (not including) eos or a stop string
    texts: list[str]
    finish_reasons: list[str]  # "eos" | "stop" | "length"


@torch.no_grad()
def generate(session: Session, input_ids, attention_mask, cfg: GenerationConfig, tokenizer) -> Generated:
    eos = cfg.eos_token_id if cfg.eos_token_id is not None else tokenizer.eos_token_id
    logits = session.prefill(input_ids, attention_mask)
    if cfg.num_beams > 1:
        tokens = _beam_search(session, logits, cfg, eos)
        return _finish(tokens, ["eos" if t and t[-1] == eos else "length" for t in tokens], eos, cfg, tokenizer)
    gen = torch.Generator(device=logits.device)
    gen.manual_seed(cfg.seed if cfg.seed is not None else torch.initial_seed() % 2**63)
    bsz = logits.shape[0]
    out: list[list[int]] = [[] for _ in range(bsz)]
    reasons = ["length"] * bsz
    active = list(range(bsz))  # batch row -> request
    for step in range(cfg.max_new_tokens):
        nxt = _choose(logits, cfg, gen)
        keep = []
        for r, req in enumerate(active):
            tok = int(nxt[r])
            out[req].append(tok)
            if tok == eos:
                reasons[req] = "eos"
            elif cfg.stop and _stopped(tokenizer, out[req], cfg.stop):
                reasons[req] = "stop"
            else:
                keep.append(r)
        if not keep or step == cfg.max_new_tokens - 1:
            break
        if len(keep) < len(active):  # finished requests leave the batch
            index = torch.tensor(keep, device=nxt.device)
            session.select(index)
            nxt, active = nxt[index], [active[r] for r in keep]
        logits = session.step(nxt)
    return _finish(out, reasons, eos, cfg, tokenizer)


def _choose(logits: torch.Tensor, cfg: GenerationConfig, gen: torch.Generator) -> torch.Tensor:
    if not cfg.do_sample:
        return logits.argmax(-1)
    probs = (logits.float() / cfg.temperature).softmax(-1)
    if cfg.top_p < 1:  # nucleus: the smallest set of tokens whose probability reaches top_p
        sorted_p, order = probs.sort(-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p >= cfg.top_p
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def _stopped(tokenizer, tokens: list[int], stops: list[str]) -> bool:
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    return any(s in text for s in stops)


def _finish(tokens, reasons, eos, cfg, tokenizer) -> Generated:
    texts, kept = [], []
    for row, reason in zip(tokens, reasons):
        row = row[:-1] if row and row[-1] == eos else row
        text = tokenizer.decode(row, skip_special_tokens=True)
        for s in cfg.stop:
            if s in text:
                text = text[: text.index(s)]
        texts.append(text)
        kept.append(row)
    return Generated(kept, texts, reasons)


def _beam_search(session: Session, logits: torch.Tensor, cfg: GenerationConfig, eos: int | None) -> list[list[int]]:
    """Beam search with `num_beams` per row; hypotheses scored by sum log p / length ** length_penalty."""
    k = cfg.num_beams
    bsz, vocab = logits.shape
    logp = logits.float().log_softmax(-1)
    scores, first = logp.topk(k, dim=-1)  # (B, k)
    session.select(torch.arange(bsz, device=logits.device).repeat_interleave(k))
    beams = [[[int(first[b, j])] for j in range(k)] for b in range(bsz)]
    done: list[list[tuple[float, list[int]]]] = [[] for _ in range(bsz)]
    live = torch.ones(bsz, k, dtype=torch.bool, device=logits.device)
    for b in range(bsz):
        for j in range(k):
            if beams[b][j][-1] == eos:
                done[b].append((float(scores[b, j]) / 1 ** cfg.length_penalty, beams[b][j]))
                live[b, j] = False
    scores = scores.masked_fill(~live, float("-inf"))
    for _ in range(cfg.max_new_tokens - 1):
        if all(len(d) >= k for d in done) or not bool(live.any()):
            break
        last = torch.tensor([beam[-1] for row in beams for beam in row], device=logits.device)
        logp = session.step(last).float().log_softmax(-1).view(bsz, k, vocab)
        cand = (scores[:, :, None] + logp).view(bsz, k * vocab)
        top_s, top_i = cand.topk(2 * k, dim=-1)
        parents, new_beams, new_scores = [], [], []
        for b in range(bsz):
            row_beams, row_scores, row_parents = [], [], []
            for s, i in zip(top_s[b].tolist(), top_i[b].tolist()):
                if s == float("-inf") or len(row_beams) == k:
                    break
                parent, tok = divmod(i, vocab)
                seq = beams[b][parent] + [tok]
                if tok == eos:
                    if len(done[b]) < k:
                        done[b].append((s / len(seq) ** cfg.length_penalty, seq))
                    continue
                row_beams.append(seq)
                row_scores.append(s)
                row_parents.append(b * k + parent)
            while len(row_beams) < k:  # keep the batch rectangular: dead beams score -inf
                row_beams.append(beams[b][0] + [eos if eos is not None else 0])
                row_scores.append(float("-inf"))
                row_parents.append(b * k)
            new_beams.append(row_beams)
            new_scores.append(row_scores)
            parents.extend(row_parents)
        session.select(torch.tensor(parents, device=logits.device))
        beams, scores = new_beams, torch.tensor(new_scores, device=logits.device)
    results = []
    for b in range(bsz):
        hyps = list(done[b])
        for j in range(k):
            if scores[b, j] != float("-inf"):
                hyps.append((float(scores[b, j]) / len(beams[b][j]) ** cfg.length_penalty, beams[b][j]))
        results.append(max(hyps, key=lambda h: h[0])[1])
    return results
