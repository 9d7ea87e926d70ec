"""LoPA (Jain, Chaudhuri, Reps & Jermaine, NeurIPS 2024, "Prompt Tuning Strikes Back: Customizing
Foundation Models with Low-Rank Prompt Adaptation"; reference: github.com/jabhinav/
Prompt-Tuning-Strikes-Back-with-LOPA, utils/model.py LatentPromptAttentionGenerator + LOPA,
custom_peft/peft_lopa_model.py).

An input-dependent prompt: a task-shared part gated elementwise by a low-rank instance part,

  f   = encoding of the input x                                  (d_e)
  u   = W_u2 tanh(W_u1 dropout(f) + c_u1) + c_u2,  viewed m x r   (row head)
  v   = W_v2 tanh(W_v1 dropout(f) + c_v1) + c_v2,  viewed D x r   (column head)
  Z_I = u v^T  (m x D, rank r);   Z = Z_S * sigmoid(Z_I)          (Z_S: m x D, learned, shared)

The heads' hidden width is the encoder's width d_e; W_u1, W_v1 (d_e x d_e) and W_u2 (d_e x m r),
W_v2 (d_e x D r) start N(0, 0.02^2), c_u2 = c_v2 = 0, c_u1/c_v1 keep nn.Linear's default; dropout
0.1 (the encoder's hidden dropout); Z_S ~ N(0, 1) (peft's random prompt-tuning init). Defaults:
m = 10, r = 4, learning rate 1e-3 (reference config and README). The view layout is the
reference's: u[i, k] = out_u[i r + k], v[j, k] = out_v[j r + k].

The reference encodes x with a separate frozen encoder (CodeSage's normalised pooled output, or
RoBERTa's first-token state). Here f is read as IDPG reads it (`encoder: embeddings`, default: the
mean of the frozen model's own input embeddings over the text; `encoder: hidden`: the mean of the
states entering the site's layer), so no second model is loaded or run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerInput, masked_mean
from softprompt.producers.static import WordInitConfig, word_values


@dataclass
class LoPAConfig(WordInitConfig):
    num_tokens: int = 10  # m
    rank: int = 4  # r of Z_I = u v^T
    dropout: float = 0.1  # on the encoding, before each head
    init_std: float = 1.0  # Z_S ~ N(0, init_std^2) with init: random (peft's nn.Embedding: 1)
    head_std: float = 0.02  # the heads' weights ~ N(0, head_std^2) (the encoder's initializer_range)
    encoder: Literal["embeddings", "hidden"] = "embeddings"

    def validate(self) -> None:
        super().validate()
        if self.rank < 1:
            raise ValueError("rank must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
        if self.init_std <= 0 or self.head_std <= 0:
            raise ValueError("init_std and head_std must be > 0")


class LoPAPromptGenerator(Producer):
    kind = "lopa"
    config_class = LoPAConfig
    input_dependent = True
    default_lrs = {"prompt": 1e-3}  # reference README: 1e-3 for the prompt-tuning methods

    @classmethod
    def input_dim(cls, cfg: LoPAConfig, token_dim: int, state_dim: int) -> int:
        return token_dim if cfg.encoder == "embeddings" else state_dim

    def __init__(self, cfg: LoPAConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.shared = nn.Parameter(torch.randn(cfg.num_tokens, out_dim) * cfg.init_std)  # Z_S
        self.row_dropout = nn.Dropout(cfg.dropout)
        self.row_dense = nn.Linear(hidden_size, hidden_size)
        self.row_out = nn.Linear(hidden_size, cfg.num_tokens * cfg.rank)
        self.col_dropout = nn.Dropout(cfg.dropout)
        self.col_dense = nn.Linear(hidden_size, hidden_size)
        self.col_out = nn.Linear(hidden_size, out_dim * cfg.rank)
        with torch.no_grad():
            for layer in (self.row_dense, self.row_out, self.col_dense, self.col_out):
                layer.weight.normal_(0.0, cfg.head_std)
            self.row_out.bias.zero_()
            self.col_out.bias.zero_()

    def encode(self, inp: ProducerInput) -> torch.Tensor:
        """f (B, d_e): the input's encoding."""
        source = inp.token_embeds if self.cfg.encoder == "embeddings" else inp.hidden
        return masked_mean(source, inp.mask)

    def instance_part(self, f: torch.Tensor) -> torch.Tensor:
        """Z_I = u v^T (B, m, D) from the encoding, before the gate."""
        m, r = self.cfg.num_tokens, self.cfg.rank
        u = self.row_out(torch.tanh(self.row_dense(self.row_dropout(f)))).view(-1, m, r)
        v = self.col_out(torch.tanh(self.col_dense(self.col_dropout(f)))).view(-1, self.out_dim, r)
        return torch.einsum("bir,bjr->bij", u, v)

    def forward(self, inp: ProducerInput) -> torch.Tensor:
        f = self.encode(inp).to(self.shared.dtype)
        return self.shared * torch.sigmoid(self.instance_part(f))

    @torch.no_grad()
    def init_from_words(self, words, tokenizer) -> None:
        values = word_values(self.cfg, words, tokenizer)  # Z_S from words (a named option; default random)
        if values is not None:
            self.shared.copy_(values.to(self.shared.dtype))
