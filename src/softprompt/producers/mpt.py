"""Multitask Prompt Tuning (Wang et al., ICLR 2023; peft's MultitaskPromptTuning): a shared prompt times a
low-rank task matrix.

Sec. 3.1: P_k = P* ∘ W_k with W_k = u_k ⊗ v_k (u_k ∈ R^l, v_k ∈ R^d; ∘ the Hadamard product). peft
generalises W_k to rank r: W_k = U_k V_k, U_k (l, r), V_k (r, d), both N(0, 0.02²) at init. Target
adaptation (Sec. 3.2) starts P* from the shared prompt distilled on the source tasks and trains P*, u, v.
Here `shared_from` names a saved adapter: an `mpt` adapter gives P*, U and V (peft's EXACT_SOURCE_TASK for
its one task), a static prompt gives P* only (peft's ONLY_SOURCE_SHARED). The source-task distillation
(Sec. 3.1: one P* with per-task u_k, v_k trained jointly on the source tasks against single-task teacher
prompts) is `softprompt mpt-distill` (train/mpt_distill.py): its output folder holds P* with the mean of the
tasks' U, V (peft's AVERAGE_SOURCE_TASKS, the paper's target start), which `shared_from` reads, and each
task's student under tasks/<task> (EXACT_SOURCE_TASK).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from softprompt.errors import ConfigError
from softprompt.producers.base import Producer, ProducerInput
from softprompt.producers.static import StaticConfig, StaticPrompt, WordInitConfig, word_values
from softprompt.producers.transfer import read_producer_tensors


@dataclass
class MPTConfig(WordInitConfig):
    rank: int = 1  # the paper's rank-one u ⊗ v
    shared_from: str | None = None  # adapter folder: an mpt adapter (P*, U, V) or a static prompt (P*)
    init_std: float = 0.02  # U, V (peft), and P* when init is random

    def validate(self) -> None:
        super().validate()
        if self.rank < 1:
            raise ValueError("rank must be >= 1")

    def for_loading(self) -> "MPTConfig":
        return dataclasses.replace(self, shared_from=None)  # the saved weights replace the transfer


class MultitaskPrompt(Producer):
    kind = "mpt"
    config_class = MPTConfig
    folds_to_static = True
    peft_exportable = True  # peft's MULTITASK_PROMPT_TUNING (one task) on decoders and T5; folded on encoders
    default_lrs = {"prompt": 3e-1}  # the paper's target-adaptation learning rate for T5 prompt tuning

    def __init__(self, cfg: MPTConfig, out_dim: int, hidden_size: int):
        super().__init__(cfg, out_dim, hidden_size)
        self.shared = nn.Parameter(torch.randn(cfg.num_tokens, out_dim) * cfg.init_std)
        self.cols = nn.Parameter(torch.randn(cfg.num_tokens, cfg.rank) * cfg.init_std)
        self.rows = nn.Parameter(torch.randn(cfg.rank, out_dim) * cfg.init_std)

    def forward(self, inp: ProducerInput | None = None) -> torch.Tensor:
        return (self.shared * (self.cols @ self.rows)).unsqueeze(0)

    @torch.no_grad()
    def init_from_words(self, words, tokenizer) -> None:
        if self.cfg.shared_from is None:
            values = word_values(self.cfg, words, tokenizer)
            if values is not None:
                self.shared.copy_(values.to(self.shared.dtype))
            return
        found = read_producer_tensors(self.cfg.shared_from, "method.producer.shared_from", ("producer.shared", "producer.prompt"))
        for name, param in (("shared", self.shared), ("prompt", self.shared), ("cols", self.cols), ("rows", self.rows)):
            value = found.get(f"producer.{name}")
            if value is None:
                continue
            if value.shape != param.shape:
                raise ConfigError(f"method.producer.shared_from: {name} has shape {tuple(value.shape)}, "
                                  f"this method needs {tuple(param.shape)} (num_tokens, rank)")
            param.copy_(value.to(param.dtype))

    def fold(self) -> Producer:
        values = self.forward()[0].detach().clone()
        return StaticPrompt(StaticConfig(num_tokens=self.num_tokens), self.out_dim, self.hidden_size, values)
