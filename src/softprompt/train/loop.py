"""The one training loop (`fit`), shared by `softprompt train` (train/trainer.py) and the peft baseline.

Per epoch: the batches of `batch_order` (same seed, same example indices per step), split across
processes; loss -> backward, one optimizer step per `grad_accum` batches (an epoch's last batches
count as one step), gradient clipping, the schedule stepped; the mean loss recorded every
`log_every` steps; selection scores every `eval_every` steps (0: at each epoch's end), the best
kept and early stopping decided (`early_stop`); resumable checkpoints where the caller saves them.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from tqdm.auto import tqdm

from softprompt.errors import SoftPromptError
from softprompt.train.batches import Encoded, batch_order, collate
from softprompt.train.config import TrainConfig
from softprompt.train.sharding import average_trainable_grads, fsdp_plugin, is_fsdp, set_cpu_fsdp


class TrainingDiverged(SoftPromptError):
    """The loss became NaN or infinite."""


def early_stop(patience: int | None, bad_evals: int, improved: bool) -> bool:
    """Stop after `patience` evaluations without gain, but only once the score has risen above the first
    evaluation's: a run still at its starting score (e.g. predicting the majority class) keeps its epochs."""
    return patience is not None and improved and bad_evals >= patience


def make_accelerator(cfg: TrainConfig, run_dir: str | Path) -> Accelerator:
    """Device placement, autocast (`mixed_precision`), DDP or FSDP (`cfg.fsdp`) for one run; gradient
    accumulation is `fit`'s."""
    AcceleratorState._reset_state()  # a new run in the same process may change mixed precision
    # torchrun on a machine without GPUs: accelerate only uses WORLD_SIZE on CPU when asked to (gloo)
    cpu_ddp = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    plugin = fsdp_plugin() if cfg.fsdp else None
    accelerator = Accelerator(cpu=cpu_ddp, mixed_precision=cfg.mixed_precision, fsdp_plugin=plugin,
                              log_with="tensorboard" if cfg.tensorboard else None, project_dir=str(run_dir))
    if cpu_ddp:
        set_cpu_fsdp(accelerator, plugin)
    return accelerator


def new_progress() -> dict[str, Any]:
    return {"epoch": 0, "batch": 0, "global_step": 0, "best": None, "best_step": None, "bad_evals": 0,
            "train_seconds": 0.0, "time_to_best": None, "epoch_throughput": []}


@dataclass
class Loop:
    """What `fit` trains and the run's hooks into it."""

    accelerator: Accelerator
    model: torch.nn.Module  # prepared by the accelerator
    optimizer: torch.optim.Optimizer  # prepared by the accelerator
    scheduler: Any  # stepped once per optimizer step
    train: Encoded | None  # None: `batches` and `collate` say what is trained
    pad_id: int
    padding_side: str
    batch_loss: Callable[[dict], torch.Tensor]  # a collated batch -> its mean loss (autocast inside)
    evaluate: Callable[[], dict]  # selection scores; "main": higher is better
    keep_best: Callable[[int, dict], None]  # (step, scores) of a new best evaluation: keep that adapter
    record: Callable[[dict], None]  # one metrics row
    log: Callable[..., Any] = print
    selection_name: str = "selection"
    metric: str = "score"
    save_progress: Callable[[dict], None] | None = None  # a resumable checkpoint; None: none kept
    after_step: list[Callable[[dict], None]] = field(default_factory=list)
    after_eval: list[Callable[[int, dict], None]] = field(default_factory=list)  # may raise to stop
    diverged_note: str = ""  # appended to the TrainingDiverged message
    # an epoch's global batches of example indices (epoch -> batches); None: `batch_order` over `train`
    batches: Callable[[int], list[list[int]]] | None = None
    # example indices -> a collated batch; None: `collate` from `train` (MPT distillation: one task per batch)
    collate: Callable[[list[int]], dict] | None = None


