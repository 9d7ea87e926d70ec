"""The training recipe: setup -> train (evaluate, checkpoint, early stop) -> save -> test once.

Protocol: the checkpoint is selected (and early stopping decided) on `selection_split`, by
default 10% of the training rows carved off with a fixed seed (train/splits.py); the selected
adapter is then scored once on `eval_split` (GLUE dev, reported as the test set because GLUE
test labels are private). summary.json holds both, as "selection" and "test".

Runs on CPU or GPU through accelerate (device placement, bf16/fp16 autocast with fp32
trainable weights, gradient accumulation, DDP under `accelerate launch`/`torchrun`).
Every global batch is split across processes, so N processes see the same data as one.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from softprompt.adapter import WEIGHTS, read_tensors, save_adapter
from softprompt.errors import ConfigError, SoftPromptError
from softprompt.model import SoftPromptModel
from softprompt.tasks import get_task, load_split_with_report, subsample
from softprompt.train import checkpoint as ckpt
from softprompt.train.batches import batch_order, collate, encode
from softprompt.train.config import TrainConfig
from softprompt.train.evaluate import padding_side, score
from softprompt.train.splits import carve_validation
from softprompt.train.state_cache import StateCache
from softprompt.train.text_batches import encode_generation


def early_stop(patience: int | None, bad_evals: int, improved: bool) -> bool:
    """Stop after `patience` evaluations without gain, but only once the score has risen above the first
    evaluation's: a run still at its starting score (e.g. predicting the majority class) keeps its epochs."""
    return patience is not None and improved and bad_evals >= patience


class TrainingDiverged(SoftPromptError):
    """The loss became NaN or infinite."""


