"""Lanes: requests that decode together, and the key/value cache they share.

A lane has `logits` (B, V) for each row's next token and four operations: `step(tokens)` feeds
one token per row, `keep(index)` keeps rows (finished requests leave; beams follow parents; rows
may repeat), `join(other)` takes in newcomers prefilled apart, and the class method that prefills.
`DecoderLane`: the layer loop's cache; a step is `decode_step`.
`EncoderDecoderLane` (T5, BART): the prompted encoder runs once; the decoder steps with Hugging
Face's self-/cross-attention cache, rows right-aligned and padding masked, so requests of
different ages and decoder prefixes share each step.
A prefill runs every newcomer's prompt (any adapter, any site) in one pass of the layer loop.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from softprompt.runners.kv_cache import KVCache
from softprompt.runners.loop import PromptGroup, decode_step, right_aligned, run_layers, start_sequence
from softprompt.runners.sequence import last_real_index, pad_rows


class Lane(Protocol):
    logits: torch.Tensor
    requests: list

    def step(self, tokens: torch.Tensor) -> None: ...

    def keep(self, index: torch.Tensor) -> None: ...

    def join(self, other: "Lane") -> None: ...


def open_lane(runner, tokenizer, requests, hf_model) -> Lane:
    """Prefill `requests` (each with `.model` and `.prompt`) into a lane of the base's kind."""
    side = "right" if runner.kind == "encoder-decoder" else "left"
    device = runner.word_embeddings.weight.device
    ids, mask, _ = pad_rows([r.prompt for r in requests], tokenizer.pad_token_id or 0, side)
    ids, mask = ids.to(device), mask.to(device)
    groups = prompt_groups([r.model for r in requests], ids.device)
    if runner.kind == "encoder-decoder":
        return EncoderDecoderLane.prefill(runner, hf_model, ids, mask, groups, requests)
    if runner.kind == "decoder":
        return DecoderLane.prefill(runner, ids, mask, groups, requests)
    raise ValueError(f"generation needs a decoder or an encoder-decoder base, not an {runner.kind}")


def prompt_groups(models: list, device) -> list[PromptGroup]:
    """One group per distinct model (None: the base with no prompt), with its rows."""
    rows: dict = {}
    for r, m in enumerate(models):
        rows.setdefault(id(m), (m, []))[1].append(r)
    groups = [PromptGroup(m.producer if m else None, m.site if m else None, torch.tensor(rs, device=device))
              for m, rs in rows.values()]
    if len(groups) == 1:
        groups[0].rows = None
    return groups


class DecoderLane:
    def __init__(self, runner, cache: KVCache, logits, requests):
        self.runner, self.cache, self.logits, self.requests = runner, cache, logits, list(requests)

    @classmethod
    def prefill(cls, runner, ids, mask, groups, requests) -> "DecoderLane":
        cache = KVCache()
        seq, tok = start_sequence(runner, groups, ids, mask)
        seq = run_layers(runner, groups, seq, tok, -1, runner.num_layers, kv_cache=cache)
        hidden = runner.finish(seq.hidden)
        last = hidden[torch.arange(ids.shape[0], device=ids.device), last_real_index(seq.text_mask)]
        return cls(runner, cache, runner.lm_head()(last), requests)

    def feed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, n, V) of tokens (B, n) appended to every row; `logits` becomes the last column's."""
        out = self.runner.lm_head()(decode_step(self.runner, self.cache, tokens))
        self.logits = out[:, -1]
        return out

    def step(self, tokens: torch.Tensor) -> None:
        self.feed(tokens[:, None])

    def keep(self, index: torch.Tensor) -> None:
        self.cache.select(index)
        self.cache.trim()
        self.logits = self.logits[index]
        self.requests = [self.requests[int(i)] for i in index]

    def join(self, other: "DecoderLane") -> None:
        self.cache = KVCache.concat([self.cache, other.cache])
        self.logits = torch.cat([self.logits, other.logits])
        self.requests += other.requests


