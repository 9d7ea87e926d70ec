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


LOGIT_CHUNK_ELEMENTS = 2 ** 25  # logits held at once by lm_cross_entropy: 128 MiB in float32


def lm_cross_entropy(lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `lm_head(hidden)` (N, V) against `targets` (N,), a chunk of rows at a time.

    A frozen linear head (the usual case: the base is frozen) takes the fused path: each chunk's logits
    become its gradient in place during the forward pass, so one chunk of logits is alive at a time and
    nothing is recomputed. Any other head (trainable, soft-capped, scaled) recomputes each chunk's
    logits in the backward pass (activation checkpointing). Either way a large vocabulary (Qwen: 152k)
    costs a chunk's logits, not every target's logits, log-softmax and gradient.
    """
    rows = max(1, LOGIT_CHUNK_ELEMENTS // max(1, getattr(lm_head, "out_features", None) or lm_head.weight.shape[0]))
    if not torch.is_grad_enabled():
        return F.cross_entropy(lm_head(hidden).float(), targets)
    if _frozen_linear(lm_head):  # targets are token ids (no ignore index): no device sync to check them
        return _FrozenLinearCrossEntropy.apply(hidden, lm_head.weight, lm_head.bias, targets, rows) / targets.numel()
    if hidden.shape[0] <= rows:
        return F.cross_entropy(lm_head(hidden).float(), targets)
    from torch.utils.checkpoint import checkpoint

    def chunk_sum(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(lm_head(h).float(), t, reduction="sum")

    total = sum(checkpoint(chunk_sum, h, t, use_reentrant=False)
                for h, t in zip(hidden.split(rows), targets.split(rows)))
    return total / targets.numel()


def _frozen_linear(head: nn.Module) -> bool:
    return type(head) is nn.Linear and not any(p.requires_grad for p in head.parameters())


class _FrozenLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T + bias`, its gradient for `hidden` computed chunk by chunk
    in the forward pass: softmax(z) - onehot(target), formed in the chunk's own logits buffer, times `weight`."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, rows):
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden)
        for start in range(0, hidden.shape[0], rows):
            t = targets[start:start + rows]
            z = F.linear(hidden[start:start + rows], weight, bias).float()
            picked = z.gather(1, t[:, None])
            peak = z.amax(1, keepdim=True)
            z.sub_(peak).exp_()
            norm = z.sum(1, keepdim=True)
            total += (norm.log() + peak - picked).sum()
            z.div_(norm)  # softmax
            z[torch.arange(len(t), device=z.device), t] -= 1
            grad[start:start + rows] = z.to(weight.dtype) @ weight
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, upstream):
        (grad,) = ctx.saved_tensors
        return grad * upstream.to(grad.dtype), None, None, None, None
