"""Runners for bidirectional encoders: BERT, ELECTRA, RoBERTa, XLM-R (absolute positions) and MPNet (relative bias).

ELECTRA-small's token embeddings are narrower than its hidden states: its own `embeddings_project`
maps the finished embeddings up, so prompts at the input embeddings have the embedding width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from softprompt.runners.anatomy import LayerCall, attr, first_output
from softprompt.runners.base import LayerContext, PrefixCache, Runner
from softprompt.runners.sequence import Sequence


def _bert_parts_missing(model: nn.Module) -> str | None:
    emb = getattr(model, "embeddings", None)
    if not isinstance(getattr(emb, "word_embeddings", None), nn.Embedding):
        return "no embeddings.word_embeddings"
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        return "no encoder.layer stack"
    if getattr(model.encoder, "relative_attention_bias", None) is not None:
        return "a relative attention bias (MPNet style)"
    return LayerCall(layers[0]).missing()  # DeBERTa's layers take relative positions, no cache


def _positions_after_padding(model: nn.Module) -> bool:
    """RoBERTa style: position ids start at padding_idx + 1 (the position table has a padding row)."""
    table = getattr(model.embeddings, "position_embeddings", None)
    return getattr(table, "padding_idx", None) is not None


class BertRunner(Runner):
    """BERT-style encoders: an `embeddings` module (words, positions, token types) and `encoder.layer`."""

    family = "bert"

    @classmethod
    def unfit(cls, model: nn.Module) -> str | None:
        return _bert_parts_missing(model) or ("positions counted from padding_idx (RoBERTa style)"
                                               if _positions_after_padding(model) else None)

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.word_embeddings = model.embeddings.word_embeddings
        self.layers = model.encoder.layer
        self.num_heads = model.config.num_attention_heads
        self.project = attr(model, ("embeddings_project",))  # ELECTRA: embedding width -> hidden width

    @property
    def hidden_size(self) -> int:
        return self.project.out_features if self.project is not None else self.embedding_size

    def position_ids(self, seq: Sequence) -> torch.Tensor:
        return seq.positions

    def embedding_modules(self):
        return [self.model.embeddings]

    def embed(self, seq: Sequence) -> torch.Tensor:
        types = seq.token_type_ids
        if types is None:
            types = torch.zeros_like(seq.mask, dtype=torch.long)
        hidden = self.model.embeddings(inputs_embeds=seq.hidden, position_ids=self.position_ids(seq),
                                       token_type_ids=types)
        return hidden if self.project is None else self.project(hidden)

    def layer(self, i, hidden, ctx: LayerContext, cache: PrefixCache | None):
        return first_output(self.layers[i](hidden, attention_mask=ctx.masks["default"], past_key_values=cache))


class RobertaRunner(BertRunner):
    """RoBERTa counts positions from padding_idx + 1, as its own embeddings do."""

    family = "roberta"

    @classmethod
    def unfit(cls, model: nn.Module) -> str | None:
        return _bert_parts_missing(model) or (None if _positions_after_padding(model)
                                               else "positions not counted from padding_idx")

    @classmethod
    def max_positions(cls, config) -> int | None:
        return config.max_position_embeddings - (config.pad_token_id or 0) - 1  # positions start after padding_idx

    def position_ids(self, seq: Sequence) -> torch.Tensor:
        pad = self.model.embeddings.padding_idx
        return (seq.positions + pad + 1) * seq.mask.long() + pad * (~seq.mask).long()


class MPNetRunner(RobertaRunner):
    """MPNet: RoBERTa-style positions plus a relative position bias shared by all layers.

    MPNet's attention has no cache hook, so key/value prefixes go through `_attend` below,
    a transcription of MPNetSelfAttention with the prefix concatenated.
    """

    family = "mpnet"

    @classmethod
    def unfit(cls, model: nn.Module) -> str | None:
        enc = getattr(model, "encoder", None)
        if not isinstance(getattr(enc, "relative_attention_bias", None), nn.Embedding):
            return "no encoder.relative_attention_bias"
        return None if isinstance(getattr(enc, "layer", None), nn.ModuleList) else "no encoder.layer stack"
    peft_prefix_obstacle = "HF's MPNet attention takes no key/value cache"

    def embed(self, seq: Sequence) -> torch.Tensor:
        return self.model.embeddings(inputs_embeds=seq.hidden, position_ids=self.position_ids(seq))

    def context(self, seq: Sequence, prefix_len: int) -> LayerContext:
        ctx = super().context(seq, prefix_len)
        enc = self.model.encoder
        pos = seq.positions  # starts at prefix_len already (seq.position_offset)
        if prefix_len:
            pre = torch.arange(prefix_len, device=pos.device).expand(pos.shape[0], -1)
            keys = torch.cat([pre, pos], dim=1)
        else:
            keys = pos
        rel = keys[:, None, :] - pos[:, :, None]
        bucket = enc.relative_position_bucket(rel, num_buckets=enc.relative_attention_bias.num_embeddings)
        ctx.extras["bias"] = enc.relative_attention_bias(bucket).permute(0, 3, 1, 2).contiguous()
        return ctx

    def layer(self, i, hidden, ctx: LayerContext, cache: PrefixCache | None):
        block = self.layers[i]
        mask, bias = ctx.masks["default"], ctx.extras["bias"]
        if cache is None:
            return block(hidden, mask, bias)[0]
        attn = block.attention
        attn_out = attn.LayerNorm(attn.dropout(self._attend(attn.attn, hidden, mask, bias, cache, i)) + hidden)
        return block.output(block.intermediate(attn_out), attn_out)

    @staticmethod
    def _attend(sa, hidden, mask, bias, cache: PrefixCache, i: int) -> torch.Tensor:
        bsz, length, _ = hidden.shape
        heads, hd = sa.num_attention_heads, sa.attention_head_size
        q = sa.q(hidden).view(bsz, length, heads, hd).transpose(1, 2)
        k = sa.k(hidden).view(bsz, length, heads, hd).transpose(1, 2)
        v = sa.v(hidden).view(bsz, length, heads, hd).transpose(1, 2)
        k, v = cache.update(k, v, i)
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + bias + mask
        probs = sa.dropout(torch.softmax(scores, dim=-1))
        ctx = (probs @ v).transpose(1, 2).reshape(bsz, length, heads * hd)
        return sa.o(ctx)

