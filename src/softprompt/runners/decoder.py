"""Runners for causal decoders: GPT-2 (learned positions) and Llama/Gemma-3 (rotary, GQA)."""

from __future__ import annotations

import torch
from torch import nn

from softprompt.runners.base import LayerContext, PrefixCache, Runner
from softprompt.runners.sequence import Past, Sequence, additive_mask


class GPT2Runner(Runner):
    family = "gpt2"
    kind = "decoder"
    model_types = ("gpt2",)
    causal = True
    lora_targets = ("c_attn",)

    def __init__(self, model: nn.Module):
        super().__init__(model)
        tr = model.transformer
        self.word_embeddings = tr.wte
        self.layers = tr.h
        self.num_heads = model.config.n_head

    def embed(self, seq: Sequence) -> torch.Tensor:
        tr = self.model.transformer
        return tr.drop(seq.hidden + tr.wpe(seq.positions))

    def layer(self, i, hidden, ctx: LayerContext, cache: PrefixCache | None):
        out = self.layers[i](hidden, past_key_values=cache, attention_mask=ctx.masks["default"])
        return out[0] if isinstance(out, tuple) else out

    def embedding_modules(self):
        return [self.model.transformer.drop]

    def finish(self, hidden):
        return self.model.transformer.ln_f(hidden)

    def lm_head(self):
        return self.model.lm_head


class LlamaRunner(Runner):
    """Llama-style decoders (Llama, Mistral, Qwen2, SmolLM2) and Gemma-3 (per-layer rotary + sliding window)."""

    family = "llama"
    kind = "decoder"
    model_types = ("llama", "mistral", "qwen2")
    causal = True
    lora_targets = ("q_proj", "v_proj")

    def __init__(self, model: nn.Module):
        super().__init__(model)
        inner = model.model
        self.word_embeddings = inner.embed_tokens
        self.layers = inner.layers
        cfg = model.config
        self.num_heads = cfg.num_attention_heads
        self._kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self._head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.layer_types = list(getattr(cfg, "layer_types", None) or ["full_attention"] * len(self.layers))

    @property
    def num_kv_heads(self) -> int:
        return self._kv_heads

    @property
    def head_dim(self) -> int:
        return self._head_dim

    def context(self, seq: Sequence, prefix_len: int, past: Past | None = None) -> LayerContext:
        pos = seq.positions  # key/value prefixes already shift positions via seq.position_offset
        masks, rotary = {}, {}
        window = getattr(self.config, "sliding_window", None)
        pre_mask, pre_pos = (None, None) if past is None else (past.mask, past.positions)
        for kind in set(self.layer_types):
            w = window if kind == "sliding_attention" else None
            masks[kind] = additive_mask(seq.mask, self.dtype, True, prefix_len, window=w, positions=pos,
                                        prefix_mask=pre_mask, prefix_positions=pre_pos)
            rotary[kind] = self._rotary(seq.hidden, pos, kind)
        return LayerContext(masks, {"rotary": rotary, "positions": pos})

    def _rotary(self, hidden, pos, kind):
        return self.model.model.rotary_emb(hidden, pos)

    def layer(self, i, hidden, ctx: LayerContext, cache: PrefixCache | None):
        kind = self.layer_types[i]
        out = self.layers[i](
            hidden,
            attention_mask=ctx.masks[kind],
            position_ids=ctx.extras["positions"],
            past_key_values=cache,
            position_embeddings=ctx.extras["rotary"][kind],
        )
        return out[0] if isinstance(out, tuple) else out

    def finish(self, hidden):
        return self.model.model.norm(hidden)

    def lm_head(self):
        return self.model.lm_head


class Gemma3Runner(LlamaRunner):
    family = "gemma3"
    model_types = ("gemma3_text", "gemma3")

    def _rotary(self, hidden, pos, kind):
        return self.model.model.rotary_emb(hidden, pos, kind)
