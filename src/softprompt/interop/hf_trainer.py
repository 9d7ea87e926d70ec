"""Train a SoftPromptModel with an unchanged `transformers.Trainer`.

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
    from softprompt.interop.hf_trainer import SaveAdapterCallback, TrainerModel, encode_dataset

    wrapped = TrainerModel(model)                       # forward(**batch) -> ModelOutput(loss, logits)
    trainer = Trainer(model=wrapped, args=TrainingArguments(...),
                      train_dataset=encode_dataset(tok, examples),
                      data_collator=DataCollatorWithPadding(tok),
                      callbacks=[SaveAdapterCallback(task="sst2")])
    trainer.train()
    wrapped.save_pretrained("out/adapter")              # a softprompt adapter folder (load_adapter)

What the wrapper changes, and why:
  * forward takes the collator's keys and returns a `SequenceClassifierOutput`, which the
    Trainer indexes as a dict (`outputs["loss"]`); `accepts_loss_kwargs = False` keeps the
    Trainer from passing `num_items_in_batch` (the loss is already a batch mean).
  * `state_dict()` / `load_state_dict()` cover the adapter only (prompt producer, head, and
    LoRA / backbone weights when the method trains them), with softprompt's adapter names.
    The Trainer saves a model that is not a PreTrainedModel as `model.safetensors` from
    `state_dict()`, so its checkpoints hold the adapter (kilobytes, not the frozen base) and
    `resume_from_checkpoint` / `load_best_model_at_end` load it back.
  * `SaveAdapterCallback` also writes a softprompt adapter folder (adapter.json +
    adapter.safetensors, with the base fingerprint) into every checkpoint and, at the end of
    training, into `<output_dir>/adapter`; `TrainerModel.save_pretrained` does the same on demand.

The Trainer's default optimizer uses one learning rate for everything; soft prompts usually
want a much higher one than the head (softprompt's own trainer uses 3e-2 vs 1e-3). Pass
`optimizers=optimizers(model, num_training_steps)` for softprompt's optimizer: its per-group
rates, weight decay on matrices only, AdamW betas (0.9, 0.98) and eps 1e-6, and its linear
schedule with 6% warm-up (train/optim.py; `settings=OptimizerSettings.defaults(...)` changes
them). TrainingArguments' learning_rate, weight_decay, adam_* and warmup settings then do not
apply; its max_grad_norm (1.0, as softprompt's) and its loop still do.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from softprompt.adapter import load_adapter, save_adapter
from softprompt.train import optim as train_optim
from softprompt.train.optim import OptimizerSettings

BACKBONE_PREFIX = "backbone."
MODULE_BACKBONE_PREFIX = "runner.model."


class TrainerModel(nn.Module):
    """A SoftPromptModel as `transformers.Trainer` expects a model to behave."""

    accepts_loss_kwargs = False
    main_input_name = "input_ids"

    def __init__(self, model):
        super().__init__()
        self.model = model

    @property
    def softprompt(self):
        return self.model

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.model(input_ids, attention_mask, token_type_ids, labels=labels)
        return SequenceClassifierOutput(loss=out.loss, logits=out.logits)

    # -- the adapter is the state ----------------------------------------------------------------
    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        state = self.model.adapter_state() if not keep_vars else self._adapter_vars()
        out = destination if destination is not None else {}
        for name, value in state.items():
            out[prefix + name] = value if keep_vars else value.detach()
        return out

    def _adapter_vars(self) -> dict[str, torch.Tensor]:
        names = set(self.model.adapter_state())
        found = {}
        for name, value in self.model.state_dict(keep_vars=True).items():
            key = BACKBONE_PREFIX + name[len(MODULE_BACKBONE_PREFIX):] if name.startswith(MODULE_BACKBONE_PREFIX) else name
            if key in names:
                found[key] = value
        return found

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        expected = self.model.adapter_state()
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        if strict and (missing or unexpected):
            raise RuntimeError(f"adapter state does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for name, value in state_dict.items():
            if name in expected and tuple(value.shape) != tuple(expected[name].shape):
                raise RuntimeError(f"adapter tensor {name}: shape {tuple(value.shape)}, expected {tuple(expected[name].shape)}")
        mapped = {(MODULE_BACKBONE_PREFIX + k[len(BACKBONE_PREFIX):] if k.startswith(BACKBONE_PREFIX) else k): v
                  for k, v in state_dict.items() if k in expected}
        self.model.load_state_dict(mapped, strict=False, assign=assign)
        return _IncompatibleKeys(missing, unexpected)

    # -- softprompt adapter folders --------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *, task: str | None = None,
                        label_names: list[str] | None = None, is_main_process: bool = True, **_ignored) -> Path:
        """Write a softprompt adapter folder (see softprompt.adapter.save_adapter)."""
        if not is_main_process:
            return Path(save_directory)
        meta = getattr(self.model, "adapter_meta", None) or {}
        return save_adapter(self.model, save_directory, task=task or meta.get("task"),
                            label_names=label_names or meta.get("label_names"))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, backbone=None) -> "TrainerModel":
        return cls(load_adapter(directory, backbone))


def _unwrap(model) -> TrainerModel | None:
    while model is not None and not isinstance(model, TrainerModel):
        model = getattr(model, "module", None)  # DDP and friends
    return model


class SaveAdapterCallback(TrainerCallback):
    """Writes a softprompt adapter folder into each checkpoint and `<output_dir>/adapter` at the end."""

    def __init__(self, task: str | None = None, label_names: list[str] | None = None, subdir: str = "adapter",
                 at_end: bool = True):
        self.task = task
        self.label_names = label_names
        self.subdir = subdir
        self.at_end = at_end

    def _write(self, state, model, folder: Path) -> None:
        wrapped = _unwrap(model)
        if wrapped is None or not state.is_world_process_zero:
            return
        wrapped.save_pretrained(folder / self.subdir, task=self.task, label_names=self.label_names)

    def on_save(self, args, state, control, model=None, **kwargs):
        self._write(state, model, Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.at_end:
            self._write(state, model, Path(args.output_dir))


def build_optimizer(model, lrs: dict[str, float] | None = None,
                    settings: OptimizerSettings | None = None) -> torch.optim.AdamW:
    """softprompt's AdamW (train/optim.py) for a SoftPromptModel or a TrainerModel.

    `settings`: default `OptimizerSettings.defaults()`, TrainConfig's; `lrs` overrides per-group rates.
    """
    sp = model.model if isinstance(model, TrainerModel) else model
    settings = settings or OptimizerSettings.defaults()
    return train_optim.build_optimizer(sp.param_groups(), {**settings.group_lrs(sp.method), **(lrs or {})}, settings)


def optimizers(model, num_training_steps: int, lrs: dict[str, float] | None = None,
               settings: OptimizerSettings | None = None):
    """(optimizer, schedule) for `transformers.Trainer(optimizers=...)`: `build_optimizer` and
    softprompt's linear warm-up/decay over `num_training_steps`."""
    settings = settings or OptimizerSettings.defaults()
    optimizer = build_optimizer(model, lrs, settings)
    return optimizer, train_optim.build_schedule(optimizer, num_training_steps, settings.warmup_ratio)


def encode_dataset(tokenizer, examples, max_length: int = 128) -> list[dict]:
    """softprompt Examples -> a list of feature dicts for the Trainer (pad with DataCollatorWithPadding)."""
    rows = []
    for ex in examples:
        enc = tokenizer(ex.text, ex.text_pair, truncation=True, max_length=max_length)
        row = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        if ex.label is not None:
            row["labels"] = ex.label
        rows.append(row)
    return rows