class EncoderDecoderLane:
    def __init__(self, model, encoded, encoder_mask, cache, decoder_mask, requests):
        self.model, self.encoded, self.encoder_mask = model, encoded, encoder_mask
        self.cache, self.decoder_mask, self.requests = cache, decoder_mask, list(requests)
        self.logits: torch.Tensor | None = None

    @classmethod
    def prefill(cls, runner, hf_model, ids, mask, groups, requests) -> "EncoderDecoderLane":
        from transformers import DynamicCache, EncoderDecoderCache

        seq, tok = start_sequence(runner, groups, ids, mask)
        seq = run_layers(runner, groups, seq, tok, -1, runner.num_layers)
        n, device = ids.shape[0], ids.device
        own = DynamicCache()
        prefix_mask = torch.zeros(n, 0, dtype=torch.long, device=device)
        blocks = seq.decoder_prefixes or []
        for layer in range(runner.decoder_layers if blocks else 0):  # decoder prefixes, right-aligned
            keys, values, prefix_mask = right_aligned([(rows, *p[layer]) for rows, p in blocks], n)
            own.update(keys, values, layer)
        lane = cls(hf_model, runner.finish(seq.hidden), seq.mask.long(), EncoderDecoderCache(own, DynamicCache()),
                   prefix_mask, requests)
        lane.step(torch.full((n,), hf_model.config.decoder_start_token_id, dtype=torch.long, device=device))
        return lane

    def step(self, tokens: torch.Tensor) -> None:
        from transformers.modeling_outputs import BaseModelOutput

        self.decoder_mask = torch.cat([self.decoder_mask, torch.ones_like(tokens)[:, None]], 1)
        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=self.encoded),
                         attention_mask=self.encoder_mask, decoder_input_ids=tokens[:, None],
                         decoder_attention_mask=self.decoder_mask, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.logits = out.logits[:, -1]

    def keep(self, index: torch.Tensor) -> None:
        self.encoded, self.encoder_mask = self.encoded[index], self.encoder_mask[index]
        self.decoder_mask, self.logits = self.decoder_mask[index], self.logits[index]
        self.cache.reorder_cache(index)
        self.requests = [self.requests[int(i)] for i in index]

    def join(self, other: "EncoderDecoderLane") -> None:
        from transformers import DynamicCache, EncoderDecoderCache

        length = max(self.encoded.shape[1], other.encoded.shape[1])
        width = max(self.decoder_mask.shape[1], other.decoder_mask.shape[1])
        self.encoded = torch.cat([_pad(self.encoded, length, 1), _pad(other.encoded, length, 1)])
        self.encoder_mask = torch.cat([_pad(self.encoder_mask, length, 1), _pad(other.encoder_mask, length, 1)])
        self.decoder_mask = torch.cat([_pad(self.decoder_mask, width, 1, left=True),
                                       _pad(other.decoder_mask, width, 1, left=True)])
        own, cross = DynamicCache(), DynamicCache()
        mine, theirs = self.cache, other.cache
        for i, (a, b) in enumerate(zip(mine.self_attention_cache.layers, theirs.self_attention_cache.layers)):
            own.update(torch.cat([_pad(a.keys, width, 2, left=True), _pad(b.keys, width, 2, left=True)]),
                       torch.cat([_pad(a.values, width, 2, left=True), _pad(b.values, width, 2, left=True)]), i)
        for i, (a, b) in enumerate(zip(mine.cross_attention_cache.layers, theirs.cross_attention_cache.layers)):
            cross.update(torch.cat([_pad(a.keys, length, 2), _pad(b.keys, length, 2)]),
                         torch.cat([_pad(a.values, length, 2), _pad(b.values, length, 2)]), i)
        self.cache = EncoderDecoderCache(own, cross)
        self.logits = torch.cat([self.logits, other.logits])
        self.requests += other.requests


def _pad(x: torch.Tensor, n: int, dim: int, left: bool = False) -> torch.Tensor:
    """Zero-pad `x` along `dim` to length n (on the right, or the left)."""
    missing = n - x.shape[dim]
    pad = (0, 0) * (x.dim() - dim - 1) + ((missing, 0) if left else (0, missing))
    return F.pad(x, pad)
