"""Training configuration: every CLI flag maps to one of these keys (YAML or --flag)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

from softprompt.backbones.registry import layer_count
from softprompt.config import option
from softprompt.errors import ConfigError
from softprompt.methods import PRESETS, MethodConfig, method_config
from softprompt.tasks import TASKS



@dataclass
class TrainConfig:
    """One training run. Each field is a YAML key and a `softprompt train --flag`; its `help` is the reference."""

    backbone: str = option("minilm-l6", help=(
        "the frozen base model: a short name (`softprompt models` lists them), a local model folder or a "
        "Hugging Face hub id"))
    task: str = option("sst2", help="the task to train on", values=", ".join(TASKS))
    method: MethodConfig = option(
        default_factory=lambda: method_config("id-spam"), shown_default="id-spam",
        help=("what is trained: a preset name, or a YAML mapping that may name a preset and override its "
              "parts (name, producer, site, head, backbone, lora, zero_shot), e.g. "
              "'{name: prompt-tuning, producer: {num_tokens: 20}}'"),
        values=f"{', '.join(PRESETS)}, custom, or a mapping")
    data_dir: str | None = option(None, help="the benchmark data folder",
                                  unset="$SOFTPROMPT_DATA, else the Hugging Face hub")
    output_dir: str | None = option(None, help="the run folder (checkpoints, adapter/, summary.json)",
                                    unset="runs/<task>-<method>-<backbone>-s<seed>")
    train_limit: int | None = option(None, unit="examples", unset="all", help=(
        "use at most this many training examples (a seeded subsample; the carved selection split comes out "
        "of them)"))
    eval_limit: int | None = option(None, unit="examples", unset="all", help=(
        "cap both evaluation splits (the selection split and the reported one) at this many examples"))
    eval_split: str = option("validation", help=(
        "the split reported as the run's score (summary.json 'test'); never used to pick checkpoints"))
    selection_split: str = option("carved", help=(
        "the split that picks the best checkpoint and drives early stopping: 'carved' = 10% of the training "
        "rows (at most 1,000, stratified, fixed seed), or another named split of the task"))
    seed: int = option(0, help="random seed for initialisation, data order and subsampling")
    epochs: int = option(3, unit="epochs", help="passes over the training data (>= 1)")
    batch_size: int = option(32, unit="examples per device", help="training batch size (>= 1)")
    eval_batch_size: int = option(64, unit="examples", help="batch size for evaluation (>= 1)")
    grad_accum: int = option(1, unit="batches", help=(
        "gradient accumulation: batches summed before each optimizer step (>= 1)"))
    lr: float | None = option(None, help="learning rate of the prompt producer",
                              unset="the producer class's default")
    head_lr: float = option(1e-3, help="learning rate of the classification head")
    lowrank_lr: float | None = option(None, help="learning rate of DePT's low-rank embedding update A·B",
                                      unset="the producer class's default")
    backbone_lr: float | None = option(None, help="learning rate of the backbone's weights when the method trains them",
                                       unset="5e-4 for LoRA, 2e-5 for full fine-tuning")
    weight_decay: float = option(0.01, help="AdamW weight decay (decoupled)")
    warmup_ratio: float = option(0.06, unit="fraction of all optimizer steps", help=(
        "linear learning-rate warm-up, then linear decay to 0 (0 <= value < 1)"))
    adam_eps: float = option(1e-6, help="AdamW epsilon")
    adam_betas: tuple[float, float] = option((0.9, 0.98), help="AdamW betas [beta1, beta2]")
    max_grad_norm: float = option(1.0, help="clip the gradient's global L2 norm to this (0: no clipping)")
    max_length: int = option(128, unit="tokens", help="inputs are truncated to this length (>= 8)")
    eval_every: int = option(0, unit="optimizer steps", help="evaluate every this many steps; 0: once per epoch")
    patience: int | None = option(None, unit="evaluations", unset="never stop early", help=(
        "stop after this many evaluations without a gain (counted after the first gain)"))
    cache: Literal["auto", "none", "memory"] = option("auto", help=(
        "cache the frozen layers' outputs below the prompt's layer between epochs: auto and memory keep them "
        "in memory (skipped for one epoch or when the prompt acts at the embeddings), none recomputes"))
    cache_max_gb: float = option(4.0, unit="GiB", help="memory budget of that cache")
    backbone_dropout: bool = option(True, help=(
        "dropout on in the frozen layers gradients flow through (as peft and the papers)"))
    chat_template: bool = option(False, help=(
        "generation tasks: the source as the chat template's user turn, the target as the answer"))
    gradient_checkpointing: bool = option(False, help=(
        "recompute layer activations in the backward pass (less memory, slower)"))
    mixed_precision: Literal["no", "bf16", "fp16"] = option("no", help=(
        "autocast precision for training (bf16 on recent GPUs; no: float32)"))
    fsdp: bool = option(False, help=(
        "shard the frozen base across the processes of `accelerate launch`/`torchrun` with accelerate's FSDP2 "
        "(each transformer layer its own shard group; the prompt and heads stay replicated, fp32; "
        "the frozen-state cache is off); for bases larger than one device"))
    checkpoint_every: int = option(100, unit="optimizer steps", help=(
        "save a resumable checkpoint every this many steps; 0: only at evaluations"))
    keep_checkpoints: int = option(2, unit="checkpoints", help="keep this many of the latest checkpoints (>= 1)")
    log_every: int = option(10, unit="optimizer steps", help="record the mean training loss every this many steps")
    bucket: bool = option(True, help=(
        "sort examples by length within windows of 50 batches (less padding, same shuffled order across windows)"))
    tensorboard: bool = option(False, help="also write TensorBoard logs in the run folder")
    progress: bool = option(True, help="show a progress bar per epoch")

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
