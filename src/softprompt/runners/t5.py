"""Runner for the encoder of T5-style encoder-decoders: prompts go on the encoder side (key/value sites
also prefix the decoder's self-attention, as Li & Liang do for encoder-decoders)."""

from __future__ import annotations

import torch
from torch import nn

from softprompt.runners.base import LayerContext, PrefixCache, Runner
from softprompt.runners.sequence import Sequence


class T5Runner(Runner):
    family = "t5"
    kind = "encoder-decoder"

    @classmethod
    def unfit(cls, model: nn.Module) -> str | None:
        enc = getattr(model, "encoder", None)
        if not isinstance(getattr(enc, "block", None), nn.ModuleList):
            return "no encoder.block stack (T5 style)"
        if not isinstance(getattr(model, "shared", None), nn.Embedding):
            return "no shared token embeddings"
        return None if getattr(model, "decoder", None) is not None else "no decoder"
    peft_prefix_obstacle = "peft prefixes only T5's decoder; softprompt prefixes its encoder and decoder (Li & Liang)"

    @classmethod
    def max_positions(cls, config) -> int | None:
        return None  # relative position buckets

    def __init__(self, model: nn.Module):
        super().__init__(model)
        enc = model.encoder
        self.word_embeddings = model.shared
        self.layers = enc.block
        self.num_heads = model.config.num_heads

    @property
    def head_dim(self) -> int:
        return self.config.d_kv

    @property
    def decoder_layers(self) -> int:
        return len(self.model.decoder.block)

    def embedding_modules(self):
        return [self.model.encoder.dropout]

    def embed(self, seq: Sequence) -> torch.Tensor:
        return self.model.encoder.dropout(seq.hidden)

    def context(self, seq: Sequence, prefix_len: int) -> LayerContext:
        ctx = super().context(seq, prefix_len)
        length = seq.hidden.shape[1]
        attn = self.layers[0].layer[0].SelfAttention
        if prefix_len and not bool(seq.mask[:, 0].all()):  # left padding: per row, the prefix right before its text
            pos = seq.positions
            keys = torch.cat([torch.arange(prefix_len, device=pos.device).expand(pos.shape[0], -1), pos], 1)
            bucket = attn._relative_position_bucket(keys[:, None, :] - pos[:, :, None], bidirectional=True,
                                                    num_buckets=attn.relative_attention_num_buckets,
                                                    max_distance=attn.relative_attention_max_distance)
            bias = attn.relative_attention_bias(bucket).permute(0, 3, 1, 2)
        else:  # by index, shared by all rows: each row's text starts right after the prefix block
            bias = attn.compute_bias(length, length + prefix_len, device=seq.hidden.device, past_seen_tokens=prefix_len)
        ctx.extras["bias"] = bias.to(self.dtype)
        return ctx

    def layer(self, i, hidden, ctx: LayerContext, cache: PrefixCache | None):
        out = self.layers[i](
            hidden, attention_mask=ctx.masks["default"], position_bias=ctx.extras["bias"], past_key_values=cache
        )
        return out[0]

    def finish(self, hidden):
        enc = self.model.encoder
        return enc.dropout(enc.final_layer_norm(hidden))

    def lm_head(self):
        return self.model.lm_head


