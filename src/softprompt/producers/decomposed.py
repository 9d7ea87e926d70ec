"""DePT (Shi & Lipani 2024): a shorter prompt plus a low-rank update A·B of the input embeddings.

A (max_length x r) and B (r x d) add a position-wise update to the token embeddings; the
pair has its own parameter group so it can get its own learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softprompt.producers.base import ProducerInput
from softprompt.producers.static import StaticConfig, StaticPrompt


@dataclass
class DecomposedConfig(StaticConfig):
    num_tokens: int = 6
    rank: int = 45
    max_length: int = 512


class DecomposedPrompt(StaticPrompt):
    kind = "decomposed"
    config_class = DecomposedConfig
    edits_embeddings = True
    peft_exportable = False
    default_lrs = {"prompt": 3e-2, "lowrank": 1e-4}

    def __init__(self, cfg: DecomposedConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.lora_a = nn.Parameter(torch.randn(cfg.max_length, cfg.rank) * (1.0 / cfg.rank) ** 0.5)
        self.lora_b = nn.Parameter(torch.zeros(cfg.rank, hidden_size))

    def adjust_embeddings(self, token_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = token_embeds.shape[1]
        if length > self.cfg.max_length:
            raise ValueError(f"DePT max_length {self.cfg.max_length} < sequence length {length}")
        # position along each row's text (left padding shifts it)
        pos = (mask.long().cumsum(1) - 1).clamp(min=0)
        update = (self.lora_a @ self.lora_b)[pos]  # (B, T, d)
        return token_embeds + update.to(token_embeds.dtype) * mask.unsqueeze(-1).to(token_embeds.dtype)

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return self.prompt.unsqueeze(0)

    def param_groups(self):
        return {"prompt": [self.prompt], "lowrank": [self.lora_a, self.lora_b]}

    def fold(self):
        return self
