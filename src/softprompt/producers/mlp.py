"""Reparameterised prompts: an embedding fed through an MLP (Prefix Tuning, Li & Liang 2021).

The MLP only helps optimisation; `fold()` materialises the vectors for inference/export.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput
from softprompt.producers.static import StaticConfig, StaticPrompt


@dataclass
class MLPConfig(ProducerConfig):
    embed_dim: int = 0  # 0: the model's hidden size
    hidden: int = 512


class MLPPrompt(Producer):
    kind = "mlp"
    config_class = MLPConfig
    folds_to_static = True
    peft_exportable = True
    default_lrs = {"prompt": 1e-3}

    def __init__(self, cfg: MLPConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        dim = cfg.embed_dim or hidden_size
        self.embedding = nn.Embedding(cfg.num_tokens, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, out_dim))

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return self.mlp(self.embedding.weight).unsqueeze(0)

    @torch.no_grad()
    def fold(self) -> Producer:
        values = self.forward()[0].detach().clone()
        return StaticPrompt(StaticConfig(num_tokens=self.num_tokens), self.out_dim, self.hidden_size, values)
