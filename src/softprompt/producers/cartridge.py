"""Cartridges (Eyuboglu et al. 2025, "Cartridges: Lightweight and general-purpose long context representations
via self-study"; peft's CartridgeConfig): a trainable key/value cache, initialised from a real prefill.

At the key/value site the prompt is the cache itself, t positions x layers x 2 x kv heads x head_dim, trained
directly (no reparameterisation). Init (the paper's initialisation ablation: the KV cache of the first t tokens
of the corpus, its best option; peft's `initialize_kv_prefix_from_text`): the keys/values the frozen model computes for the first
`num_tokens` tokens of `init_text`, read as the model reads a text (special tokens included: a decoder's BOS
comes first), so at step 0 the cartridge is exactly that text written before the input. The first
`frozen_tokens` positions stay fixed (the paper freezes the first token, the attention sink; peft's
`num_frozen_tokens=1`). Encoder-decoders: the encoder's prefixes come from the text, the decoder's start random.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from softprompt.errors import ConfigError
from softprompt.producers.base import Producer, ProducerConfig, ProducerInput


@dataclass
class CartridgeConfig(ProducerConfig):
    init: Literal["prefill", "random"] = "prefill"
    init_text: str | None = None  # init "prefill": the text whose first num_tokens tokens are prefilled
    frozen_tokens: int = 1  # leading positions kept fixed (the attention sink)
    init_std: float = 0.02  # init "random", and an encoder-decoder's decoder prefixes

    def validate(self) -> None:
        super().validate()
        if self.init == "prefill" and not self.init_text:
            raise ValueError("init_text: init 'prefill' needs the text to prefill")
        if not 0 <= self.frozen_tokens <= self.num_tokens:
            raise ValueError(f"frozen_tokens must be in 0..num_tokens ({self.num_tokens}), got {self.frozen_tokens}")


class CartridgePrompt(Producer):
    kind = "cartridge"
    config_class = CartridgeConfig
    peft_exportable = True  # peft's CARTRIDGE (sink rows = its frozen_embedding, num_frozen_tokens = frozen_tokens)

    def __init__(self, cfg: CartridgeConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        values = torch.randn(cfg.num_tokens, out_dim) * cfg.init_std
        self.register_buffer("sink", values[: cfg.frozen_tokens].clone())  # saved with the adapter, never trained
        self.prompt = nn.Parameter(values[cfg.frozen_tokens:].clone())

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return torch.cat([self.sink, self.prompt]).unsqueeze(0)

    @torch.no_grad()
    def init_from_words(self, words, tokenizer) -> None:
        if self.cfg.init == "random":
            return
        ids = prefill_ids(tokenizer, self.cfg.init_text, self.num_tokens)
        values = words(ids, partial=True).to(self.prompt.dtype)  # (t, <= out_dim): leading columns
        width, cut = values.shape[1], self.cfg.frozen_tokens
        self.sink[:, :width] = values[:cut]
        self.prompt[:, :width] = values[cut:]


def prefill_ids(tokenizer, text: str, n: int) -> torch.Tensor:
    """The first n tokens of `text` as the model reads it (with its special tokens)."""
    ids = tokenizer(text)["input_ids"]
    if len(ids) < n:
        raise ConfigError(f"method.producer.init_text: has {len(ids)} tokens, fewer than num_tokens ({n})")
    return torch.tensor(ids[:n])
