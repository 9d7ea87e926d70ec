"""`softprompt mpt-distill`'s settings (train/mpt_distill.py trains them): every field is a YAML key and a --flag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from softprompt.config import option
from softprompt.errors import ConfigError


@dataclass
class MPTDistillConfig:
    """Multitask Prompt Tuning's source training (Wang et al., ICLR 2023, Sec. 3.1): one shared prompt P* and
    per-task u_k, v_k distilled from single-task teacher prompts."""

    teachers: list[str] = option(default_factory=list, shown_default="[] (required)", help=(
        "the source tasks' teachers: run folders of prompt tuning (their adapter/) or adapter folders, all on "
        "one backbone, one per task; each names its task, whose training rows are distilled on"))
    output_dir: str = option("runs/mpt-distill", help=(
        "where P* and the averaged U, V go (adapter.safetensors: what method.producer.shared_from reads), "
        "each task's student adapter (tasks/<task>/), distill.json and metrics.jsonl"))
    data_dir: str | None = option(None, help="the benchmark data folder",
                                  unset="$SOFTPROMPT_DATA, else the Hugging Face hub")
    train_limit: int | None = option(None, unit="examples per task", unset="all", help=(
        "use at most this many training examples of each task (a seeded subsample; the carved selection rows "
        "come out of them)"))
    eval_limit: int | None = option(None, unit="examples per task", unset="all",
                                    help="cap each task's selection rows at this many examples")
    selection_split: str = option("carved", help=(
        "the rows that pick the saved step (the tasks' mean score): 'carved' = 10% of each task's training rows, "
        "or another named split"))
    num_tokens: int | None = option(None, unit="prompt vectors", unset="the teachers' prompt length",
                                    help="length l of the shared prompt P* (l, d)")
    rank: int = option(1, help="rank r of each task's W_k = U_k V_k (1: the paper's u_k ⊗ v_k)")
    init: Literal["random", "vocab"] = option("random", help=(
        "P*'s start: random N(0, init_std²) (the paper: students are randomly initialised) or sampled "
        "vocabulary embeddings"))
    init_std: float = option(0.02, help="standard deviation of U_k, V_k (peft) and of a random P*")
    distill_weight: float = option(1.0, help=(
        "λ in L = L_task + λ (L_logits + L_hidden) (the paper's Eq. 4)"))
    temperature: float = option(1.0, help=(
        "T of the softened teacher and student distributions softmax(z / T) in L_logits"))
    mixing: Literal["proportional", "round_robin"] = option("proportional", help=(
        "one task per batch; proportional: the batches of all tasks shuffled together, so tasks come in "
        "proportion to their examples (the paper's examples-proportional mixing, stochastic task sampling); "
        "round_robin: the tasks take turns"))
    seed: int = option(0, help="random seed for initialisation, data order and subsampling")
    epochs: int = option(5, unit="epochs", help="passes over every task's training data (the paper: 5)")
    batch_size: int = option(32, unit="examples per device", help="training batch size, one task per batch")
    eval_batch_size: int = option(64, unit="examples", help="batch size for scoring the selection rows")
    grad_accum: int = option(1, unit="batches", help="batches summed before each optimizer step (>= 1)")
    lr: float | None = option(None, help="learning rate of P*, U_k and V_k", unset="the mpt producer's 0.3")
    weight_decay: float = option(0.01, help="AdamW weight decay (decoupled), on P*, U_k, V_k")
    warmup_ratio: float = option(0.06, unit="fraction of all optimizer steps", help=(
        "linear learning-rate warm-up, then linear decay to 0 (0 <= value < 1)"))
    max_grad_norm: float = option(1.0, help="clip the gradient's global L2 norm to this (0: no clipping)")
    max_length: int = option(128, unit="tokens", help="inputs are truncated to this length (>= 8)")
    eval_every: int = option(0, unit="optimizer steps", help="score the selection rows every this many steps; "
                             "0: once per epoch")
    patience: int | None = option(None, unit="evaluations", unset="never stop early", help=(
        "stop after this many evaluations without a gain (counted after the first gain)"))
    log_every: int = option(10, unit="optimizer steps", help="record the mean training loss every this many steps")
    backbone_dropout: bool = option(True, help=(
        "dropout on in the frozen layers the students' gradients flow through (teachers always run without)"))
    mixed_precision: Literal["no", "bf16", "fp16"] = option("no", help="autocast precision for training")
    progress: bool = option(True, help="show a progress bar per epoch")

    def __post_init__(self):
        checks = {
            "teachers": len(self.teachers) >= 1,
            "rank": self.rank >= 1,
            "num_tokens": self.num_tokens is None or self.num_tokens >= 1,
            "init_std": self.init_std > 0,
            "distill_weight": self.distill_weight >= 0,
            "temperature": self.temperature > 0,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "eval_batch_size": self.eval_batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "max_length": self.max_length >= 8,
            "log_every": self.log_every >= 1,
            "train_limit": self.train_limit is None or self.train_limit >= 1,
            "eval_limit": self.eval_limit is None or self.eval_limit >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"mpt-distill config: invalid value for {', '.join(bad)}"
                              + (" (list the teachers' run or adapter folders)" if "teachers" in bad else ""))
