"""ATTEMPT (Asai et al., EMNLP 2022): a per-instance mixture of frozen source prompts and a trainable target prompt.

Sec. 3.2 (reference code AkariAsai/ATTEMPT, attn_method "sub"), for an input X and prompts P_1..P_t (frozen
sources) and P_{t+1} = P_target (trainable), each (m, d):
  x_hat  = max-pool_i X_i                                   (input token embeddings)
  H_out  = LayerNorm(W_up SiLU(W_down x_hat))                (bottleneck r; no biases)
  p_hat_j = max-pool_l P_j,l
  a_j    = softmax_j(p_hat_j . H_out / T),   T = d e         (the code's 2087 for d = 768)
  P(x)   = P_target + sum_{j=1}^{t+1} a_j P_j
Sources come from adapter folders of prompts trained on source tasks (`sources`). Without them the method
builds with `placeholder_sources` frozen random prompts (it then transfers nothing; for shape and speed
checks). The max-pool skips padding (the reference code pools the padded batch).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from softprompt.errors import ConfigError
from softprompt.producers.base import Producer, ProducerInput
from softprompt.producers.static import WordInitConfig, word_values
from softprompt.producers.transfer import read_prompt


@dataclass
class AttemptConfig(WordInitConfig):
    init: Literal["random", "vocab", "labels", "text"] = "vocab"  # the target prompt (the reference's init_prefix_from_vocab)
    sources: list[str] = field(default_factory=list)  # adapter folders of source-task prompts (frozen)
    placeholder_sources: int = 2  # frozen random sources when `sources` is empty
    bottleneck: int = 100  # r of W_down / W_up (reference code)
    temperature: float | None = None  # None: d * e (the paper's T)
    init_std: float = 0.02  # placeholder sources

    def validate(self) -> None:
        super().validate()
        if self.bottleneck < 1 or self.placeholder_sources < 0:
            raise ValueError("bottleneck must be >= 1 and placeholder_sources >= 0")
        if not self.sources and self.placeholder_sources == 0:
            raise ValueError("sources: ATTEMPT needs source prompts (or placeholder_sources >= 1)")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError("temperature must be > 0")

    def for_loading(self) -> "AttemptConfig":
        """A saved adapter holds its sources: rebuild with as many placeholders, then load them."""
        if not self.sources:
            return self
        return dataclasses.replace(self, sources=[], placeholder_sources=len(self.sources))


class AttemptPromptGenerator(Producer):
    kind = "attempt"
    config_class = AttemptConfig
    input_dependent = True
    default_lrs = {"prompt": 3e-1, "attention": 1e-1}  # reference config: learning_rate / attn_learning_rate

    def __init__(self, cfg: AttemptConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.target = nn.Parameter(torch.randn(cfg.num_tokens, out_dim) * cfg.init_std)
        count = len(cfg.sources) or cfg.placeholder_sources
        self.register_buffer("sources", torch.randn(count, cfg.num_tokens, out_dim) * cfg.init_std)
        self.down = nn.Linear(hidden_size, cfg.bottleneck, bias=False)
        self.up = nn.Linear(cfg.bottleneck, out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)
        self.temperature = cfg.temperature or out_dim * math.e

    @torch.no_grad()
    def init_from_words(self, words, tokenizer) -> None:
        values = word_values(self.cfg, words, tokenizer)
        if values is not None:
            self.target.copy_(values.to(self.target.dtype))
        for i, folder in enumerate(self.cfg.sources):
            prompt = read_prompt(folder, "method.producer.sources")
            if tuple(prompt.shape) != tuple(self.target.shape):
                raise ConfigError(f"method.producer.sources: {folder!r} has a prompt of shape {tuple(prompt.shape)}, "
                                  f"the target prompt is {tuple(self.target.shape)} (num_tokens must match)")
            self.sources[i] = prompt.to(self.sources.dtype)

    def weights(self, inp: ProducerInput) -> torch.Tensor:
        """a (B, t+1): each instance's attention over the sources and the target."""
        x = inp.token_embeds.masked_fill(~inp.mask.unsqueeze(-1), torch.finfo(inp.token_embeds.dtype).min)
        h = self.norm(self.up(F.silu(self.down(x.max(1).values))))  # (B, d)
        keys = self.prompts().max(1).values  # (t+1, d)
        return torch.softmax(h @ keys.T / self.temperature, -1)

    def prompts(self) -> torch.Tensor:
        return torch.cat([self.sources, self.target.unsqueeze(0)])  # (t+1, m, d)

    def forward(self, inp: ProducerInput) -> torch.Tensor:
        return self.target + torch.einsum("bj,jmd->bmd", self.weights(inp), self.prompts())

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"prompt": [self.target], "attention": [*self.down.parameters(), *self.up.parameters(),
                                                       *self.norm.parameters()]}
