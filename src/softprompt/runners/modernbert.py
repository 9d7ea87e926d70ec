"""Runner for ModernBERT-style encoders: rotary positions, global and local (sliding window) layers.

Its quirks, each handled once here:
- embeddings: `embeddings.tok_embeddings`, then the embeddings' own norm and dropout; a final norm;
- layer kinds from `config.layer_types`, each layer's window from its attention (`sliding_window`,
  the "distance < window" form), rotary tables per kind from the body's `rotary_emb`;
- key/value prefixes: its layers take no cache, so `_attend` below transcribes ModernBertAttention
  with the prefix concatenated after the rotary step (prefix keys are not rotated, as in a cache);
  prefix j sits at position j, the text after the prefix, and local layers see a prefix key only
  while it is within the window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from softprompt.runners.anatomy import attr, first_output, layer_count, layer_stack, parameters_of, text_config
from softprompt.runners.base import LayerContext, PrefixCache, Runner
from softprompt.runners.sequence import Sequence, additive_mask


class ModernBertRunner(Runner):
    family = "modernbert"
    peft_prefix_obstacle = "HF's ModernBERT attention takes no key/value cache"

    @classmethod
    def unfit(cls, model: nn.Module) -> str | None:
        if not isinstance(getattr(getattr(model, "embeddings", None), "tok_embeddings", None), nn.Embedding):
            return "no embeddings.tok_embeddings (ModernBERT style)"
        layers = layer_stack(model, layer_count(text_config(model)))
        if layers is None or "position_embeddings" not in parameters_of(layers[0]):
            return "no layer stack taking rotary position_embeddings"
        if not hasattr(getattr(layers[0], "attn", None), "Wqkv"):
            return "no fused Wqkv attention (ModernBERT style)"
        if attr(model, ("final_norm",)) is None:
            return "no final_norm"
        return None if attr(model, ("rotary_emb",)) is not None else "no rotary_emb"

    def __init__(self, model: nn.Module):
        super().__init__(model)
        cfg = text_config(model)
        self.word_embeddings = model.embeddings.tok_embeddings
        self.layers = layer_stack(model, layer_count(cfg))
        self.num_heads = cfg.num_attention_heads
        self.kinds = [block.attention_type for block in self.layers]
        self.windows = {block.attention_type: block.attn.sliding_window for block in self.layers}

    def embedding_modules(self):
        return [self.model.embeddings.drop]

    def embed(self, seq: Sequence) -> torch.Tensor:
        return self.model.embeddings(inputs_embeds=seq.hidden)

    def context(self, seq: Sequence, prefix_len: int) -> LayerContext:
        pos = seq.positions  # key/value prefixes shift them (seq.position_offset)
        masks, rotary = {}, {}
        for kind, window in self.windows.items():
            masks[kind] = additive_mask(seq.mask, self.dtype, False, prefix_len, window=window, positions=pos)
            rotary[kind] = self.model.rotary_emb(seq.hidden, pos, kind)
        return LayerContext(masks, {"rotary": rotary})

    def layer(self, i, hidden, ctx: LayerContext, cache: PrefixCache | None):
        block, kind = self.layers[i], self.kinds[i]
        mask, rotary = ctx.masks[kind], ctx.extras["rotary"][kind]
        if cache is None:
            return first_output(block(hidden, attention_mask=mask, position_embeddings=rotary))
        hidden = hidden + self._attend(block.attn, block.attn_norm(hidden), mask, rotary, cache, i)
        return hidden + block.mlp(block.mlp_norm(hidden))

    def finish(self, hidden):
        return self.model.final_norm(hidden)

    @staticmethod
    def _attend(attn, hidden, mask, rotary, cache: PrefixCache, i: int) -> torch.Tensor:
        from transformers.models.modernbert.modeling_modernbert import apply_rotary_pos_emb

        bsz, length, _ = hidden.shape
        q, k, v = attn.Wqkv(hidden).view(bsz, length, 3, -1, attn.head_dim).unbind(dim=2)
        q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), *rotary)
        k, v = cache.update(k, v.transpose(1, 2), i)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.head_dim ** -0.5,
                                             dropout_p=attn.attention_dropout if attn.training else 0.0)
        return attn.out_drop(attn.Wo(out.transpose(1, 2).reshape(bsz, length, -1)))