class Trainer:
    def __init__(self, cfg: TrainConfig, backbone=None, resume: bool = False, log=print, callbacks=(), eval_callbacks=()):
        self.cfg = cfg
        self.callbacks = list(callbacks)  # called as cb(trainer, progress) after every optimizer step
        self.eval_callbacks = list(eval_callbacks)  # cb(trainer, step, scores) after every evaluation; may raise to stop
        self.backbone = backbone
        self.resume = resume
        self.log = log
        self.run_dir = Path(cfg.run_dir())

    # -- setup ---------------------------------------------------------------------------------
    def setup(self) -> "Trainer":
        cfg = self.cfg
        AcceleratorState._reset_state()  # a new run in the same process may change mixed precision
        # torchrun on a machine without GPUs: accelerate only uses WORLD_SIZE on CPU when asked to (gloo)
        cpu_ddp = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.accelerator = Accelerator(
            cpu=cpu_ddp,
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.grad_accum,
            log_with="tensorboard" if cfg.tensorboard else None,
            project_dir=str(self.run_dir),
        )
        self.task = get_task(cfg.task)
        if self.backbone is None:
            from softprompt.backbones import load_backbone

            self.backbone = load_backbone(cfg.backbone)
        train, selection = self._load_data()
        self.train_enc = self._encode(train)
        self.selection_enc = self._encode(selection)
        self.test_enc = None  # the reported split, encoded when the run finishes (evaluated once)
        torch.manual_seed(cfg.seed)
        method = cfg.method
        if getattr(method.producer, "init", None) == "labels" and not method.producer.label_words:
            method = method.with_producer(label_words=list(self.task.verbalizer))  # class-label init (Lester et al.)
        if method.zero_shot:
            raise ConfigError("method zero-shot is not trained; use `softprompt eval --method zero-shot`")
        self.model = SoftPromptModel(
            self.backbone, method, self.task.num_labels, self.task.is_regression, list(self.task.verbalizer),
            backbone_dropout=cfg.backbone_dropout, generative=self.task.is_generation,
        )
        self.model.gradient_checkpointing = cfg.gradient_checkpointing
        capacity = self.model.max_text_tokens()
        if capacity is not None and cfg.max_length > capacity:
            raise ConfigError(f"max_length: {cfg.max_length} text tokens do not fit {cfg.backbone} with this prompt "
                              f"(its positions less the prompt's leave {capacity}); use max_length <= {capacity}")
        self._build_optimizer()
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.cache = self._build_cache()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.accelerator.is_main_process:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if cfg.tensorboard:
            self.accelerator.init_trackers("tb")
        return self

    def _load_data(self) -> tuple[list, list]:
        """(training rows, selection rows); the reported split (eval_split) is loaded at the end."""
        cfg, task = self.cfg, self.task
        self.carve = None
        if cfg.selection_split == "carved":
            pool, self.train_report = load_split_with_report(task, "train", cfg.data_dir, None, cfg.seed)
            self.carve = carve_validation(pool, task.name, cfg.train_limit, is_regression=task.is_regression,
                                          grouped=task.grouped)
            rest = self.carve.rest
            limit = None if cfg.train_limit is None else cfg.train_limit - len(self.carve.validation)
            train = rest if limit is None else subsample(rest, max(limit, 1), cfg.seed, grouped=task.grouped)
            self.train_report.not_sampled = len(rest) - len(train)
            self.train_report.rows_returned = len(train)
            selection = self.carve.validation
            if cfg.eval_limit is not None:
                selection = subsample(selection, cfg.eval_limit, 0, grouped=task.grouped)
            self.selection_report = self.carve.summary() + (
                f"; {len(selection):,} used (eval_limit)" if len(selection) < len(self.carve.validation) else "")
            return train, selection
        try:
            split = task.check_split(cfg.selection_split)
        except ConfigError as err:
            raise ConfigError(f"selection_split: {err} (or 'carved', 10% of train)") from None
        if split == "train":
            raise ConfigError("selection_split: 'train' is the training data; use 'carved' or a held-out split")
        train, self.train_report = load_split_with_report(task, "train", cfg.data_dir, cfg.train_limit, cfg.seed)
        selection, report = load_split_with_report(task, split, cfg.data_dir, cfg.eval_limit, 0)
        self.selection_report = report.summary()
        if split == task.check_split(cfg.eval_split):
            self.log(f"warning: selection_split {split!r} is also the reported split (eval_split): "
                     f"its score is optimistically biased")
        return train, selection

    @property
    def selection_name(self) -> str:
        return "carved validation" if self.cfg.selection_split == "carved" else self.task.check_split(self.cfg.selection_split)

    def _encode(self, examples):
        if self.task.is_generation:
            return encode_generation(self.backbone.tokenizer, self.task, examples, self.cfg.max_length,
                                     self.backbone.kind, chat=self.cfg.chat_template)
        return encode(self.backbone.tokenizer, examples, self.cfg.max_length)

    @property
    def unwrapped(self) -> SoftPromptModel:
        return self.accelerator.unwrap_model(self.model)

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        lrs = cfg.group_lrs()
        groups = []
        for name, params in self.model.param_groups().items():
            decay = [p for p in params if p.dim() > 1]
            no_decay = [p for p in params if p.dim() <= 1]
            for ps, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
                if ps:
                    groups.append({"params": ps, "lr": lrs[name], "weight_decay": wd, "name": name})
        self.optimizer = torch.optim.AdamW(groups, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
        # train() takes one step per global batch of batch_size * num_processes examples
        per_epoch = math.ceil(len(self.train_enc) / (cfg.batch_size * self.accelerator.num_processes))
        self.total_steps = math.ceil(per_epoch / cfg.grad_accum) * cfg.epochs
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, int(cfg.warmup_ratio * self.total_steps), self.total_steps
        )
        names = {id(p): n for n, p in self.model.named_parameters()}
        flat = [p for g in groups for p in g["params"]]
        self.param_names = {i: names[id(p)] for i, p in enumerate(flat)}

    def _build_cache(self) -> StateCache | None:
        cfg, model = self.cfg, self.unwrapped
        if cfg.cache == "none" or model.boundary == 0 or cfg.epochs == 1:
            return None
        return StateCache(int(cfg.cache_max_gb * 2**30))

    # -- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self, progress: dict) -> None:
        if not self.accelerator.is_main_process:
            return
        trainable = self.unwrapped.adapter_params()
        opt_tensors, groups = ckpt.optimizer_tensors(self.optimizer, self.param_names)
        state = {
            **progress,
            "scheduler": self.scheduler.state_dict(),
            "optimizer_groups": groups,
            "torch_rng": torch.get_rng_state().tolist(),
        }
        ckpt.save_checkpoint(self.run_dir, progress["global_step"], trainable, opt_tensors, state, self.cfg.keep_checkpoints)

    def _restore(self) -> dict | None:
        latest = ckpt.latest_valid(self.run_dir)
        if latest is None:
            return None
        trainable, opt_tensors, state = ckpt.load_checkpoint(latest)
        params = self.unwrapped.adapter_params()
        with torch.no_grad():
            for name, value in trainable.items():
                params[name].copy_(value)
        ckpt.restore_optimizer(self.optimizer, opt_tensors, state["optimizer_groups"], self.param_names)
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        self._truncate_log(state["global_step"])
        self.log(f"resumed from {latest.name} (epoch {state['epoch']}, step {state['global_step']})")
        return state

    def _warm_cache(self, progress: dict) -> None:
        """After a resume, recompute the frozen states the first epoch had cached before the kill, in
        that epoch's batches: the same batches give bit-identical states, so later epochs read the
        same cache as an uninterrupted run (states computed in other batches may differ in the last bit)."""
        if self.cache is None:
            return
        cfg, acc = self.cfg, self.accelerator
        rank, world = acc.process_index, acc.num_processes
        tok = self.backbone.tokenizer
        batches = batch_order(self.train_enc.lengths, cfg.batch_size * world, cfg.seed, 0, True, cfg.bucket)
        done = len(batches) if progress["epoch"] > 0 else progress["batch"]
        for b in range(done):
            local = batches[b][rank::world] or batches[b][:1]
            self._frozen_state(collate(self.train_enc, local, tok.pad_token_id, padding_side(tok)), acc.device)

    def _truncate_log(self, step: int) -> None:
        path = self.run_dir / "metrics.jsonl"
        if path.exists() and self.accelerator.is_main_process:
            keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
            path.write_text("".join(line + "\n" for line in keep))

    def _record(self, row: dict) -> None:
        if self.accelerator.is_main_process:
            with open(self.run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
            if self.cfg.tensorboard:
                self.accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=row["step"])

    # -- train ---------------------------------------------------------------------------------
    def _frozen_state(self, batch, device):
        model = self.unwrapped
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        types = batch["token_type_ids"].to(device) if "token_type_ids" in batch else None
        if self.cache is None:
            return None
        indices = batch["indices"].tolist()
        template = model.start(ids, mask, types)
        hidden = self.cache.lookup(indices, mask)
        if hidden is not None:
            return template.with_hidden(hidden.to(template.hidden.dtype))
        with torch.no_grad():
            state = model.frozen_state(ids, mask, types)
        self.cache.store(indices, state)
        return state

    def train(self) -> dict:
        cfg, acc = self.cfg, self.accelerator
        device = acc.device
        state = self._restore() if self.resume else None
        if state is None and self.resume:
            self.log("no valid checkpoint to resume from; starting fresh")
        progress = state or {
            "epoch": 0, "batch": 0, "global_step": 0, "best": None, "best_step": None,
            "bad_evals": 0, "train_seconds": 0.0, "time_to_best": None, "epoch_throughput": [],
        }
        if state is None and acc.is_main_process:
            (self.run_dir / "metrics.jsonl").write_text("")
        rank, world = acc.process_index, acc.num_processes
        tok = self.backbone.tokenizer
        side = padding_side(tok)
        self.model.train()  # SoftPromptModel keeps a frozen backbone in eval mode
        if state is not None:
            self._warm_cache(progress)
        stop = False
        lengths = self.train_enc.lengths
        for epoch in range(progress["epoch"], cfg.epochs):
            batches = batch_order(lengths, cfg.batch_size * world, cfg.seed, epoch, True, cfg.bucket)
            first = progress["batch"] if epoch == progress["epoch"] else 0
            bar = tqdm(total=len(batches), initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       disable=not (cfg.progress and acc.is_main_process), leave=False)
            t0, seen, losses, epoch_seconds = time.perf_counter(), 0, [], 0.0
            for b in range(first, len(batches)):
                local = batches[b][rank::world]
                # DDP averages the ranks' gradients: weight each local mean by its share of the global batch
                weight = len(local) * world / len(batches[b])
                if not local:  # fewer examples than processes: join the all-reduce with a zero-weight example
                    local, weight = batches[b][:1], 0.0
                batch = collate(self.train_enc, local, tok.pad_token_id, side)
                frozen = self._frozen_state(batch, device)
                with acc.accumulate(self.model), acc.autocast():
                    out = self.model(
                        batch["input_ids"].to(device), batch["attention_mask"].to(device),
                        batch["token_type_ids"].to(device) if "token_type_ids" in batch else None,
                        labels=batch["labels"].to(device), state=frozen,
                        **({"source_mask": batch["source_mask"].to(device)} if "source_mask" in batch else {}),
                    )
                    if not torch.isfinite(out.loss):
                        raise TrainingDiverged(
                            f"loss became {out.loss.item()} at epoch {epoch + 1}, step {progress['global_step']}; "
                            f"kept: last checkpoint in {self.run_dir} and the best adapter in {self.run_dir / 'adapter'}"
                        )
                    acc.backward(out.loss * weight if weight != 1 else out.loss)
                    if acc.sync_gradients and cfg.max_grad_norm:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                seen += len(batches[b])
                losses.append(out.loss.item())
                progress["batch"] = b + 1
                bar.update(1)
                if not acc.sync_gradients:
                    continue
                self.scheduler.step()
                progress["global_step"] += 1
                step = progress["global_step"]
                for cb in self.callbacks:
                    cb(self, progress)
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", sps=f"{seen / max(elapsed, 1e-9):.1f}")
                if step % cfg.log_every == 0:
                    self._record({"step": step, "epoch": epoch + 1, "loss": float(np.mean(losses[-cfg.log_every:])),
                                  "lr": self.scheduler.get_last_lr()[0], "samples_per_s": seen / max(elapsed, 1e-9)})
                end_of_epoch = b + 1 == len(batches)
                if (cfg.eval_every and step % cfg.eval_every == 0) or (not cfg.eval_every and end_of_epoch):
                    segment = time.perf_counter() - t0
                    epoch_seconds += segment
                    progress["train_seconds"] += segment
                    stop = self._evaluate(progress, epoch)
                    t0 = time.perf_counter()
                if stop:
                    break
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not end_of_epoch:
                    progress["epoch"] = epoch
                    self._save_checkpoint(progress)
            segment = time.perf_counter() - t0
            epoch_seconds += segment
            progress["train_seconds"] += segment
            progress["epoch_throughput"].append(seen / max(epoch_seconds, 1e-9))
            bar.close()
            progress["epoch"], progress["batch"] = epoch + 1, 0
            self._save_checkpoint(progress)
            if stop:
                break
        return self._finish(progress)

    def _evaluate(self, progress: dict, epoch: int) -> bool:
        """Evaluate, keep the best adapter; True when early stopping says stop."""
        scores = score(self.task, self.unwrapped, self.selection_enc, self.cfg.eval_batch_size, self.backbone.tokenizer)
        step = progress["global_step"]
        self._record({"step": step, "epoch": epoch + 1, "eval": scores, "eval_split": self.selection_name,
                      "train_seconds": progress["train_seconds"]})
        self.log(f"step {step} (epoch {epoch + 1}): {self.selection_name} {self.task.metric} = {scores['main']:.2f}")
        for cb in self.eval_callbacks:
            cb(self, step, scores)
        if progress["best"] is None or scores["main"] > progress["best"]:
            if progress["best"] is not None:  # a gain over an earlier evaluation, not the first score
                progress["improved"] = True
            progress.update(best=scores["main"], best_step=step, bad_evals=0,
                            time_to_best=progress["train_seconds"], best_scores=scores)
            if self.accelerator.is_main_process:
                save_adapter(self.unwrapped, self.run_dir / "adapter", task=self.task.name,
                             label_names=list(self.task.label_names), train_step=step,
                             max_length=self.cfg.max_length)
            return False
        progress["bad_evals"] += 1
        return early_stop(self.cfg.patience, progress["bad_evals"], progress.get("improved", False))

    def _test(self) -> dict:
        """The selected (best) adapter scored once on the reported split, eval_split."""
        cfg, acc = self.cfg, self.accelerator
        examples, report = load_split_with_report(self.task, cfg.eval_split, cfg.data_dir, cfg.eval_limit, 0)
        self.test_enc = self._encode(examples)
        acc.wait_for_everyone()
        best = read_tensors(self.run_dir / "adapter" / WEIGHTS)
        live = self.unwrapped.adapter_state()  # state_dict tensors share storage with the parameters
        last = {k: v.detach().clone() for k, v in live.items()}
        with torch.no_grad():
            for k, v in best.items():
                live[k].copy_(v)
            scores = score(self.task, self.unwrapped, self.test_enc, cfg.eval_batch_size, self.backbone.tokenizer)
            for k, v in last.items():
                live[k].copy_(v)
        return {"split": self.task.check_split(cfg.eval_split), "examples": len(self.test_enc),
                "truncated": self.test_enc.truncated, "scores": scores, "data": report.summary()}

    def _finish(self, progress: dict) -> dict:
        model = self.unwrapped
        if progress["best"] is None:  # no evaluation fell inside the run (eval_every > steps)
            self._evaluate(progress, max(progress["epoch"] - 1, 0))
        test = self._test()
        cfg = self.cfg
        selection = {
            "split": self.selection_name,
            "examples": len(self.selection_enc),
            "best": progress["best"],
            "best_step": progress["best_step"],
            "scores": progress.get("best_scores"),
            "carve": self.carve.report if self.carve else None,
            "data": self.selection_report,
        }
        if cfg.selection_split != "carved" and self.task.check_split(cfg.selection_split) == test["split"]:
            test["note"] = "selected on this split: optimistically biased"
        self.log(f"selected step {progress['best_step']} on {selection['split']} ({selection['examples']} examples, "
                 f"{self.task.metric} {progress['best']:.2f}); {test['split']} (reported, not used for selection): "
                 f"{test['scores']['main']:.2f} on {test['examples']} examples")
        summary = {
            "task": self.task.name,
            "method": cfg.method_name,
            "backbone": cfg.backbone,
            "seed": cfg.seed,
            "metric": self.task.metric,
            "selection": selection,  # picks the checkpoint (and early stopping); tune / --layer auto read it
            "test": test,  # the selected checkpoint on eval_split, scored once: the number to report
            "best": progress["best"],  # = selection["best"]
            "best_step": progress["best_step"],
            "best_scores": test["scores"],  # the selected checkpoint's scores on the reported split (= test["scores"])
            "time_to_best_s": progress["time_to_best"],
            "train_seconds": progress["train_seconds"],
            "steps": progress["global_step"],
            "train_examples": len(self.train_enc),
            "train_truncated": self.train_enc.truncated,
            "eval_examples": test["examples"],
            "epoch_samples_per_s": progress["epoch_throughput"],
            "trainable_params": model.num_trainable(),
            "boundary_layer": model.boundary,
            "cache_rows": len(self.cache.rows) if self.cache else 0,
            "data": [self.train_report.summary(), selection["data"], test["data"]],
        }
        if self.accelerator.is_main_process:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if self.cfg.tensorboard:
            self.accelerator.end_training()
        return summary


def train(cfg: TrainConfig, backbone=None, resume: bool = False, log=print, callbacks=(), eval_callbacks=()) -> dict:
    return Trainer(cfg, backbone, resume, log, callbacks, eval_callbacks).setup().train()
