"""One runner for every causal decoder built from the common pieces, found by what the model exposes.

Token embeddings (`get_input_embeddings`), a stack of blocks called with hidden states, an
attention mask, a key/value cache and positions (rotary tables, position ids or ALiBi), a final
norm and an LM head: Llama, Mistral/Mixtral, Qwen2/3 (MoE too), Gemma 1-3, Phi, Phi-3, OLMo-2,
Granite, GPT-2, GPT-NeoX, OPT, Falcon, BLOOM, ... What differs between them is read from the model
and declared here, each in one place:

- positions: a rotary module on the body (per layer kind for Gemma-3), a learned table (`wpe`
  indexed by position, or OPT's `embed_positions` with its offset), or ALiBi slopes (BLOOM);
- layer kinds: `config.layer_types` (sliding / full attention), or a sliding window on every
  layer (Mistral) from `config.sliding_window`;
- embedding extras: Granite's `embedding_multiplier`, BLOOM's embedding norm, dropout modules;
  Gemma's sqrt(d) scale lives in its embedding module, so token vectors already carry it;
- the LM head's post-processing: Gemma-2/3 soft-capping, Granite's `logits_scaling`, Cohere's
  `logit_scale`;
- the key/value layout (GQA/MQA heads, head size): measured once by calling layer 0 with a
  recording cache, so fused or multi-query attention needs no table;
- mixture-of-experts blocks stay in eval mode while prompts train (routers frozen, no jitter).
"""

from __future__ import annotations

import torch
from torch import nn

from softprompt.runners.anatomy import (EMBED_DROPOUTS, EMBED_NORMS, FINAL_NORMS, LayerCall, attr, decoder_body,
                                        first_output, layer_count, layer_stack, parameters_of, text_config)
from softprompt.runners.base import LayerContext, PrefixCache, Runner
from softprompt.runners.lean_mlp import adopt_lean_mlps
from softprompt.runners.sequence import Past, Sequence, additive_mask


