"""Reparameterised prompts: an embedding fed through an MLP (Prefix Tuning, Li & Liang 2021).

The MLP only helps optimisation; `fold()` materialises the vectors for inference/export.
Init from real words (Sec. 7.2; the reference code's low-data init): the MLP is fitted by Adam
on the mean squared error between its output and the words' activations at the site (the
frozen model's keys/values for prefix tuning), `init_steps` steps at `init_lr` (their 500 / 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerInput
from softprompt.producers.static import StaticConfig, StaticPrompt, WordInitConfig, word_values


@dataclass
class MLPConfig(WordInitConfig):
    embed_dim: int = 0  # 0: the model's hidden size
    hidden: int = 512
    init_steps: int = 500
    init_lr: float = 1e-4

    def validate(self) -> None:
        super().validate()
        if self.init_steps < 1 or self.init_lr <= 0:
            raise ValueError("init_steps must be >= 1 and init_lr > 0")


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
        self.init_fit: tuple[float, float] | None = None  # word-init MSE (first step, last step)

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return self.mlp(self.embedding.weight).unsqueeze(0)

    def init_from_words(self, words, tokenizer) -> None:
        target = word_values(self.cfg, words, tokenizer)
        if target is None:
            return
        self.to(target.device)  # fitted where the frozen model runs (a GPU for big models)
        target = target.to(self.embedding.weight.dtype)
        opt = torch.optim.Adam(self.mlp.parameters(), lr=self.cfg.init_lr)  # the embedding stays as drawn
        for step in range(self.cfg.init_steps):
            loss = nn.functional.mse_loss(self.forward()[0], target)
            first = loss.item() if step == 0 else first  # one host sync at each end, not per step
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.init_fit = (first, loss.item())

    @torch.no_grad()
    def fold(self) -> Producer:
        values = self.forward()[0].detach().clone()
        return StaticPrompt(StaticConfig(num_tokens=self.num_tokens), self.out_dim, self.hidden_size, values)
