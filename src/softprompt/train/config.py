"""Training configuration: every CLI flag maps to one of these keys (YAML or --flag)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from softprompt.errors import ConfigError

# learning rates by parameter group; prompt vectors need far higher rates than weights
DEFAULT_PROMPT_LR = {"mlp": 1e-3, "encoder": 1e-3, "attention": 5e-3, "pooled": 5e-3}  # others (vectors): 3e-2


@dataclass
class TrainConfig:
    backbone: str = "minilm-l6"
    task: str = "sst2"
    method: dict[str, Any] = field(default_factory=lambda: {"name": "id-spam"})
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
    lr: float | None = None  # prompt producer; None: 3e-2 for vectors, 5e-3 input-dependent generators, 1e-3 reparameterisations
    head_lr: float = 1e-3
    lowrank_lr: float = 1e-4  # DePT's A·B
    backbone_lr: float | None = None  # None: 5e-4 for LoRA, 2e-5 for full fine-tuning
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    adam_eps: float = 1e-6
    adam_betas: tuple[float, float] = (0.9, 0.98)
    max_grad_norm: float = 1.0
    max_length: int = 128
    eval_every: int = 0  # steps; 0 = once per epoch
    patience: int | None = None  # evaluations without improvement before stopping
    cache: Literal["auto", "none", "memory"] = "auto"
    cache_max_gb: float = 4.0
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
        if isinstance(self.method, str):
            self.method = {"name": self.method}

    @property
    def method_name(self) -> str:
        return self.method.get("name", "custom")

    def run_dir(self) -> str:
        return self.output_dir or f"runs/{self.task}-{self.method_name}-{self.backbone}-s{self.seed}"

    def group_lrs(self, producer_kind: str | None, backbone_mode: str) -> dict[str, float]:
        prompt = self.lr if self.lr is not None else DEFAULT_PROMPT_LR.get(producer_kind, 3e-2)
        backbone = self.backbone_lr if self.backbone_lr is not None else (5e-4 if backbone_mode == "lora" else 2e-5)
        return {"prompt": prompt, "lowrank": self.lowrank_lr, "head": self.head_lr, "backbone": backbone}
