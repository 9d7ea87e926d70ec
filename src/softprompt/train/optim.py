"""The optimizer every training path uses: AdamW over named parameter groups, linear warm-up/decay.

`softprompt train`, the peft baseline and the transformers-Trainer bridge all build it here, so the
project's settings (per-group learning rates, weight decay on matrices only, betas, eps, warm-up)
are the same everywhere. TrainConfig is the one place their defaults are written.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import get_linear_schedule_with_warmup

from softprompt.train.config import TrainConfig


@dataclass(frozen=True)
class OptimizerSettings:
    """TrainConfig's optimizer keys (same names and meaning)."""

    lr: float | None  # prompt producer; None: the producer class's `default_lrs`
    head_lr: float
    lowrank_lr: float | None  # DePT's A·B; None: the producer class's default
    backbone_lr: float | None  # None: 5e-4 for LoRA, 2e-5 for full fine-tuning
    weight_decay: float
    adam_betas: tuple[float, float]
    adam_eps: float
    warmup_ratio: float

    @classmethod
    def of(cls, cfg: Any) -> "OptimizerSettings":
        """The settings of a TrainConfig (or anything with the same attributes)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def defaults(cls, **changes: Any) -> "OptimizerSettings":
        """TrainConfig's defaults, with `changes`."""
        given = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        return cls(**{**{f.name: given[f.name] for f in dataclasses.fields(cls)}, **changes})

    def group_lrs(self, method) -> dict[str, float]:
        """Learning rate per parameter group of a SoftPromptModel with `method` (a MethodConfig)."""
        defaults = dict(method.producer_class.default_lrs) if method.producer is not None else {}
        chosen = {"prompt": self.lr, "lowrank": self.lowrank_lr}
        rates = {group: chosen[group] if chosen.get(group) is not None else lr for group, lr in defaults.items()}
        backbone = self.backbone_lr if self.backbone_lr is not None else (5e-4 if method.backbone == "lora" else 2e-5)
        return {**rates, "head": self.head_lr, "backbone": backbone}


def param_groups(named: dict[str, list[torch.nn.Parameter]], lrs: dict[str, float],
                 weight_decay: float) -> list[dict]:
    """AdamW groups: per name, its matrices with `weight_decay` then its vectors (biases, norms) without."""
    groups = []
    for name, params in named.items():
        decay = [p for p in params if p.dim() > 1]
        no_decay = [p for p in params if p.dim() <= 1]
        for ps, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if ps:
                groups.append({"params": ps, "lr": lrs[name], "weight_decay": wd, "name": name})
    return groups


def build_optimizer(named: dict[str, list[torch.nn.Parameter]], lrs: dict[str, float],
                    settings: OptimizerSettings) -> torch.optim.AdamW:
    """AdamW over `param_groups(named, lrs, ...)` with the settings' betas and eps."""
    return torch.optim.AdamW(param_groups(named, lrs, settings.weight_decay),
                             betas=tuple(settings.adam_betas), eps=settings.adam_eps)


def optimizer_steps(examples: int, batch_size: int, grad_accum: int, epochs: int) -> int:
    """Optimizer steps of a run: one per `grad_accum` batches, an epoch's last batches counting as one."""
    return math.ceil(math.ceil(examples / batch_size) / grad_accum) * epochs


def build_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    """Linear warm-up over `warmup_ratio` of the steps, then linear decay to 0."""
    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)
