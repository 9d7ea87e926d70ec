"""P-Tuning v1 prompt encoder (Liu et al. 2021): virtual-token embeddings through an LSTM or MLP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput
from softprompt.producers.static import StaticConfig, StaticPrompt


@dataclass
class EncoderConfig(ProducerConfig):
    encoder: Literal["lstm", "mlp"] = "mlp"
    hidden: int = 256


class PromptEncoder(Producer):
    kind = "encoder"
    config_class = EncoderConfig
    folds_to_static = True
    peft_exportable = True
    default_lrs = {"prompt": 1e-3}

    def __init__(self, cfg: EncoderConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.embedding = nn.Embedding(cfg.num_tokens, hidden_size)
        if cfg.encoder == "lstm":
            self.lstm = nn.LSTM(hidden_size, cfg.hidden // 2, num_layers=2, bidirectional=True, batch_first=True)
            first = cfg.hidden
        else:
            self.lstm = None
            first = hidden_size
        self.mlp = nn.Sequential(nn.Linear(first, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, out_dim))

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        x = self.embedding.weight.unsqueeze(0)
        if self.lstm is not None:
            x = self.lstm(x)[0]
        return self.mlp(x)

    @torch.no_grad()
    def fold(self) -> Producer:
        values = self.forward()[0].detach().clone()
        return StaticPrompt(StaticConfig(num_tokens=self.num_tokens), self.out_dim, self.hidden_size, values)
