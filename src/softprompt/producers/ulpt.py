"""ULPT (Wu, Hao & Mou, EACL 2026, "Ultra-Low-Dimensional Prompt Tuning via Random Projection";
reference: github.com/MANGA-UOFA/ULPT, peft/tuners/prompt_tuning_lodim.py).

The prompt is learned in r dimensions and lifted by a frozen random matrix, then aligned by a
learned per-dimension scale s and shift b (both d-vectors shared by every prompt token):

  E = (Z P~) * s + b            Z: n x r (trained), P~: r x d (frozen), s, b: d (trained)

i.e. e_ij = s_j sum_k z_ik p~_kj + b_j; trainable parameters n r + 2 d. Initialisation as the
reference: Z ~ N(0, 1) (its nn.Embedding), P~ ~ U(-a, a) with a = sqrt(6 / (r + d)) (Xavier-uniform
for an r x d matrix), s = 1, b = 0. P~ is a buffer: it gets no gradient, is drawn from the run's
seeded generator and saved with the adapter (r d numbers), so a loaded adapter has the same one.
Defaults: n = 100, r = 2 (the reference run script), learning rate 6e-1 (its T5 GLUE script).
`fold()` gives the fixed n x d prompt (same values), so serving and export treat it as prompt tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput
from softprompt.producers.static import StaticConfig, StaticPrompt


@dataclass
class ULPTConfig(ProducerConfig):
    num_tokens: int = 100  # n
    rank: int = 2  # r, the prompt's dimension before the up-projection
    init_std: float = 1.0  # Z ~ N(0, init_std^2); the reference's nn.Embedding: 1

    def validate(self) -> None:
        super().validate()
        if self.rank < 1:
            raise ValueError("rank must be >= 1")
        if self.init_std <= 0:
            raise ValueError("init_std must be > 0")


def projection_bound(rank: int, dim: int) -> float:
    """a of P~ ~ U(-a, a): Xavier-uniform for an r x d matrix, sqrt(6 / (r + d))."""
    return math.sqrt(6.0 / (rank + dim))


class ULPTPrompt(Producer):
    kind = "ulpt"
    config_class = ULPTConfig
    folds_to_static = True
    peft_exportable = True  # its folded prompt is a prompt-tuning prompt
    default_lrs = {"prompt": 6e-1}  # reference T5 GLUE script (its Llama runs: 1e-3)

    def __init__(self, cfg: ULPTConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.z = nn.Parameter(torch.randn(cfg.num_tokens, cfg.rank) * cfg.init_std)
        bound = projection_bound(cfg.rank, out_dim)
        self.register_buffer("projection", torch.empty(cfg.rank, out_dim).uniform_(-bound, bound))
        self.scale = nn.Parameter(torch.ones(out_dim))
        self.shift = nn.Parameter(torch.zeros(out_dim))

    def prompt(self) -> torch.Tensor:
        """(n, d): (Z P~) * s + b."""
        return (self.z @ self.projection) * self.scale + self.shift

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return self.prompt().unsqueeze(0)

    @torch.no_grad()
    def fold(self) -> Producer:
        values = self.prompt().detach().clone()
        return StaticPrompt(StaticConfig(num_tokens=self.num_tokens), self.out_dim, self.hidden_size, values)
