"""Decoding sessions for a SoftPromptModel: the prompt goes in once per request, then one token per step.

`DecoderSession`: the layer loop's prefill fills a key/value cache (prompts at any site, prefix
key/values included); each step runs the new tokens only (`runners.loop.decode_step`).
`EncoderDecoderSession` (T5): the prompted encoder runs once through the layer loop; the
decoder steps with its own self- and cross-attention cache.
"""

from __future__ import annotations

import torch


class DecoderSession:
    def __init__(self, model):
        self.model = model
        self.cache = None

    def prefill(self, input_ids, attention_mask) -> torch.Tensor:
        logits, self.cache = self.model.prefill(input_ids, attention_mask)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.cache, tokens[:, None])[:, -1]

    def select(self, index: torch.Tensor) -> None:
        self.cache.select(index)


class EncoderDecoderSession:
    def __init__(self, model):
        self.model = model
        self.encoded = self.encoder_mask = self.cache = None

    def prefill(self, input_ids, attention_mask) -> torch.Tensor:
        from transformers import DynamicCache, EncoderDecoderCache

        self.encoded, self.encoder_mask, prefixed = self.model.encode(input_ids, attention_mask)
        self.cache = prefixed or EncoderDecoderCache(DynamicCache(), DynamicCache())
        start = self.model.backbone.model.config.decoder_start_token_id
        return self._next(torch.full((input_ids.shape[0], 1), start, dtype=torch.long, device=input_ids.device))

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._next(tokens[:, None])

    def select(self, index: torch.Tensor) -> None:
        self.encoded, self.encoder_mask = self.encoded[index], self.encoder_mask[index]
        self.cache.reorder_cache(index)

    def _next(self, decoder_ids: torch.Tensor) -> torch.Tensor:
        logits = self.model.decoder_logits(self.encoded, self.encoder_mask, decoder_ids, past_key_values=self.cache)
        return logits[:, -1]


def session_for(model):
    kind = model.runner.kind
    if kind == "decoder":
        return DecoderSession(model)
    if kind == "encoder-decoder":
        return EncoderDecoderSession(model)
    raise ValueError(f"generate() needs a decoder or an encoder-decoder backbone, not an {kind}")
