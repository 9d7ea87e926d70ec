"""Prompt producers: modules that make the prompt vectors a site puts into the model.

A producer returns prompts of shape (B, t, D): B = 1 for input-independent producers
(broadcast by the site), B = batch for input-dependent ones. D is what the site asks for:
the hidden size for hidden-state sites, layers x 2 x kv_dim for key/value sites.
"""

from __future__ import annotations

from collections.abc import Callable

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ProducerInput:
    """What a producer may look at. Masks mark text tokens (no prompt yet)."""

    token_embeds: torch.Tensor  # (B, T, d) input token embeddings E(x)
    hidden: torch.Tensor  # (B, T, d) hidden states entering the site's layer
    mask: torch.Tensor  # (B, T) bool


@dataclass
class ProducerConfig:
    num_tokens: int = 10

    def validate(self) -> None:
        if self.num_tokens < 1:
            raise ValueError("num_tokens must be >= 1")

    def fit(self, max_length: int) -> "ProducerConfig":
        """Fill settings that depend on the run (e.g. DePT sizes A by the input length)."""
        return self

    def for_loading(self) -> "ProducerConfig":
        """This config for rebuilding a saved adapter, whose weights replace the init: an init that reads
        other files (SPoT's source adapters) is dropped, so a saved adapter never needs them."""
        return self


class Producer(nn.Module):
    """Facts about a producer live here, on its class (the registry, trainer and interop read them)."""

    kind: str = ""  # registry name, `method.producer.kind`
    config_class: type[ProducerConfig] = ProducerConfig
    input_dependent: bool = False  # reads the input; its prompt is computed per example
    edits_embeddings: bool = False  # also changes the input token embeddings (DePT)
    folds_to_static: bool = False  # `fold()` returns fixed vectors (a reparameterisation)
    peft_exportable: bool = False  # peft has the same method (prompt/prefix tuning, p-tuning)
    default_lrs: dict[str, float] = {"prompt": 3e-2}  # learning rate per parameter group

    def __init__(self, cfg: ProducerConfig, out_dim: int, hidden_size: int):
        super().__init__()
        self.cfg = cfg
        self.out_dim = out_dim
        self.hidden_size = hidden_size

    @classmethod
    def input_dim(cls, cfg: ProducerConfig, token_dim: int, state_dim: int) -> int:
        """Width of what it reads, its `hidden_size`: token embeddings (`token_dim`) unless it reads the
        site's states (`state_dim`); the two differ where embeddings are projected (ELECTRA-small)."""
        return token_dim

    @property
    def num_tokens(self) -> int:
        return self.cfg.num_tokens

    @property
    def max_input_tokens(self) -> int | None:
        """The longest input this producer accepts (None: any); DePT's A has one row per position."""
        return None

    def forward(self, inp: ProducerInput) -> torch.Tensor:
        raise NotImplementedError

    def adjust_embeddings(self, token_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hook for producers that also edit the input embeddings (DePT)."""
        return token_embeds

    def init_from_words(self, words: Callable[[torch.Tensor], torch.Tensor], tokenizer) -> None:
        """Hook for producers initialised from the vocabulary or a text. `words(ids)` (n,) -> (n, out_dim):
        what those tokens look like at the producer's site (embeddings, or keys/values at prefixed layers)."""

    def after_step(self) -> None:
        """Called by the trainer after every optimizer step (CPT projects its delta into its epsilon balls)."""

    def fold(self) -> "Producer":
        """An equivalent producer for inference (reparameterisations materialised)."""
        return self

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups; the trainer may give each its own learning rate."""
        return {"prompt": [p for p in self.parameters() if p.requires_grad]}


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the sequence of (B, T, d) restricted to mask (B, T)."""
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)
