"""Static prompt vectors (Prompt Tuning, Lester et al. 2021; P-Tuning v2's deep prompts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from softprompt.producers.base import Producer, ProducerConfig, ProducerInput


@dataclass
class StaticConfig(ProducerConfig):
    init: Literal["random", "vocab", "text"] = "random"
    init_text: str | None = None
    init_std: float = 0.02

    def validate(self) -> None:
        super().validate()
        if self.init == "text" and not self.init_text:
            raise ValueError("init: text needs init_text")


class StaticPrompt(Producer):
    kind = "static"
    config_class = StaticConfig
    peft_exportable = True

    def __init__(self, cfg: StaticConfig, out_dim: int, hidden_size: int, values: torch.Tensor | None = None):
        super().__init__(cfg, out_dim, hidden_size)
        self.prompt = nn.Parameter(torch.randn(cfg.num_tokens, out_dim) * cfg.init_std if values is None else values)

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return self.prompt.unsqueeze(0)

    @torch.no_grad()
    def init_from_embeddings(self, embedding: nn.Embedding, tokenizer) -> None:
        cfg: StaticConfig = self.cfg
        if cfg.init == "random":
            return
        if embedding.weight.shape[1] != self.out_dim:
            raise ValueError(f"init {cfg.init!r} needs prompts in embedding space (dim {self.out_dim})")
        if cfg.init == "vocab":
            gen = torch.Generator().manual_seed(0)
            ids = torch.randint(0, min(5000, embedding.num_embeddings), (cfg.num_tokens,), generator=gen)
        else:
            ids = torch.tensor(tokenizer(cfg.init_text, add_special_tokens=False)["input_ids"])
            if len(ids) == 0:
                raise ValueError(f"init_text {cfg.init_text!r} has no tokens")
            ids = ids.repeat((cfg.num_tokens + len(ids) - 1) // len(ids))[: cfg.num_tokens]
        # call the module, not .weight: some embeddings scale their output (Gemma: x sqrt(d))
        self.prompt.copy_(embedding(ids.to(embedding.weight.device)).to(self.prompt.dtype))
