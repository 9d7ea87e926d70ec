"""A runner drives one family of frozen transformers layer by layer.

Hugging Face models build masks and positions once, before their layers; prompts that enter
at layer m change the sequence length there, so softprompt runs the layers itself, calling
the model's own embedding, layer and norm modules. Each family subclass supplies the few
family-specific calls; everything else (prompt insertion, masks, key/value prefixes) is here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softprompt.runners.sequence import Sequence


class PrefixCache:
    """Duck-typed HF cache that puts per-layer key/value prefixes in front of a layer's keys.

    Stateless: `update` returns the concatenation and stores nothing, so training keeps no
    memory between steps. Prefix tensors are (B, H_kv, P, head_dim).
    """

    def __init__(self, prefixes: dict[int, tuple[torch.Tensor, torch.Tensor]], length: int):
        self.prefixes = prefixes
        self.length = length

    def update(self, key, value, layer_idx, *args, **kwargs):
        pk, pv = self.prefixes[layer_idx]
        return torch.cat([pk.to(key.dtype), key], dim=2), torch.cat([pv.to(value.dtype), value], dim=2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length


@dataclass
class LayerContext:
    """What every layer of one segment shares: masks, positions, family extras."""

    seq: Sequence
    prefix_len: int
    masks: dict  # layer kind -> additive mask
    extras: dict


class Runner(nn.Module):
    """Base runner. Subclasses set the module handles and implement the family hooks."""

    family: str = ""
    causal: bool = False

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    # -- shape facts -------------------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return self.word_embeddings.weight.shape[1]

    @property
    def num_kv_heads(self) -> int:
        return self.num_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def dtype(self) -> torch.dtype:
        return self.word_embeddings.weight.dtype

    # -- family hooks ------------------------------------------------------------------------
    word_embeddings: nn.Embedding
    layers: nn.ModuleList
    num_heads: int

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input token embeddings E(x) (before positions), the space prompts are prepended in."""
        return self.word_embeddings(input_ids)

    def embed(self, seq: Sequence) -> torch.Tensor:
        """Hidden states entering layer 0, from token-space vectors (positions, norm, dropout)."""
        return seq.hidden

    def context(self, seq: Sequence, prefix_len: int) -> LayerContext:
        from softprompt.runners.sequence import additive_mask

        mask = additive_mask(seq.mask, self.dtype, self.causal, prefix_len)
        return LayerContext(seq, prefix_len, {"default": mask}, {})

    def layer(self, i: int, hidden: torch.Tensor, ctx: LayerContext, cache: PrefixCache | None) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm after the last layer (identity for post-norm encoders)."""
        return hidden

    # -- generic driving ---------------------------------------------------------------------
    def run_layers(
        self,
        seq: Sequence,
        start: int,
        end: int,
        prefixes: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Run layers [start, end) over `seq`; `prefixes` maps layer -> key/value prefix."""
        hidden = seq.hidden
        prefix_len = next(iter(prefixes.values()))[0].shape[2] if prefixes else 0
        contexts: dict[int, LayerContext] = {}
        for i in range(start, end):
            has_prefix = bool(prefixes) and i in prefixes
            p = prefix_len if has_prefix else 0
            if p not in contexts:
                contexts[p] = self.context(seq, p)
            cache = PrefixCache(prefixes, prefix_len) if has_prefix else None
            hidden = self.layer(i, hidden, contexts[p], cache)
        return hidden

    def prefix_shape(self) -> tuple[int, int]:
        """(num_kv_heads, head_dim) of one layer's key/value prefix."""
        return self.num_kv_heads, self.head_dim

    def lm_head(self) -> nn.Module | None:
        """Output projection onto the vocabulary, where the model has one."""
        return None
