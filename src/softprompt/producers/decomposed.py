"""DePT (Shi & Lipani 2024; reference: github.com/ZhengxiangShi/DePT, peft/tuners/prompt_tuning_lora.py).

A shorter prompt (m tokens) plus a low-rank, position-wise update of the input embeddings:

  E'(x)_i = E(x)_i + (alpha / sqrt(r)) (A B)_i      A: s x r (s = the run's max_length), B: r x d

A starts Kaiming-uniform (U(-1/sqrt(r), 1/sqrt(r))), B at zero, as in the reference. The pair
has its own parameter group ("lowrank") so it gets its own learning rate. `rank: null` sizes r
by the paper's equal-budget rule, m d + r (s + d) = budget_tokens d (vanilla PT with 100 tokens;
the reference's T5-base runs: m 60, r 30 at s 256; r 24 at s 512).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from softprompt.errors import ConfigError
from softprompt.producers.base import ProducerInput
from softprompt.producers.static import StaticConfig, StaticPrompt


def check_rank_budget(rank: int | None, budget_tokens: int, num_tokens: int) -> None:
    """DePT/ADePT: an explicit rank >= 1, or the equal-budget rule, which needs budget_tokens > num_tokens."""
    if rank is not None and rank < 1:
        raise ValueError("rank must be >= 1 (or null for the equal-budget rule)")
    if rank is None and budget_tokens <= num_tokens:
        raise ValueError(f"budget_tokens ({budget_tokens}) must exceed num_tokens ({num_tokens})")


@dataclass
class DecomposedConfig(StaticConfig):
    num_tokens: int = 60  # m
    rank: int | None = None  # r; None: the equal-budget rule above
    budget_tokens: int = 100  # vanilla PT length whose parameter count DePT keeps
    alpha: float = 8.0  # update scale alpha / sqrt(r) (reference lora_alpha)
    max_length: int | None = None  # s, rows of A; None: the run's max_length, filled by fit()

    def validate(self) -> None:
        super().validate()
        check_rank_budget(self.rank, self.budget_tokens, self.num_tokens)
        if self.max_length is not None and self.max_length < 1:
            raise ValueError("max_length must be >= 1")

    def fit(self, max_length: int) -> "DecomposedConfig":
        return self if self.max_length is not None else dataclasses.replace(self, max_length=max_length)


def budget_rank(cfg: DecomposedConfig, dim: int) -> int:
    """r with m d + r (s + d) = budget_tokens d (at least 1)."""
    return max(1, round((cfg.budget_tokens - cfg.num_tokens) * dim / (cfg.max_length + dim)))


class DecomposedPrompt(StaticPrompt):
    kind = "decomposed"
    config_class = DecomposedConfig
    edits_embeddings = True
    peft_exportable = False
    default_lrs = {"prompt": 3e-1, "lowrank": 5e-3}  # reference grid: {3e-1, 4e-1} x {5e-4, 5e-3, 3e-1}

    def __init__(self, cfg: DecomposedConfig, out_dim: int, hidden_size: int):
        if cfg.max_length is None:
            raise ConfigError(
                "method.producer.max_length: DePT sizes A by the input length but none is set; "
                "fill it with `producer_config.fit(max_length)` (the trainer passes its max_length) or set it"
            )
        super().__init__(cfg, out_dim, hidden_size)
        self.rank = cfg.rank if cfg.rank is not None else budget_rank(cfg, hidden_size)
        self.scaling = cfg.alpha / math.sqrt(self.rank)
        self.lora_a = nn.Parameter(torch.empty(cfg.max_length, self.rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.lora_b = nn.Parameter(torch.zeros(self.rank, hidden_size))

    @property
    def max_input_tokens(self) -> int:
        return self.cfg.max_length

    def update(self) -> torch.Tensor:
        """(s, d): the scaled position-wise embedding update."""
        return self.scaling * (self.lora_a @ self.lora_b)

    def adjust_embeddings(self, token_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = token_embeds.shape[1]
        if length > self.cfg.max_length:
            raise ValueError(f"DePT max_length {self.cfg.max_length} < sequence length {length}")
        # position along each row's text (left padding shifts it)
        pos = (mask.long().cumsum(1) - 1).clamp(min=0)
        update = self.update()[pos]  # (B, T, d)
        return token_embeds + update.to(token_embeds.dtype) * mask.unsqueeze(-1).to(token_embeds.dtype)

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return self.prompt.unsqueeze(0)

    def param_groups(self):
        return {"prompt": [self.prompt], "lowrank": [self.lora_a, self.lora_b]}

    def fold(self):
        return self
