"""ID-SPAM (Muppidi, Nandy, Bandyopadhyay 2024): input-dependent prompts from self-attention.

A = masked-mean( softmax(E Wq (E Wk)^T / sqrt(d_k)) E Wv )       (eq. 1)
S = resize( sigma( W_up sigma( W_down A ) ) )  -> t x n prompt     (eq. 2)

E are the input token embeddings, sigma is ReLU, both ReLUs on as published
(`output_activation: none` drops the outer one, a named deviation). One attention head without
biases (d_k = n); `pooling: mean` is the paper's ablation (Table 3: mean of E, no attention).
Defaults (paper: Sec. 3.1, Appendix A, Table 7, Table 12): t = 10; c = 34, the bottleneck whose
count 3n^2 + 34n + 34nt + nt is Table 12's for RoBERTa-base and -large (plus b_down here);
dropout 0.1 on A and learning rate 1e-3, points of the Table 7 grid; layer m: the site's
default (the middle layer; Fig. 2 finds layers 11-13 of 24 best).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput, masked_mean


@dataclass
class AttentionConfig(ProducerConfig):
    bottleneck: int = 34  # c < n
    heads: int = 1
    pooling: Literal["attention", "mean"] = "attention"
    output_activation: Literal["relu", "none"] = "relu"  # "relu": eq. (2) as published
    dropout: float = 0.1


class AttentionPromptGenerator(Producer):
    kind = "attention"
    config_class = AttentionConfig
    input_dependent = True
    default_lrs = {"prompt": 1e-3}  # Table 7 grid {1e-3, 5e-4, 1e-4, 5e-5, 1e-5}

    def __init__(self, cfg: AttentionConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        if hidden_size % cfg.heads:
            raise ValueError(f"heads ({cfg.heads}) must divide the hidden size ({hidden_size})")
        if cfg.pooling == "attention":
            self.wq = nn.Linear(hidden_size, hidden_size, bias=False)
            self.wk = nn.Linear(hidden_size, hidden_size, bias=False)
            self.wv = nn.Linear(hidden_size, hidden_size, bias=False)
        self.down = nn.Linear(hidden_size, cfg.bottleneck)
        self.up = nn.Linear(cfg.bottleneck, cfg.num_tokens * out_dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def attention_weights(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, heads, T, T) attention over the input tokens; each query row sums to 1."""
        bsz, length, d = e.shape
        h = self.cfg.heads
        q = self.wq(e).view(bsz, length, h, d // h).transpose(1, 2)
        k = self.wk(e).view(bsz, length, h, d // h).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / (d // h) ** 0.5
        scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        return scores.softmax(-1)

    def pooled(self, inp: ProducerInput) -> torch.Tensor:
        e, mask = inp.token_embeds, inp.mask
        if self.cfg.pooling == "mean":
            return masked_mean(e, mask)
        bsz, length, d = e.shape
        h = self.cfg.heads
        v = self.wv(e).view(bsz, length, h, d // h).transpose(1, 2)
        attended = (self.attention_weights(e, mask) @ v).transpose(1, 2).reshape(bsz, length, d)
        return masked_mean(attended, mask)

    def forward(self, inp: ProducerInput) -> torch.Tensor:
        a = self.dropout(self.pooled(inp))
        s = self.up(torch.relu(self.down(a)))
        if self.cfg.output_activation == "relu":
            s = torch.relu(s)
        return s.view(s.shape[0], self.cfg.num_tokens, self.out_dim)
