"""Training configuration: every CLI flag maps to one of these keys (YAML or --flag)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from softprompt.errors import ConfigError
from softprompt.backbones.registry import layer_count
from softprompt.methods import MethodConfig, method_config



@dataclass
class TrainConfig:
    backbone: str = "minilm-l6"
    task: str = "sst2"
    method: MethodConfig = field(default_factory=lambda: method_config("id-spam"))  # a preset name, or a dict
    data_dir: str | None = None
    output_dir: str | None = None  # default: runs/<task>-<method>-<backbone>-s<seed>
    train_limit: int | None = None
    eval_limit: int | None = None  # caps both evaluation splits (selection and the reported one)
    eval_split: str = "validation"  # the split reported (summary.json "test"); never used for selection by default
    # the split that picks the best checkpoint / early stopping: "carved" = 10% of the training rows
    # (at most 1,000, stratified, fixed seed; see train/splits.py), or another named split of the task
    selection_split: str = "carved"
    seed: int = 0
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    grad_accum: int = 1
    lr: float | None = None  # prompt producer; None: the producer class's default (`default_lrs`)
    head_lr: float = 1e-3
    lowrank_lr: float | None = None  # DePT's A·B; None: the producer class's default
    backbone_lr: float | None = None  # None: 5e-4 for LoRA, 2e-5 for full fine-tuning
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    adam_eps: float = 1e-6
    adam_betas: tuple[float, float] = (0.9, 0.98)
    max_grad_norm: float = 1.0
    max_length: int = 128
    eval_every: int = 0  # steps; 0 = once per epoch
    patience: int | None = None  # evaluations without gain before stopping (counted after the first gain)
    cache: Literal["auto", "none", "memory"] = "auto"
    cache_max_gb: float = 4.0
    backbone_dropout: bool = True  # dropout on in the frozen layers gradients flow through (as peft and the papers)
    chat_template: bool = False  # generation tasks: source as the chat template's user turn, target as the answer
    gradient_checkpointing: bool = False  # recompute layer activations in the backward pass (less memory)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    checkpoint_every: int = 100  # steps; 0 = only at evaluations
    keep_checkpoints: int = 2
    log_every: int = 10
    bucket: bool = True
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self):
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "eval_batch_size": self.eval_batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "max_length": self.max_length >= 8,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "keep_checkpoints": self.keep_checkpoints >= 1,
            "train_limit": self.train_limit is None or self.train_limit >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"train config: invalid value for {', '.join(bad)}")
        self.method = MethodConfig.from_value(self.method)
        # bound to the backbone here when its layer count is known without loading it (errors name the
        # field before anything loads); otherwise the model resolves it once the backbone is loaded
        layers = layer_count(self.backbone)
        self.resolved_method = None if layers is None else self.method.resolve(layers, self.max_length, self.backbone)

    @property
    def method_name(self) -> str:
        return self.method.name

    def run_dir(self) -> str:
        return self.output_dir or f"runs/{self.task}-{self.method_name}-{self.backbone}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        plain = {k: str(v) if isinstance(v, os.PathLike) else v for k, v in dataclasses.asdict(self).items()}
        return {**plain, "method": self.method.to_dict()}
