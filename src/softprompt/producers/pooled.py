"""Late Prompt Tuning generator (Liu et al. 2022): pooled hidden state at layer m -> down/up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput, masked_mean


@dataclass
class PooledConfig(ProducerConfig):
    bottleneck: int = 256
    pooling: Literal["mean", "max"] = "max"


class PooledPromptGenerator(Producer):
    kind = "pooled"
    config_class = PooledConfig
    input_dependent = True
    default_lrs = {"prompt": 5e-3}

    def __init__(self, cfg: PooledConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.down = nn.Linear(hidden_size, cfg.bottleneck)
        self.up = nn.Linear(cfg.bottleneck, cfg.num_tokens * out_dim)

    def forward(self, inp: ProducerInput) -> torch.Tensor:
        h, mask = inp.hidden, inp.mask
        if self.cfg.pooling == "max":
            pooled = h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).max(1).values
        else:
            pooled = masked_mean(h, mask)
        s = self.up(torch.tanh(self.down(pooled)))
        return s.view(s.shape[0], self.cfg.num_tokens, self.out_dim)