def fit(cfg: TrainConfig, loop: Loop, progress: dict | None = None) -> dict[str, Any]:
    """Train from `progress` (a restored checkpoint's, or a new run); the final progress."""
    progress = progress or new_progress()
    acc = loop.accelerator
    loop.model.train()
    stop = False
    for epoch in range(progress["epoch"], cfg.epochs):
        batches = (loop.batches(epoch) if loop.batches is not None else
                   batch_order(loop.train.lengths, cfg.batch_size * acc.num_processes, cfg.seed, epoch, True, cfg.bucket))
        first = progress["batch"] if epoch == progress["epoch"] else 0
        bar = tqdm(total=len(batches), initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (cfg.progress and acc.is_main_process), leave=False)
        t0, seen, losses, epoch_seconds = time.perf_counter(), 0, [], 0.0
        for b in range(first, len(batches)):
            sync = (b + 1) % cfg.grad_accum == 0 or b + 1 == len(batches)
            losses.append(_micro_step(cfg, loop, batches[b], sync, epoch, progress))
            seen += len(batches[b])
            progress["batch"] = b + 1
            bar.update(1)
            if not sync:
                continue
            loop.scheduler.step()
            progress["global_step"] += 1
            step = progress["global_step"]
            for hook in loop.after_step:
                hook(progress)
            elapsed = time.perf_counter() - t0
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", sps=f"{seen / max(elapsed, 1e-9):.1f}")
            if step % cfg.log_every == 0:
                loop.record({"step": step, "epoch": epoch + 1, "loss": float(np.mean(losses[-cfg.log_every:])),
                             "lr": loop.scheduler.get_last_lr()[0], "samples_per_s": seen / max(elapsed, 1e-9)})
            end_of_epoch = b + 1 == len(batches)
            if (cfg.eval_every and step % cfg.eval_every == 0) or (not cfg.eval_every and end_of_epoch):
                segment = time.perf_counter() - t0
                epoch_seconds += segment
                progress["train_seconds"] += segment
                stop = evaluate(cfg, loop, progress, epoch)
                t0 = time.perf_counter()
            if stop:
                break
            if loop.save_progress and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not end_of_epoch:
                progress["epoch"] = epoch
                loop.save_progress(progress)
        segment = time.perf_counter() - t0
        epoch_seconds += segment
        progress["train_seconds"] += segment
        progress["epoch_throughput"].append(seen / max(epoch_seconds, 1e-9))
        bar.close()
        progress["epoch"], progress["batch"] = epoch + 1, 0
        if loop.save_progress:
            loop.save_progress(progress)
        if stop:
            break
    if progress["best"] is None:  # no evaluation fell inside the run (eval_every > steps)
        evaluate(cfg, loop, progress, max(progress["epoch"] - 1, 0))
    return progress


def _micro_step(cfg: TrainConfig, loop: Loop, global_batch: list[int], sync: bool, epoch: int,
                progress: dict) -> float:
    """Forward and backward of this process's share of one batch; the optimizer steps when `sync`."""
    acc, world = loop.accelerator, loop.accelerator.num_processes
    local = global_batch[acc.process_index::world]
    # DDP averages the ranks' gradients: weight each local mean by its share of the global batch
    weight = len(local) * world / len(global_batch)
    if not local:  # fewer examples than processes: join the all-reduce with a zero-weight example
        local, weight = global_batch[:1], 0.0
    batch = loop.collate(local) if loop.collate is not None else collate(loop.train, local, loop.pad_id, loop.padding_side)
    with contextlib.nullcontext() if sync else acc.no_sync(loop.model):
        loss = loop.batch_loss(batch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch + 1}, step {progress['global_step']}"
                                   + loop.diverged_note)
        scaled = loss * weight if weight != 1 else loss
        acc.backward(scaled / cfg.grad_accum if cfg.grad_accum > 1 else scaled)
    if sync:
        if is_fsdp(acc):  # the replicated prompt and heads: FSDP2 leaves their gradients to us
            average_trainable_grads(acc, [p for group in loop.optimizer.param_groups for p in group["params"]])
        if cfg.max_grad_norm:
            acc.clip_grad_norm_(loop.model.parameters(), cfg.max_grad_norm)
        loop.optimizer.step()
        loop.optimizer.zero_grad(set_to_none=True)
        producer = getattr(acc.unwrap_model(loop.model), "producer", None)  # None: no soft prompt, or a peft model
        if producer is not None and hasattr(producer, "after_step"):
            producer.after_step()  # e.g. CPT's projection into its epsilon balls
    return loss.item()


def evaluate(cfg: TrainConfig, loop: Loop, progress: dict, epoch: int) -> bool:
    """Score the selection rows, keep the best adapter; True when early stopping says stop."""
    scores = loop.evaluate()
    step = progress["global_step"]
    loop.record({"step": step, "epoch": epoch + 1, "eval": scores, "eval_split": loop.selection_name,
                 "train_seconds": progress["train_seconds"]})
    loop.log(f"step {step} (epoch {epoch + 1}): {loop.selection_name} {loop.metric} = {scores['main']:.2f}")
    for hook in loop.after_eval:
        hook(step, scores)
    if progress["best"] is None or scores["main"] > progress["best"]:
        if progress["best"] is not None:  # a gain over an earlier evaluation, not the first score
            progress["improved"] = True
        progress.update(best=scores["main"], best_step=step, bad_evals=0,
                        time_to_best=progress["train_seconds"], best_scores=scores)
        loop.keep_best(step, scores)
        return False
    progress["bad_evals"] += 1
    return early_stop(cfg.patience, progress["bad_evals"], progress.get("improved", False))
