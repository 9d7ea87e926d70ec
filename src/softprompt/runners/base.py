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

from softprompt.runners.anatomy import lora_targets
from softprompt.runners.sequence import Past, Sequence


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
    """What every layer of one segment shares: masks by layer kind, and family extras (positions, biases)."""

    masks: dict  # layer kind -> additive mask
    extras: dict


class Runner(nn.Module):
    """Base runner. Subclasses set the module handles and implement the family hooks.

    Facts about a family live on its runner class: its kind, what it needs a model to expose
    (`unfit`), how many positions it embeds, and whether peft can put prefixes in it.
    """

    family: str = ""
    kind: str = "encoder"  # "encoder" | "decoder" | "encoder-decoder"
    causal: bool = False
    peft_prefix_obstacle: str | None = None  # why peft cannot prefix-tune this family (None: it can)

    @classmethod
    def unfit(cls, model: nn.Module) -> str | None:
        """What `model` lacks for this runner (None: it can drive it)."""
        return "no runner of this kind"

    @property
    def decoder_layers(self) -> int:
        """Encoder-decoders: decoder self-attention layers that key/value sites also prefix (else 0)."""
        return 0

    @classmethod
    def max_positions(cls, config) -> int | None:
        """Most positions the base can embed (None: relative positions, no hard limit)."""
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

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
    def embedding_size(self) -> int:
        """Width of the token embeddings E(x): prompts at the input embeddings have it."""
        return self.word_embeddings.weight.shape[1]

    @property
    def hidden_size(self) -> int:
        """Width of the hidden states (wider than `embedding_size` where embeddings are projected, as ELECTRA's)."""
        return self.embedding_size

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

    def context(self, seq: Sequence, prefix_len: int, past: Past | None = None) -> LayerContext:
        """Masks and extras for `seq` behind `prefix_len` key columns (prefixes, or `past` keys when decoding)."""
        from softprompt.runners.sequence import additive_mask

        mask = additive_mask(seq.mask, self.dtype, self.causal, prefix_len,
                             prefix_mask=None if past is None else past.mask)
        return LayerContext({"default": mask}, {})

    def layer(self, i: int, hidden: torch.Tensor, ctx: LayerContext, cache: PrefixCache | None) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm after the last layer (identity for post-norm encoders)."""
        return hidden

    def embedding_modules(self) -> list[nn.Module]:
        """Modules with dropout that make layer 0's input (on during training only when prompts enter there)."""
        return []

    def train_from(self, boundary: int) -> None:
        """Dropout on in layers >= boundary (the embeddings' too when boundary is 0); the rest stays in eval mode."""
        for layer in self.layers[boundary:]:
            layer.train()
        if boundary == 0:
            for module in self.embedding_modules():
                module.train()

    @property
    def lora_targets(self) -> list[str]:
        """Attention projections LoRA adapts by default (found in the layer stack)."""
        return lora_targets(self.layers)

    def prefix_shape(self) -> tuple[int, int]:
        """(num_kv_heads, head_dim) of one layer's key/value prefix."""
        return self.num_kv_heads, self.head_dim

    def lm_head(self) -> nn.Module | None:
        """Output projection onto the vocabulary, where the model has one."""
        return None