class DecoderRunner(Runner):
    family = "decoder"
    kind = "decoder"
    causal = True

    @classmethod
    def unfit(cls, model: nn.Module) -> str | None:
        cfg = text_config(model)
        if getattr(cfg, "is_encoder_decoder", False):
            return "it is an encoder-decoder"
        if not isinstance(model.get_input_embeddings(), nn.Embedding):
            return "no token embedding table (get_input_embeddings)"
        body = decoder_body(model)
        count = layer_count(cfg)
        layers = layer_stack(body, count)
        if layers is None:
            return f"no stack of {count} decoder layers on {type(body).__name__}"
        call = LayerCall(layers[0])
        if call.missing():
            return call.missing()
        if "position_bias" in call.params:
            return "its layers take an ALiBi position_bias tensor (MPT style), which softprompt does not build"
        if getattr(body, "use_alibi", False):
            return "Falcon's ALiBi variant (alibi=True) folds its bias into the attention mask; rotary Falcons work"
        if attr(body, ("project_in",)) is not None:
            return "its token embeddings are narrower than its hidden states (project_in, as OPT-350m)"
        positions = attr(body, ("rotary_emb", "wpe", "embed_positions")) is not None
        if not (positions or call.takes_alibi or call.takes_positions):
            return "no position source found (rotary_emb, wpe/embed_positions, ALiBi or position_ids)"
        return None

    def __init__(self, model: nn.Module):
        super().__init__(model)
        cfg = self._cfg = text_config(model)
        body = self.body = decoder_body(model)
        self.word_embeddings = model.get_input_embeddings()
        self.layers = layer_stack(body, layer_count(cfg))
        self.call = LayerCall(self.layers[0])
        self.num_heads = cfg.num_attention_heads
        sliding_everywhere = getattr(cfg, "layer_types", None) is None and getattr(cfg, "sliding_window", None)
        default = "sliding_attention" if sliding_everywhere else "full_attention"
        self.layer_types = list(getattr(cfg, "layer_types", None) or [default] * len(self.layers))
        self.window = getattr(cfg, "sliding_window", None)
        self.rotary = attr(body, ("rotary_emb",))
        self.rotary_by_kind = self.rotary is not None and "layer_type" in parameters_of(self.rotary)
        self.alibi = self.call.takes_alibi and self.rotary is None  # BLOOM; Falcon takes the argument, unused
        self.position_table = attr(body, ("wpe", "embed_positions"))
        self.table_takes_mask = self.position_table is not None and "attention_mask" in parameters_of(
            self.position_table)
        self.embed_norm = attr(body, EMBED_NORMS)
        self.embed_dropout = attr(body, EMBED_DROPOUTS, nn.Dropout)
        self.final_norm = attr(body, FINAL_NORMS)
        self.project_out = attr(body, ("project_out",))
        self.multiplier = getattr(cfg, "embedding_multiplier", None)
        self.moe_blocks = [m for m in self.layers.modules() if hasattr(m, "experts")]
        self.lean_mlps = adopt_lean_mlps(self.layers)
        self._kv_shape: tuple[int, int] | None = None
        self._head: list[nn.Module] = []

    # -- shape facts ---------------------------------------------------------------------------
    @property
    def num_kv_heads(self) -> int:
        return self.prefix_shape()[0]

    @property
    def head_dim(self) -> int:
        return self.prefix_shape()[1]

    def prefix_shape(self) -> tuple[int, int]:
        if self._kv_shape is None:
            self._kv_shape = self._measure_kv_shape()
        return self._kv_shape

    @torch.no_grad()
    def _measure_kv_shape(self) -> tuple[int, int]:
        """(key/value heads, head size) as layer 0 hands them to its cache."""
        recorder = _ShapeRecorder()
        ids = torch.zeros(1, 1, dtype=torch.long, device=self.word_embeddings.weight.device)
        mask = torch.ones(1, 1, dtype=torch.bool, device=ids.device)
        seq = Sequence(self.token_embeddings(ids), mask, mask)
        seq = seq.with_hidden(self.embed(seq))
        self.layer(0, seq.hidden, self.context(seq, 0), recorder)
        return recorder.shape[1], recorder.shape[3]

    # -- the hooks of the layer loop ---------------------------------------------------------------
    def embed(self, seq: Sequence) -> torch.Tensor:
        hidden = seq.hidden
        if self.multiplier:
            hidden = hidden * self.multiplier
        if self.position_table is not None:
            hidden = hidden + self._learned_positions(seq).to(hidden.dtype)
        if self.embed_norm is not None:
            hidden = self.embed_norm(hidden)
        if self.embed_dropout is not None:
            hidden = self.embed_dropout(hidden)
        return hidden

    def _learned_positions(self, seq: Sequence) -> torch.Tensor:
        if self.table_takes_mask:  # OPT: the table adds its own offset to position ids
            return self.position_table(seq.mask.long(), 0, position_ids=seq.positions)
        return self.position_table(seq.positions)

    def embedding_modules(self):
        return [m for m in (self.embed_dropout,) if m is not None]

    def context(self, seq: Sequence, prefix_len: int, past: Past | None = None) -> LayerContext:
        pos = seq.positions  # key/value prefixes already shift positions via seq.position_offset
        pre_mask, pre_pos = (None, None) if past is None else (past.mask, past.positions)
        kinds = list(dict.fromkeys(self.layer_types))
        masks = {kind: additive_mask(seq.mask, self.dtype, True, prefix_len, positions=pos, prefix_mask=pre_mask,
                                     window=self.window if kind == "sliding_attention" else None,
                                     prefix_positions=pre_pos) for kind in kinds}
        rotary = {}
        if self.rotary_by_kind:
            rotary = {kind: self.rotary(seq.hidden, pos, kind) for kind in kinds}
        elif self.rotary is not None:
            rotary = dict.fromkeys(kinds, self.rotary(seq.hidden, pos))  # one table shared by every kind
        extras = {"rotary": rotary, "positions": pos}
        if self.alibi:
            extras["alibi"] = self._alibi(seq, prefix_len, past)
        return LayerContext(masks, extras)

    def _alibi(self, seq: Sequence, prefix_len: int, past: Past | None) -> torch.Tensor:
        """(B * heads, 1, keys) ALiBi bias: each head's slope times the key's position (BLOOM's layout)."""
        from transformers.models.bloom.modeling_bloom import build_alibi_tensor

        bsz = seq.mask.shape[0]
        if past is not None:
            keys = torch.cat([past.positions, seq.positions], 1)
        else:
            pre = torch.arange(prefix_len, device=seq.mask.device).expand(bsz, -1)
            keys = torch.cat([pre, seq.positions], 1)
        ones = torch.ones(1, 2, dtype=torch.long, device=keys.device)
        slopes = build_alibi_tensor(ones, self.num_heads, torch.float32)[:, 0, 1]  # at position 1: the slopes
        bias = slopes[None, :, None] * keys[:, None, :].float()
        return bias.reshape(bsz * self.num_heads, 1, -1).to(self.dtype)

    def layer(self, i, hidden, ctx: LayerContext, cache: PrefixCache | None):
        kind = self.layer_types[i]
        kwargs = self.call.kwargs(ctx.masks[kind], cache, ctx.extras["positions"], ctx.extras["rotary"].get(kind),
                                  ctx.extras.get("alibi"))
        return first_output(self.layers[i](hidden, **kwargs))

    def finish(self, hidden):
        if self.final_norm is not None:
            hidden = self.final_norm(hidden)
        if self.project_out is not None:
            hidden = self.project_out(hidden)
        return hidden

    def train_from(self, boundary: int) -> None:
        super().train_from(boundary)
        for block in self.moe_blocks:  # routers stay deterministic: no jitter, no training-mode routing
            block.eval()

    def lm_head(self) -> nn.Module | None:
        if not self._head:
            head = self.model.get_output_embeddings()
            cfg = self._cfg
            scale = getattr(cfg, "logit_scale", None) or 1.0
            if getattr(cfg, "logits_scaling", None):
                scale = scale / cfg.logits_scaling
            cap = getattr(cfg, "final_logit_softcapping", None)
            if head is not None and (scale != 1.0 or cap):
                head = ScaledLogits(head, float(scale), cap)
            self._head.append(head)
        return self._head[0]


class ScaledLogits(nn.Module):
    """The LM head followed by the model's own logit post-processing (scale, then tanh soft-capping)."""

    def __init__(self, head: nn.Module, scale: float, softcap: float | None):
        super().__init__()
        self.head = [head]  # a list keeps the frozen module out of this wrapper's state_dict
        self.scale, self.softcap = scale, softcap

    @property
    def weight(self) -> torch.Tensor:
        return self.head[0].weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head[0](hidden)
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


class _ShapeRecorder:
    """A cache that only notes the shape of the keys a layer hands it."""

    shape: tuple = ()

    def update(self, key, value, layer_idx, *args, **kwargs):
        self.shape = tuple(key.shape)
        return key, value

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0
