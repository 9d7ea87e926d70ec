"""IDPG (Wu et al., NAACL 2022): an instance-dependent prompt from a sentence vector, via PHM layers.

f = sentence vector of the input                 (the paper: RoBERTa's [CLS], or mean GloVe)
h = GELU( f . sum_i kron(S_i, W_i) + b )          (PHM down-projection to a small bottleneck)
P = h . sum_i kron(S'_i, U_i) + B                 (PHM up-projection; B: t x d position bias)

A PHM layer (parameterised hypercomplex multiplication) builds its d_in x d_out weight from n
Kronecker products of an n x n matrix and a (d_in/n) x (d_out/n) block, so it holds ~1/n of
the parameters. Defaults follow the reference scripts: n = 4, bottleneck 16, t = 5, dropout
0.1, init N(0, 0.05). `encoder: embeddings` (default) averages the frozen model's own input
embeddings, the analogue of the paper's GloVe variant (IDPG-PHM-GloVe) with no extra pass;
`encoder: hidden` averages the hidden states entering the site's layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput, masked_mean


@dataclass
class IDPGConfig(ProducerConfig):
    num_tokens: int = 5
    bottleneck: int = 16
    phm_n: int = 4
    dropout: float = 0.1
    encoder: Literal["embeddings", "hidden"] = "embeddings"

    def validate(self) -> None:
        super().validate()
        if self.phm_n < 1 or self.bottleneck % self.phm_n:
            raise ValueError(f"phm_n ({self.phm_n}) must divide bottleneck ({self.bottleneck})")


class PHMLinear(nn.Module):
    """y = x . sum_i kron(S_i, W_i) + b, with S_i (n x n) and W_i (d_in/n x d_out/n)."""

    def __init__(self, d_in: int, d_out: int, n: int, std: float = 0.05):
        super().__init__()
        if d_in % n or d_out % n:
            raise ValueError(f"PHM n={n} must divide both sizes ({d_in}, {d_out})")
        self.shared = nn.Parameter(torch.randn(n, n, n) * std)
        self.blocks = nn.Parameter(torch.randn(n, d_in // n, d_out // n) * std)

    def weight(self) -> torch.Tensor:
        return sum(torch.kron(self.shared[i], self.blocks[i]) for i in range(self.shared.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight()


class IDPGPromptGenerator(Producer):
    kind = "idpg"
    config_class = IDPGConfig
    input_dependent = True
    default_lrs = {"prompt": 1e-3}  # in the reference grid {5e-3, 1e-3, 5e-4, 1e-4}

    @classmethod
    def input_dim(cls, cfg: IDPGConfig, token_dim: int, state_dim: int) -> int:
        return token_dim if cfg.encoder == "embeddings" else state_dim

    def __init__(self, cfg: IDPGConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.down = PHMLinear(hidden_size, cfg.bottleneck, cfg.phm_n)
        self.down_bias = nn.Parameter(torch.randn(cfg.bottleneck) * 0.05)
        self.up = PHMLinear(cfg.bottleneck, cfg.num_tokens * out_dim, cfg.phm_n)
        self.up_bias = nn.Parameter(torch.randn(cfg.num_tokens, out_dim) * 0.02)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, inp: ProducerInput) -> torch.Tensor:
        source = inp.token_embeds if self.cfg.encoder == "embeddings" else inp.hidden
        f = self.dropout(masked_mean(source, inp.mask))
        h = self.dropout(nn.functional.gelu(self.down(f) + self.down_bias))
        prompt = self.up(h).view(h.shape[0], self.cfg.num_tokens, self.out_dim)
        return prompt + self.up_bias
