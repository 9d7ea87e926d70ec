"""LLaMA-Adapter's adaption prompts (Zhang et al. 2023; peft's AdaptionPrompt): per adapted layer, t learnable
vectors in the hidden space and a zero-initialised gate.

The adaption site (sites/adaption.py) projects each layer's vectors with that layer's frozen key/value
projections and adds g · softmax(q K_pᵀ · s) V_p to its attention output; with g = 0 at init the model's
output is unchanged at step 0 (Sec. 3.2, "zero-init attention"). The prompts start N(0, 1), as in the
reference code's nn.Embedding and peft. Output layout, as the site reads it: per layer [t x D prompt | gate],
the gate repeated on every token (the site reads token 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from softprompt.errors import ConfigError
from softprompt.producers.base import Producer, ProducerConfig, ProducerInput


@dataclass
class AdaptionConfig(ProducerConfig):
    init_std: float = 1.0  # nn.Embedding's default, as the reference code and peft


class AdaptionPrompt(Producer):
    kind = "adaption"
    config_class = AdaptionConfig
    peft_exportable = True  # peft's ADAPTION_PROMPT (Llama, Mistral, GPT-2)

    def __init__(self, cfg: AdaptionConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        if out_dim % (hidden_size + 1):
            raise ConfigError(f"method.producer.kind: 'adaption' makes [prompt | gate] blocks of {hidden_size} + 1 "
                              f"per layer for the adaption site; this site asks for {out_dim} columns")
        self.num_layers = out_dim // (hidden_size + 1)
        self.prompt = nn.Parameter(torch.randn(cfg.num_tokens, self.num_layers, hidden_size) * cfg.init_std)
        self.gate = nn.Parameter(torch.zeros(self.num_layers))

    @classmethod
    def input_dim(cls, cfg: ProducerConfig, token_dim: int, state_dim: int) -> int:
        return state_dim  # its vectors live in the hidden space the attention projections read

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        t = self.num_tokens
        gates = self.gate.to(self.prompt.dtype)[None, :, None].expand(t, -1, 1)
        return torch.cat([self.prompt, gates], dim=-1).reshape(1, t, self.out_dim)
