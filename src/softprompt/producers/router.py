"""SMoP (Choi et al. 2023): k short prompts and a router; each example gets its own prompt.

The router scores the masked mean of the input token embeddings; with top-k > 1 the chosen
prompts are concatenated. Chosen prompts are scaled by their router probability so the
router learns; Gaussian noise on the logits during training spreads the load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput, masked_mean


@dataclass
class RouterConfig(ProducerConfig):
    num_tokens: int = 5  # tokens per short prompt
    num_prompts: int = 4
    top_k: int = 1
    noise_std: float = 1.0
    init_std: float = 0.02

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.top_k <= self.num_prompts:
            raise ValueError(f"top_k must be in 1..num_prompts ({self.num_prompts})")


class RoutedPrompt(Producer):
    kind = "router"
    config_class = RouterConfig
    input_dependent = True

    def __init__(self, cfg: RouterConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.prompts = nn.Parameter(torch.randn(cfg.num_prompts, cfg.num_tokens, out_dim) * cfg.init_std)
        self.router = nn.Linear(hidden_size, cfg.num_prompts)

    @property
    def num_tokens(self) -> int:
        return self.cfg.num_tokens * self.cfg.top_k

    def route(self, inp: ProducerInput) -> torch.Tensor:
        """Router probabilities (B, k)."""
        logits = self.router(masked_mean(inp.token_embeds, inp.mask))
        if self.training and self.cfg.noise_std > 0:
            logits = logits + torch.randn_like(logits) * self.cfg.noise_std
        return logits.softmax(-1)

    def forward(self, inp: ProducerInput) -> torch.Tensor:
        probs = self.route(inp)
        top_p, top_i = probs.topk(self.cfg.top_k, dim=-1)  # (B, k)
        chosen = self.prompts[top_i]  # (B, k, t, D)
        chosen = chosen * top_p[..., None, None].to(chosen.dtype)
        return chosen.flatten(1, 2)
