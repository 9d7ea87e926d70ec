"""Heads on top of the final hidden states: classification, regression, LM verbalizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from softprompt.runners.sequence import first_real_index, last_real_index


@dataclass
class HeadConfig:
    kind: Literal["auto", "classification", "regression", "verbalizer"] = "auto"
    pooling: Literal["auto", "mean", "cls", "last"] = "auto"
    dropout: float = 0.1


def pool(hidden: torch.Tensor, text_mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool text positions of (B, L, d): mean, first text token (cls) or last text token."""
    if how == "mean":
        w = text_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * w).sum(1) / w.sum(1).clamp(min=1.0)
    idx = first_real_index(text_mask) if how == "cls" else last_real_index(text_mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


class PooledHead(nn.Module):
    """Dropout + linear map of the pooled text representation (classes, or 1 for regression)."""

    def __init__(self, hidden_size: int, num_outputs: int, pooling: str, dropout: float):
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, hidden: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(pool(hidden, text_mask, self.pooling)))


class VerbalizerHead(nn.Module):
    """Scores label words with the frozen LM head at the last text position (no new weights).

    Label words are given as token-id lists; the first token scores the word here, and
    multi-token words get the rest of their log-probability from `SoftPromptModel`.
    """

    def __init__(self, lm_head: nn.Module, label_token_ids: list[list[int]]):
        super().__init__()
        self.lm_head = [lm_head]  # a list keeps the frozen module out of this head's state_dict
        self.label_token_ids = label_token_ids
        self.register_buffer("first_ids", torch.tensor([ids[0] for ids in label_token_ids]), persistent=False)

    @property
    def multi_token(self) -> bool:
        return any(len(ids) > 1 for ids in self.label_token_ids)

    def forward(self, hidden: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        last = pool(hidden, text_mask, "last")
        return self.lm_head[0](last).log_softmax(-1)[:, self.first_ids]


def resolve_head(cfg: HeadConfig, kind: str, is_regression: bool) -> tuple[str, str]:
    """(head kind, pooling) after 'auto': encoders pool the mean, decoders the last token."""
    head = cfg.kind
    if head == "auto":
        head = "regression" if is_regression else "classification"
    if head == "verbalizer" and kind == "encoder":
        raise ValueError("head.kind 'verbalizer' needs a model with an LM head (decoder or T5)")
    if head == "verbalizer" and is_regression:
        raise ValueError("head.kind 'verbalizer' cannot score a regression task")
    pooling = cfg.pooling
    if pooling == "auto":
        pooling = "last" if kind == "decoder" else "mean"
    return head, pooling


LOGIT_CHUNK_ELEMENTS = 2 ** 23  # logits held at once by lm_cross_entropy: 32 MiB in float32


def lm_cross_entropy(lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `lm_head(hidden)` (N, V) against `targets` (N,), a chunk of rows at a time.

    Each chunk's logits are recomputed in the backward pass (activation checkpointing) instead of kept,
    so a large vocabulary (Qwen: 152k) costs a chunk's logits, not every target's logits, log-softmax
    and gradient: the same loss and gradients for one more LM-head matmul over the target rows.
    """
    rows = max(1, LOGIT_CHUNK_ELEMENTS // max(1, getattr(lm_head, "out_features", None) or lm_head.weight.shape[0]))
    if hidden.shape[0] <= rows or not torch.is_grad_enabled():
        return F.cross_entropy(lm_head(hidden).float(), targets)
    from torch.utils.checkpoint import checkpoint

    def chunk_sum(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(lm_head(h).float(), t, reduction="sum")

    total = sum(checkpoint(chunk_sum, h, t, use_reentrant=False)
                for h, t in zip(hidden.split(rows), targets.split(rows)))
    return total / targets.numel()
