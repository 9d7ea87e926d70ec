"""SMoP (Choi et al. 2023; reference: github.com/jyjohnchoi/SMoP, peft_models/tuners/prompt_routing.py).

k short prompts P_1..P_k (t tokens each) and a linear router without bias (orthogonal init):

  z = W_r mean(E(x))                       masked mean of the input token embeddings
  z <- z + sigma * eps * (sigma * z)       training only, eps ~ N(0, 1), z detached in the scale
  p = softmax(z);  S = sum_{j in top-k(p)} p_j P_j      -> t x d (top-1: p_j P_j)

The scaled ("relative") noise is the reference's GaussianNoise with sigma = 1; `noise: none`
switches it off. Prompts start N(0, init_std^2); the reference's nn.Embedding gives N(0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput, masked_mean


@dataclass
class RouterConfig(ProducerConfig):
    num_tokens: int = 5  # tokens per short prompt
    num_prompts: int = 4
    top_k: int = 1
    noise: Literal["relative", "none"] = "relative"
    noise_std: float = 1.0  # sigma
    init_std: float = 1.0

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.top_k <= self.num_prompts:
            raise ValueError(f"top_k must be in 1..num_prompts ({self.num_prompts})")
        if self.noise_std < 0:
            raise ValueError("noise_std must be >= 0")


class RoutedPrompt(Producer):
    kind = "router"
    config_class = RouterConfig
    input_dependent = True
    default_lrs = {"prompt": 3e-2}

    def __init__(self, cfg: RouterConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.prompts = nn.Parameter(torch.randn(cfg.num_prompts, cfg.num_tokens, out_dim) * cfg.init_std)
        self.router = nn.Linear(hidden_size, cfg.num_prompts, bias=False)
        nn.init.orthogonal_(self.router.weight)

    def route(self, inp: ProducerInput) -> torch.Tensor:
        """Router probabilities (B, k)."""
        logits = self.router(masked_mean(inp.token_embeds, inp.mask))
        sigma = self.cfg.noise_std
        if self.training and self.cfg.noise == "relative" and sigma > 0:
            logits = logits + sigma * torch.randn_like(logits) * (sigma * logits.detach())
        return logits.softmax(-1)

    def forward(self, inp: ProducerInput) -> torch.Tensor:
        top_p, top_i = self.route(inp).topk(self.cfg.top_k, dim=-1)  # (B, k)
        chosen = self.prompts[top_i] * top_p[..., None, None].to(self.prompts.dtype)  # (B, k, t, D)
        return chosen.sum(1)
