"""Lanes: running requests that decode together, and the key/value cache they share.

`DecoderLane` (GPT-2, Llama, Gemma-3): one cache of the layer loop; a step is `decode_step`.
`EncoderDecoderLane` (T5): the prompted encoder runs once per request; the decoder steps with
Hugging Face's self-/cross-attention cache, its rows right-aligned and padding masked, so
requests of different ages and different decoder prefixes share each step.
Prefills run every newcomer's prompt (any adapter, any site) in one pass of the layer loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from softprompt.runners.kv_cache import KVCache
from softprompt.runners.loop import PromptGroup, decode_step, run_layers, start_sequence
from softprompt.runners.sequence import last_real_index


def _batch(runner, tokenizer, requests, side: str):
    width = max(len(r.prompt) for r in requests)
    device = runner.word_embeddings.weight.device
    ids = torch.full((len(requests), width), tokenizer.pad_token_id or 0, dtype=torch.long, device=device)
    mask = torch.zeros((len(requests), width), dtype=torch.long, device=device)
    for r, req in enumerate(requests):
        cols = slice(width - len(req.prompt), width) if side == "left" else slice(0, len(req.prompt))
        ids[r, cols] = torch.tensor(req.prompt, device=device)
        mask[r, cols] = 1
    rows: dict = {}
    for r, req in enumerate(requests):
        rows.setdefault(id(req.model), (req.model, []))[1].append(r)
    groups = [PromptGroup(m.producer if m else None, m.site if m else None, torch.tensor(rs, device=device))
              for m, rs in rows.values()]
    if len(groups) == 1:
        groups[0].rows = None
    return ids, mask, groups


class DecoderLane:
    def __init__(self, runner, cache: KVCache, logits, requests):
        self.runner, self.cache, self.logits, self.requests = runner, cache, logits, list(requests)

    @classmethod
    def prefill(cls, runner, tokenizer, requests) -> "DecoderLane":
        ids, mask, groups = _batch(runner, tokenizer, requests, "left")
        cache = KVCache()
        seq, tok = start_sequence(runner, groups, ids, mask)
        seq = run_layers(runner, groups, seq, tok, -1, runner.num_layers, kv_cache=cache)
        hidden = runner.finish(seq.hidden)
        last = hidden[torch.arange(len(requests), device=ids.device), last_real_index(seq.text_mask)]
        return cls(runner, cache, runner.lm_head()(last), requests)

    def join(self, other: "DecoderLane") -> None:
        self.cache = KVCache.concat([self.cache, other.cache])
        self.logits = torch.cat([self.logits, other.logits])
        self.requests += other.requests

    def keep(self, index: torch.Tensor) -> None:
        self.cache.select(index)
        self.cache.trim()
        self.logits = self.logits[index]
        self.requests = [self.requests[int(i)] for i in index]

    def step(self, tokens: torch.Tensor) -> None:
        self.logits = self.runner.lm_head()(decode_step(self.runner, self.cache, tokens[:, None])[:, -1])


class EncoderDecoderLane:
    def __init__(self, model, encoded, encoder_mask, cache, decoder_mask, logits, requests):
        self.model, self.encoded, self.encoder_mask = model, encoded, encoder_mask
        self.cache, self.decoder_mask, self.logits, self.requests = cache, decoder_mask, logits, list(requests)

    @classmethod
    def prefill(cls, runner, tokenizer, requests, hf_model) -> "EncoderDecoderLane":
        from transformers import DynamicCache, EncoderDecoderCache

        ids, mask, groups = _batch(runner, tokenizer, requests, "right")
        seq, tok = start_sequence(runner, groups, ids, mask)
        seq = run_layers(runner, groups, seq, tok, -1, runner.num_layers)
        encoded, encoder_mask = runner.finish(seq.hidden), seq.mask.long()
        n, device = len(requests), ids.device
        own = DynamicCache()
        prefix_mask = torch.zeros(n, 0, dtype=torch.long, device=device)
        blocks = seq.decoder_prefixes or []
        if blocks:  # decoder prefixes, right-aligned in a block as long as the longest
            pmax = max(next(iter(p.values()))[0].shape[2] for _, p in blocks)
            prefix_mask = torch.zeros(n, pmax, dtype=torch.long, device=device)
            for layer in range(runner.decoder_layers):
                k0 = next(iter(blocks[0][1].values()))[0]
                keys = k0.new_zeros(n, k0.shape[1], pmax, k0.shape[3])
                values = keys.clone()
                for rows, prefixes in blocks:
                    k, v = prefixes[layer]
                    rows = slice(None) if rows is None else rows
                    keys[rows, :, pmax - k.shape[2]:] = k
                    values[rows, :, pmax - k.shape[2]:] = v
                    prefix_mask[rows, pmax - k.shape[2]:] = 1
                own.update(keys, values, layer)
        lane = cls(hf_model, encoded, encoder_mask, EncoderDecoderCache(own, DynamicCache()), prefix_mask, None,
                   requests)
        start = hf_model.config.decoder_start_token_id
        lane.step(torch.full((n,), start, dtype=torch.long, device=device))
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
        right = lambda x, n, dim: F.pad(x, (0, 0) * (x.dim() - dim - 1) + (0, n - x.shape[dim]))  # noqa: E731
        left = lambda x, n, dim: F.pad(x, (0, 0) * (x.dim() - dim - 1) + (n - x.shape[dim], 0))  # noqa: E731
        self.encoded = torch.cat([right(self.encoded, length, 1), right(other.encoded, length, 1)])
        self.encoder_mask = torch.cat([right(self.encoder_mask, length, 1), right(other.encoder_mask, length, 1)])
        self.decoder_mask = torch.cat([left(self.decoder_mask, width, 1), left(other.decoder_mask, width, 1)])
        own, cross = DynamicCache(), DynamicCache()
        for i, (a, b) in enumerate(zip(self.cache.self_attention_cache.layers, other.cache.self_attention_cache.layers)):
            own.update(torch.cat([left(a.keys, width, 2), left(b.keys, width, 2)]),
                       torch.cat([left(a.values, width, 2), left(b.values, width, 2)]), i)
        for i, (a, b) in enumerate(zip(self.cache.cross_attention_cache.layers, other.cache.cross_attention_cache.layers)):
            cross.update(torch.cat([right(a.keys, length, 2), right(b.keys, length, 2)]),
                         torch.cat([right(a.values, length, 2), right(b.values, length, 2)]), i)
        self.cache = EncoderDecoderCache(own, cross)
        self.logits = torch.cat([self.logits, other.logits])
        self.requests += other.requests
