"""A reference lane that reruns the whole sequence at every step (no key/value cache).

It has the decode lanes' interface (`logits`, `step`, `keep`, `requests`), so the decode core
runs on it unchanged; comparing it with `SoftPromptModel.lane` checks the cached path.
Decoders rerun the layer loop on text + generated tokens (input-dependent producers read the
input only); encoder-decoders rerun the decoder on the whole prefix, behind fresh prefixes.
"""

from __future__ import annotations

import torch

from softprompt.runners.sequence import last_real_index


class RecomputedLane:
    def __init__(self, model, input_ids, attention_mask, requests=None):
        self.model, self.ids, self.mask = model, input_ids, attention_mask
        self.requests = list(requests) if requests is not None else [None] * input_ids.shape[0]
        self.seq2seq = model.runner.kind == "encoder-decoder"
        if self.seq2seq:
            start = model.backbone.model.config.decoder_start_token_id
            self.decoded = torch.full((input_ids.shape[0], 1), start, dtype=torch.long, device=input_ids.device)
        else:
            self.source = attention_mask.bool()
        self.logits = self._logits()

    def step(self, tokens: torch.Tensor) -> None:
        if self.seq2seq:
            self.decoded = torch.cat([self.decoded, tokens[:, None]], 1)
        else:
            self.ids, self.mask = append_column(self.ids, self.mask, tokens)
            self.source = torch.cat([self.source, torch.zeros_like(self.source[:, :1])], 1)
        self.logits = self._logits()

    def keep(self, index: torch.Tensor) -> None:
        self.ids, self.mask, self.logits = self.ids[index], self.mask[index], self.logits[index]
        if self.seq2seq:
            self.decoded = self.decoded[index]
        else:
            self.source = self.source[index]
        self.requests = [self.requests[int(i)] for i in index]

    @torch.no_grad()
    def _logits(self) -> torch.Tensor:
        model = self.model
        if self.seq2seq:
            encoded, enc_mask, prefixes = model.encode(self.ids, self.mask)
            return model.decoder_logits(encoded, enc_mask, self.decoded, past_key_values=prefixes)[:, -1]
        hidden, seq = model.from_state(model.frozen_state(self.ids, self.mask), self.ids, source_mask=self.source)
        last = hidden[torch.arange(self.ids.shape[0], device=hidden.device), last_real_index(seq.text_mask)]
        return model.runner.lm_head()(last)


def append_column(ids: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor):
    """One token per row right after its last real token (left or right padding)."""
    ids = torch.cat([ids, torch.zeros_like(ids[:, :1])], 1)
    mask = torch.cat([mask, torch.zeros_like(mask[:, :1])], 1)
    rows, pos = torch.arange(ids.shape[0], device=ids.device), last_real_index(mask.bool()) + 1
    ids[rows, pos] = tokens
    mask[rows, pos] = 1
    return ids, mask
