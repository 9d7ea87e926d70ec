"""Runner for the encoder of BART-style encoder-decoders; the decoder is HF's own (`SoftPromptModel.decoder_logits`).

Found by structure: a body (`model.model`) whose encoder has `embed_tokens` (scaled by `embed_scale`
inside the module, so token vectors carry the scale), a learned `embed_positions` table read at
position + its `offset` (2 for BART), `layernorm_embedding`, functional dropout (`encoder.dropout`,
a float) and a `layers` stack whose attention takes `past_key_values`. Key/value sites also prefix
the decoder's self-attention, as for T5 (Li & Liang's encoder-decoder prefixes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from softprompt.runners.anatomy import attr, first_output
from softprompt.runners.base import LayerContext, PrefixCache, Runner
from softprompt.runners.sequence import Sequence


def _encoder(model: nn.Module) -> nn.Module | None:
    body = getattr(model, "model", model)
    enc = getattr(body, "encoder", None)
    return enc if isinstance(enc, nn.Module) else None


class BartRunner(Runner):
    family = "bart"
    kind = "encoder-decoder"
    peft_prefix_obstacle = "peft prefixes only BART's decoder; softprompt prefixes its encoder and decoder (Li & Liang)"

    @classmethod
    def unfit(cls, model: nn.Module) -> str | None:
        enc = _encoder(model)
        if enc is None or not isinstance(getattr(enc, "layers", None), nn.ModuleList):
            return "no encoder.layers stack (BART style)"
        if not isinstance(getattr(enc, "embed_tokens", None), nn.Embedding):
            return "no encoder.embed_tokens"
        if not isinstance(getattr(enc, "embed_positions", None), nn.Embedding):
            return "no learned encoder.embed_positions table"
        if getattr(enc, "embed_scale", 1.0) != 1.0:
            return "its token embeddings are scaled outside embed_tokens (Marian/Pegasus style)"
        decoder = getattr(getattr(model, "model", model), "decoder", None)
        return None if isinstance(getattr(decoder, "layers", None), nn.ModuleList) else "no decoder.layers stack"

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.encoder = enc = _encoder(model)
        self.word_embeddings = enc.embed_tokens
        self.layers = enc.layers
        self.num_heads = model.config.encoder_attention_heads
        self.embed_norm = attr(enc, ("layernorm_embedding",))
        self.final_norm = attr(enc, ("layer_norm",))  # pre-norm variants (mBART) end with one

    @property
    def decoder_layers(self) -> int:
        return len(getattr(self.model, "model", self.model).decoder.layers)

    def embedding_modules(self):
        return [self.encoder]  # its embedding dropout follows the encoder's training flag

    def embed(self, seq: Sequence) -> torch.Tensor:
        table = self.encoder.embed_positions
        positions = F.embedding(seq.positions + getattr(table, "offset", 0), table.weight)
        hidden = seq.hidden + positions.to(seq.hidden.dtype)
        if self.embed_norm is not None:
            hidden = self.embed_norm(hidden)
        return F.dropout(hidden, p=self.encoder.dropout, training=self.encoder.training)

    def layer(self, i, hidden, ctx: LayerContext, cache: PrefixCache | None):
        return first_output(self.layers[i](hidden, attention_mask=ctx.masks["default"], past_key_values=cache))

    def finish(self, hidden):
        return hidden if self.final_norm is None else self.final_norm(hidden)

    def lm_head(self):
        return self.model.lm_head
