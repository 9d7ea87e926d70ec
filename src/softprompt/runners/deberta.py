"""Runner for DeBERTa-v2/v3: disentangled attention over relative positions, a boolean mask format.

Its quirks, each handled once here:
- the mask: layers take a boolean (B, 1, L, L) "may attend" mask, not an additive one, and the
  embeddings zero padded positions (`mask=`);
- relative positions: bucketed query - key distances, shared by all layers with `rel_embeddings`;
- the optional convolution after layer 0 (`encoder.conv`, DeBERTa-v2-xlarge);
- key/value prefixes: its attention takes no cache, so `_attend` below transcribes
  DisentangledSelfAttention with the prefix concatenated. A prefix of P keys sits at positions
  0..P-1 and the text after it (as the cache path of HF decoders places a prefix): prefix key j
  gets the relative position (query position - j) in both the content-to-position and the
  position-to-content terms, so text-to-text terms are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from softprompt.runners.anatomy import first_output, parameters_of, text_config
from softprompt.runners.base import LayerContext, PrefixCache, Runner
from softprompt.runners.sequence import Sequence


class DebertaV2Runner(Runner):
    family = "deberta-v2"
    peft_prefix_obstacle = "HF's DeBERTa attention takes no key/value cache"

    @classmethod
    def unfit(cls, model: nn.Module) -> str | None:
        emb, enc = getattr(model, "embeddings", None), getattr(model, "encoder", None)
        if not isinstance(getattr(emb, "word_embeddings", None), nn.Embedding):
            return "no embeddings.word_embeddings"
        layers = getattr(enc, "layer", None)
        if not isinstance(layers, nn.ModuleList) or "rel_embeddings" not in parameters_of(layers[0]):
            return "no encoder.layer stack taking rel_embeddings (DeBERTa style)"
        attention = getattr(getattr(layers[0], "attention", None), "self", None)
        if not all(hasattr(attention, name) for name in ("query_proj", "key_proj", "value_proj")):
            return "no query_proj/key_proj/value_proj in its attention (DeBERTa-v2 style)"
        return None

    @classmethod
    def max_positions(cls, config) -> int | None:
        return config.max_position_embeddings if getattr(config, "position_biased_input", True) else None

    def __init__(self, model: nn.Module):
        super().__init__(model)
        self.word_embeddings = model.embeddings.word_embeddings
        self.layers = model.encoder.layer
        self.num_heads = model.config.num_attention_heads
        self._hidden = text_config(model).hidden_size

    @property
    def hidden_size(self) -> int:
        return self._hidden  # `embeddings.embed_proj` maps a narrower embedding up inside the embeddings

    def embedding_modules(self):
        return [self.model.embeddings]

    def embed(self, seq: Sequence) -> torch.Tensor:
        types = seq.token_type_ids if seq.token_type_ids is not None else torch.zeros_like(seq.mask, dtype=torch.long)
        return self.model.embeddings(inputs_embeds=seq.hidden, position_ids=seq.positions, token_type_ids=types,
                                     mask=seq.mask.long())

    def context(self, seq: Sequence, prefix_len: int) -> LayerContext:
        ctx = super().context(seq, prefix_len)
        enc, hidden = self.model.encoder, seq.hidden
        ctx.extras["mask"] = seq.mask.long()  # for the convolution after layer 0
        ctx.extras["rel_embeddings"] = enc.get_rel_embedding()
        if not enc.relative_attention:
            ctx.extras["relative_pos"] = None
        elif prefix_len:  # per row: query positions against [prefix 0..P-1 | text positions]
            pos = seq.positions
            pre = torch.arange(prefix_len, device=pos.device).expand(pos.shape[0], -1)
            ctx.extras["relative_pos"] = self._bucket(pos[:, :, None] - torch.cat([pre, pos], 1)[:, None, :])
        else:  # as HF: by index, the same for every row (distances between real tokens are the same)
            ctx.extras["relative_pos"] = enc.get_rel_pos(hidden).expand(hidden.shape[0], -1, -1)
        return ctx

    def _bucket(self, rel: torch.Tensor) -> torch.Tensor:
        from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

        enc = self.model.encoder
        if enc.position_buckets > 0 and enc.max_relative_positions > 0:
            rel = make_log_bucket_position(rel, enc.position_buckets, enc.max_relative_positions)
        return rel.long()

    def layer(self, i, hidden, ctx: LayerContext, cache: PrefixCache | None):
        block, extras = self.layers[i], ctx.extras
        allowed = ctx.masks["default"] == 0  # DeBERTa's format: True where a query may attend
        if cache is None:
            rel = extras["relative_pos"]  # HF's layers take one (1, L, L) table for all rows
            out = first_output(block(hidden, allowed, relative_pos=None if rel is None else rel[:1],
                                     rel_embeddings=extras["rel_embeddings"]))
        else:
            attn = block.attention
            attended = attn.output(self._attend(attn.self, hidden, allowed, extras, cache, i), hidden)
            out = block.output(block.intermediate(attended), attended)
        conv = self.model.encoder.conv
        return conv(hidden, out, extras["mask"]) if i == 0 and conv is not None else out

    @staticmethod
    def _attend(sa, hidden, allowed, extras, cache: PrefixCache, i: int) -> torch.Tensor:
        """DisentangledSelfAttention with the layer's key/value prefix in front of its keys."""
        bsz, length, _ = hidden.shape
        heads = sa.num_attention_heads

        def split(x):  # (B, n, H*hd) -> (B, H, n, hd)
            return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)

        q, k, v = split(sa.query_proj(hidden)), split(sa.key_proj(hidden)), split(sa.value_proj(hidden))
        k, v = cache.update(k, v, i)
        kinds = sa.pos_att_type if sa.relative_attention else []
        scale = (q.shape[-1] * (1 + len({"c2p", "p2c"} & set(sa.pos_att_type)))) ** 0.5
        scores = q @ k.transpose(-1, -2) / scale
        if kinds:
            span = sa.pos_ebd_size
            rel = sa.pos_dropout(extras["rel_embeddings"])[: span * 2][None]
            index = (extras["relative_pos"] + span).clamp(0, span * 2 - 1)[:, None].expand(bsz, heads, -1, -1)
            if "c2p" in kinds:  # query content to key position
                pos_k = split(sa.key_proj(rel) if sa.share_att_key else sa.pos_key_proj(rel))
                scores = scores + (q @ pos_k.transpose(-1, -2)).gather(-1, index) / scale
            if "p2c" in kinds:  # key content to query position, at the same relative index
                pos_q = split(sa.query_proj(rel) if sa.share_att_key else sa.pos_query_proj(rel))
                by_key = k @ pos_q.transpose(-1, -2)  # (B, H, keys, 2 span)
                scores = scores + by_key.gather(-1, index.transpose(-1, -2)).transpose(-1, -2) / scale
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = sa.dropout(torch.softmax(scores, dim=-1))
        return (probs @ v).transpose(1, 2).reshape(bsz, length, -1)
