"""ADePT (Tang, Hu & Liu, ICLR 2025; reference: github.com/HungerPWAY/ADePT, peft/peft_model.py
PROMPT_TUNING_LORAX with peft/tuners/prompt_tuning_lorax.py).

DePT's shorter prompt (m tokens) plus an offset of every input token embedding, made by one
feed-forward network shared by all tokens (DePT's offset is a learned row per position instead):

  E'(x)_i = E(x)_i + ReLU(dropout(E(x)_i A + a)) B + b      A: d x r, a: r, B: r x d, b: d

so a token's offset depends on the token, not on where it stands, and any input length works.
Initialisation as the reference: A Kaiming-uniform with a = sqrt(5) on the d x r tensor, i.e.
U(-1/sqrt(r), 1/sqrt(r)); B, a and b zero, so E' = E at step 0. Dropout 0.1 on the hidden
pre-activation in training. No alpha/r scaling (the reference computes one but does not use it).
`rank: null` keeps vanilla PT's budget: the largest r with m d + 2 d r + r + d <= budget_tokens d
(reference T5-base runs: m 60, r 19 at d 768). The FFN has its own parameter group ("lowrank").
The prompt starts from the DePT text, as the reference's default `prompt_tuning_init_text`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from softprompt.producers.base import ProducerInput
from softprompt.producers.decomposed import check_rank_budget
from softprompt.producers.static import StaticConfig, StaticPrompt


@dataclass
class ADePTConfig(StaticConfig):
    num_tokens: int = 60  # m
    rank: int | None = None  # r, the FFN's hidden width; None: the equal-budget rule above
    budget_tokens: int = 100  # vanilla PT length whose parameter count ADePT keeps
    dropout: float = 0.1  # on the FFN's hidden pre-activation (training only)

    def validate(self) -> None:
        super().validate()
        check_rank_budget(self.rank, self.budget_tokens, self.num_tokens)
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")


def budget_rank(cfg: ADePTConfig, prompt_dim: int, dim: int) -> int:
    """The largest r with m D + 2 d r + r + d <= budget_tokens D (at least 1); D prompt width, d token width."""
    return max(1, math.floor(((cfg.budget_tokens - cfg.num_tokens) * prompt_dim - dim) / (2 * dim + 1)))


class ADePTPrompt(StaticPrompt):
    kind = "adept"
    config_class = ADePTConfig
    edits_embeddings = True
    peft_exportable = False
    default_lrs = {"prompt": 3e-1, "lowrank": 1e-4}  # reference README: prompt {3e-1, 4e-1}, FFN 1e-4

    def __init__(self, cfg: ADePTConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.rank = cfg.rank if cfg.rank is not None else budget_rank(cfg, out_dim, hidden_size)
        self.ffn_a = nn.Parameter(torch.empty(hidden_size, self.rank))
        nn.init.kaiming_uniform_(self.ffn_a, a=math.sqrt(5))  # fan_in = r on a d x r tensor
        self.ffn_a_bias = nn.Parameter(torch.zeros(self.rank))
        self.ffn_b = nn.Parameter(torch.zeros(self.rank, hidden_size))
        self.ffn_b_bias = nn.Parameter(torch.zeros(hidden_size))
        self.dropout = nn.Dropout(cfg.dropout)

    def offset(self, token_embeds: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., d): ReLU(dropout(e A + a)) B + b, the same network for every token."""
        hidden = self.dropout(token_embeds @ self.ffn_a.to(token_embeds.dtype) + self.ffn_a_bias.to(token_embeds.dtype))
        return torch.relu(hidden) @ self.ffn_b.to(token_embeds.dtype) + self.ffn_b_bias.to(token_embeds.dtype)

    def adjust_embeddings(self, token_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return token_embeds + self.offset(token_embeds) * mask.unsqueeze(-1).to(token_embeds.dtype)

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return self.prompt.unsqueeze(0)

    def param_groups(self):
        return {"prompt": [self.prompt], "lowrank": [self.ffn_a, self.ffn_a_bias, self.ffn_b, self.ffn_b_bias]}

    def fold(self):
        return self
