"""The training recipe: setup -> train (evaluate, checkpoint, early stop) -> save -> test once.

Protocol: the checkpoint is selected (and early stopping decided) on `selection_split`, by
default 10% of the training rows carved off with a fixed seed (train/splits.py); the selected
adapter is then scored once on `eval_split` (GLUE dev, reported as the test set because GLUE
test labels are private). summary.json holds both, as "selection" and "test".

The pieces are public and shared with the peft baseline: the data (train/data.py), the
optimizer (train/optim.py) and the loop, `fit` (train/loop.py: accelerate's device placement,
bf16/fp16 autocast with fp32 trainable weights, DDP under `accelerate launch`/`torchrun`;
every global batch is split across processes, so N processes see the same data as one).
This class adds the SoftPromptModel, the frozen-state cache, checkpoints/resume and the summary.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
import yaml

from softprompt.adapter import WEIGHTS, read_tensors, save_adapter
from softprompt.errors import ConfigError
from softprompt.model import SoftPromptModel
from softprompt.tasks import get_task
from softprompt.train import checkpoint as ckpt
from softprompt.train.batches import batch_order, collate
from softprompt.train.config import TrainConfig
from softprompt.train.data import encode_rows, load_reported, load_run_data
from softprompt.train.evaluate import padding_side, score
from softprompt.train.loop import Loop, TrainingDiverged, early_stop, fit, make_accelerator
from softprompt.train.sharding import is_fsdp, plan_sharding
from softprompt.train.optim import OptimizerSettings, build_optimizer, build_schedule, optimizer_steps
from softprompt.train.state_cache import StateCache

__all__ = ["Trainer", "TrainingDiverged", "early_stop", "train"]


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
        self.accelerator = make_accelerator(cfg, self.run_dir)
        self.task = get_task(cfg.task)
        if self.backbone is None:
            from softprompt.backbones import load_backbone

            self.backbone = load_backbone(cfg.backbone)
        self.data = load_run_data(cfg, self.task, self.log)
        self.carve, self.train_report = self.data.carve, self.data.train_report
        self.train_enc = encode_rows(cfg, self.task, self.backbone, self.data.train)
        self.selection_enc = encode_rows(cfg, self.task, self.backbone, self.data.selection)
        self.test_enc = None  # the reported split, encoded when the run finishes (evaluated once)
        torch.manual_seed(cfg.seed)
        # resolved by the config when the registry knows the layer count, else by the model once loaded
        method = cfg.resolved_method or cfg.method
        given = cfg.resolved_method.config if cfg.resolved_method else cfg.method
        if given.zero_shot:
            raise ConfigError("method zero-shot is not trained; use `softprompt eval --method zero-shot`")
        if getattr(given.producer, "init", None) == "labels" and not given.producer.label_words:
            method = method.with_producer(label_words=list(self.task.verbalizer))  # class-label init (Lester et al.)
        self.model = SoftPromptModel(
            self.backbone, method, self.task.num_labels, self.task.is_regression, list(self.task.verbalizer),
            backbone_dropout=cfg.backbone_dropout, max_length=cfg.max_length, generative=self.task.is_generation,
        )
        self.model.gradient_checkpointing = cfg.gradient_checkpointing
        capacity = self.model.max_text_tokens()
        if capacity is not None and cfg.max_length > capacity:
            raise ConfigError(f"max_length: {cfg.max_length} text tokens do not fit {cfg.backbone} with this prompt "
                              f"(its positions less the prompt's leave {capacity}); use max_length <= {capacity}")
        self._build_optimizer()
        if is_fsdp(self.accelerator):
            counts = plan_sharding(self.accelerator, self.model)
            self.log(f"fsdp: {counts['sharded']:,} base parameters sharded across {self.accelerator.num_processes} "
                     f"processes, {counts['whole']:,} kept whole on each")
        elif cfg.fsdp:
            self.log("fsdp: one process, nothing sharded (launch with torchrun or accelerate launch to shard)")
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.cache = self._build_cache()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.accelerator.is_main_process:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if cfg.tensorboard:
            self.accelerator.init_trackers("tb")
        return self

    @property
    def selection_name(self) -> str:
        return self.data.selection_name

    @property
    def unwrapped(self) -> SoftPromptModel:
        return self.accelerator.unwrap_model(self.model)

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        settings = OptimizerSettings.of(cfg)
        named = self.model.param_groups()
        self.optimizer = build_optimizer(named, settings.group_lrs(self.model.method), settings)
        # fit() takes one step per global batch of batch_size * num_processes examples
        self.total_steps = optimizer_steps(len(self.train_enc), cfg.batch_size * self.accelerator.num_processes,
                                           cfg.grad_accum, cfg.epochs)
        self.scheduler = build_schedule(self.optimizer, self.total_steps, cfg.warmup_ratio)
        names = {id(p): n for n, p in self.model.named_parameters()}
        flat = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.param_names = {i: names[id(p)] for i, p in enumerate(flat)}

    def _build_cache(self) -> StateCache | None:
        cfg, model = self.cfg, self.unwrapped
        if cfg.cache == "none" or model.boundary == 0 or cfg.epochs == 1:
            return None
        if cfg.fsdp:  # the cache runs the layers outside the sharded model's own forward
            self.log("fsdp: the frozen-state cache is off (cache: none)")
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

    def _batch_loss(self, batch: dict) -> torch.Tensor:
        device = self.accelerator.device
        frozen = self._frozen_state(batch, device)
        extra = {"source_mask": batch["source_mask"].to(device)} if "source_mask" in batch else {}
        with self.accelerator.autocast():
            return self.model(
                batch["input_ids"].to(device), batch["attention_mask"].to(device),
                batch["token_type_ids"].to(device) if "token_type_ids" in batch else None,
                labels=batch["labels"].to(device), state=frozen, **extra,
            ).loss

    def selection_scores(self) -> dict:
        """The current adapter scored on the selection rows (what picks the checkpoint)."""
        return score(self.task, self.unwrapped, self.selection_enc, self.cfg.eval_batch_size, self.backbone.tokenizer)

    def _keep_best(self, step: int, scores: dict) -> None:
        if self.accelerator.is_main_process:
            save_adapter(self.unwrapped, self.run_dir / "adapter", task=self.task.name,
                         label_names=list(self.task.label_names), train_step=step, max_length=self.cfg.max_length)

    def loop(self) -> Loop:
        """This run as `fit` trains it."""
        tok = self.backbone.tokenizer
        return Loop(
            self.accelerator, self.model, self.optimizer, self.scheduler, self.train_enc, tok.pad_token_id,
            padding_side(tok), self._batch_loss,
            evaluate=self.selection_scores, keep_best=self._keep_best, record=self._record, log=self.log, selection_name=self.selection_name,
            metric=self.task.metric, save_progress=self._save_checkpoint,
            after_step=[partial(cb, self) for cb in self.callbacks],
            after_eval=[partial(cb, self) for cb in self.eval_callbacks],
            diverged_note=f"; kept: last checkpoint in {self.run_dir} and the best adapter in {self.run_dir / 'adapter'}",
        )

    def train(self) -> dict:
        state = self._restore() if self.resume else None
        if state is None and self.resume:
            self.log("no valid checkpoint to resume from; starting fresh")
        if state is None and self.accelerator.is_main_process:
            (self.run_dir / "metrics.jsonl").write_text("")
        if state is not None:
            self._warm_cache(state)
        return self._finish(fit(self.cfg, self.loop(), state))

    def _test(self) -> dict:
        """The selected (best) adapter scored once on the reported split, eval_split."""
        cfg, acc = self.cfg, self.accelerator
        examples, report = load_reported(cfg, self.task)
        self.test_enc = encode_rows(cfg, self.task, self.backbone, examples)
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
        test = self._test()
        cfg = self.cfg
        selection = {
            "split": self.selection_name,
            "examples": len(self.selection_enc),
            "best": progress["best"],
            "best_step": progress["best_step"],
            "scores": progress.get("best_scores"),
            "carve": self.carve.report if self.carve else None,
            "data": self.data.selection_report,
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
