"""Late Prompt Tuning generators (Liu et al. 2022; reference: github.com/xyltt/LPT).

The prompt for layer m is made from the hidden states h leaving layer m-1:

  NPG (default):   S = dropout( resize( W_up relu( W_down h_pos ) ) )        -> t x d
  APPG / MPPG:     S = dropout( W_up relu( pool_t( W_down h ) ) )            -> t x d

h_pos is one position (`pooling`): the reference reads [CLS] (position 0) in its encoder
code and the last real token in its GPT-2 code; "auto" does the same (first real token when
the tokenizer has a CLS token, else the last). pool_t averages (APPG) or max-pools (MPPG)
the down-projected real tokens into t equal segments (adaptive pooling), one per prompt token.
`pooling: mean | max` pools the whole sequence for NPG instead (named deviations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput, masked_mean


@dataclass
class PooledConfig(ProducerConfig):
    generator: Literal["npg", "appg", "mppg"] = "npg"
    bottleneck: int = 256  # W_down size (ID-SPAM paper Table 12 counts LPT as NPG, 256, t = 10)
    pooling: Literal["auto", "first", "last", "mean", "max"] = "auto"  # NPG's input vector
    dropout: float = 0.1  # reference: the backbone's hidden dropout (0.1), on the generated prompt

    def validate(self) -> None:
        super().validate()
        if self.bottleneck < 1:
            raise ValueError("bottleneck must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")


class PooledPromptGenerator(Producer):
    kind = "pooled"
    config_class = PooledConfig
    input_dependent = True
    default_lrs = {"prompt": 1e-3}  # reference encoder script (RoBERTa-large)

    @classmethod
    def input_dim(cls, cfg: PooledConfig, token_dim: int, state_dim: int) -> int:
        return state_dim

    def __init__(self, cfg: PooledConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.down = nn.Linear(hidden_size, cfg.bottleneck)
        per_position = cfg.num_tokens * out_dim if cfg.generator == "npg" else out_dim
        self.up = nn.Linear(cfg.bottleneck, per_position)
        self.dropout = nn.Dropout(cfg.dropout)
        self.read_first = True  # "auto" pooling; set from the tokenizer in init_from_words

    def init_from_words(self, words, tokenizer) -> None:
        # a CLS token means an encoder that reads position 0; decoders read the last real token
        self.read_first = getattr(tokenizer, "cls_token", None) is not None

    def forward(self, inp: ProducerInput) -> torch.Tensor:
        if self.cfg.generator == "npg":
            s = self.up(torch.relu(self.down(self.npg_input(inp.hidden, inp.mask))))
            s = s.view(s.shape[0], self.cfg.num_tokens, self.out_dim)
        else:
            s = self.up(torch.relu(self.segment_pool(self.down(inp.hidden), inp.mask)))
        return self.dropout(s)

    def npg_input(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, d): the vector NPG projects."""
        pooling = self.cfg.pooling
        if pooling == "auto":
            pooling = "first" if self.read_first else "last"
        if pooling == "mean":
            return masked_mean(h, mask)
        if pooling == "max":
            return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).max(1).values
        length = mask.shape[1]
        if pooling == "first":
            pos = mask.long().argmax(1)
        else:
            pos = length - 1 - mask.flip(1).long().argmax(1)
        return h[torch.arange(h.shape[0], device=h.device), pos]

    def segment_pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, c) -> (B, t, c): each row's real tokens pooled into t adaptive segments."""
        pool = F.adaptive_avg_pool1d if self.cfg.generator == "appg" else F.adaptive_max_pool1d
        rows = [pool(x[b, mask[b]].T.unsqueeze(0), self.cfg.num_tokens) for b in range(x.shape[0])]
        return torch.cat(rows).transpose(1, 2)
