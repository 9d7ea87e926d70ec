"""Multitask Prompt Tuning's source training: prompt distillation (Wang et al., ICLR 2023, Sec. 3.1).

Each source task k has a teacher prompt P_k^teacher, trained alone by plain prompt tuning (a saved run).
The students share one prompt P* (l, d) and own a low-rank W_k = U_k V_k (U_k (l, r), V_k (r, d); r = 1 is
the paper's u_k ⊗ v_k): P̂_k = P* ∘ W_k (producers/mpt.py). P*, U_k, V_k are trained jointly on all source
tasks with

    L = L_task + λ (L_logits + L_hidden)                                            (the paper's Eq. 4)
    L_logits = KL( softmax(z^teacher / T) || softmax(z^student / T) )               (Eq. 2)
    L_hidden = (H^student - H^teacher)²                                            (Eq. 3)

per batch (one task per batch), where
  - L_task: task k's own loss through the student: cross-entropy over the classes (MSE for regression), or
    over the target tokens for a generation task;
  - z: classification: the outputs of task k's head, the teacher's own head, frozen and shared by the student
    (the student's classes are the teacher's); generation: the LM head's vocabulary logits at every target
    token (T5: the decoder's); regression: L_logits is the squared difference of the two predictions;
  - H: the final hidden states at the text positions (prompt positions dropped, so teachers and students may
    differ in length; T5: the encoder's), mean over positions and dimensions;
  - the batch's KL is the mean over its rows (classification) or target tokens (generation).
The teacher runs without dropout; the frozen heads too. Batches take one task each: with `mixing:
proportional` the tasks' batches are shuffled together, so tasks come in proportion to their examples (the
paper's examples-proportional mixing with stochastic task sampling); `round_robin` alternates them.

Training goes through `fit` (train/loop.py) with this module's batches and loss; the selection rows (carved from
each task's training rows) score each task's student, the mean picks the saved step. Output folder:
  adapter.safetensors   producer.shared = P*, producer.cols / producer.rows = the mean over tasks of U_k / V_k
                        (the paper and peft's AVERAGE_SOURCE_TASKS start a target's u, v from the average):
                        what `method.producer.shared_from` of an `mpt` method reads
  tasks/<task>/         each source task's student as a full mpt adapter (P*, its own U_k, V_k, its teacher's
                        head): `shared_from` there is peft's EXACT_SOURCE_TASK; `softprompt eval` scores it
  distill.json          the tasks, teachers, settings, the saved step and its scores
  metrics.jsonl         the loss every log_every steps and each evaluation
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from softprompt.adapter import FORMAT, META, WEIGHTS, load_adapter, read_meta, save_adapter
from softprompt.errors import ConfigError
from softprompt.methods.config import producer_from_dict
from softprompt.model import SoftPromptModel, decoder_cache
from softprompt.tasks import get_task
from softprompt.train.batches import Encoded, batch_order, collate
from softprompt.train.config import TrainConfig
from softprompt.train.data import encode_rows, load_run_data
from softprompt.train.evaluate import padding_side, score
from softprompt.train.loop import Loop, fit, make_accelerator
from softprompt.train.mpt_distill_config import MPTDistillConfig
from softprompt.train.optim import OptimizerSettings, build_optimizer, build_schedule

__all__ = ["MPTDistillConfig", "Distiller", "MPTDistillation", "distill", "task_outputs", "logits_kl", "teacher_folder",
           "OUTPUT_MANIFEST"]

OUTPUT_MANIFEST = "distill.json"


# -- the loss ----------------------------------------------------------------------------------
def task_outputs(model: SoftPromptModel, inputs: dict[str, torch.Tensor]):
    """(z, H, L_task) of one model on one batch: z the logits the KL compares (B, C) for a head, (N, V) at the
    N target tokens for generation; H the final hidden states at the text positions (n, d); L_task the task's
    mean loss (None without labels)."""
    ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs.get("labels")
    types = inputs.get("token_type_ids")
    state = model.frozen_state(ids, mask, types)
    if not model.generative:
        hidden, seq = model.from_state(state, ids)
        prefixes = seq.decoder_prefixes[0][1] if seq.decoder_prefixes else None
        logits = model.head_logits(hidden, seq.text_mask, ids, mask, types, seq.mask, prefixes)
        return logits, hidden[seq.text_mask], None if labels is None else model.loss(logits, labels)
    hidden, seq = model.from_state(state, ids, source_mask=inputs.get("source_mask"))
    text_hidden = hidden[seq.text_mask]
    if model.runner.kind == "encoder-decoder":  # the decoder reads the prompted encoder (SoftPromptModel.lm_loss)
        out = model.decoder_logits(hidden, seq.mask.long(), None, past_key_values=decoder_cache(seq.decoder_prefixes),
                                   labels=labels)
        return out.logits[labels != -100], text_hidden, out.loss
    text = hidden.new_zeros(*ids.shape, hidden.shape[-1])
    text[mask.bool()] = text_hidden  # back to the input layout; the state at c predicts the token at c + 1
    nxt = labels[:, 1:]
    at = nxt != -100
    logits = model.runner.lm_head()(text[:, :-1][at])
    return logits, text_hidden, F.cross_entropy(logits.float(), nxt[at])


def logits_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) with p = softmax(z / T), the mean over rows (the paper's Eq. 2)."""
    log_s = F.log_softmax(student.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


class Distiller(nn.Module):
    """The teachers (frozen) and the students P̂_k = P* ∘ (U_k V_k) on one backbone; P* is one parameter.

    Student k shares its teacher's head (frozen, always in eval mode) and site; only P*, U_k, V_k train."""

    def __init__(self, teachers: list[SoftPromptModel], students: list[SoftPromptModel], tasks: list[str],
                 distill_weight: float = 1.0, temperature: float = 1.0):
        super().__init__()
        self.tasks = list(tasks)
        self.teachers = nn.ModuleList(teachers)
        self.students = nn.ModuleList(students)
        self.shared = students[0].producer.shared
        for teacher, student in zip(teachers, students):
            teacher.requires_grad_(False)
            student.head = teacher.head  # the task's own head (Identity for generation: the LM head)
            student.producer.shared = self.shared
        self.distill_weight = distill_weight
        self.temperature = temperature

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)  # each SoftPromptModel sets the shared backbone's modes (the students last)
        for student in self.students:
            student.head.eval()
        return self

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """P* once, every U_k and V_k: the `prompt` group."""
        seen, prompt = set(), []
        for student in self.students:
            for p in student.producer.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    prompt.append(p)
        return {"prompt": prompt}

    def forward(self, batch: dict) -> torch.Tensor:
        return self.losses(batch)["loss"]

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The terms of L on one batch of one task (`batch["task"]`: its index): loss, task, logits, hidden."""
        k = int(batch["task"])
        teacher, student = self.teachers[k], self.students[k]
        device = self.shared.device
        inputs = {name: v.to(device) for name, v in batch.items() if torch.is_tensor(v) and name != "indices"}
        training = self.training
        with torch.no_grad():
            teacher.eval()  # the shared backbone without dropout for the teacher
            t_logits, t_hidden, _ = task_outputs(teacher, inputs)
        if training:  # back to the students' modes: backbone dropout where gradients flow, the head without
            student.train(True)
            student.head.eval()
        s_logits, s_hidden, task_loss = task_outputs(student, inputs)
        if student.head_kind == "regression":
            logits_loss = F.mse_loss(s_logits.float(), t_logits.float())
        else:
            logits_loss = logits_kl(s_logits, t_logits, self.temperature)
        hidden_loss = F.mse_loss(s_hidden.float(), t_hidden.float())
        if task_loss is None:
            raise ConfigError(f"{self.tasks[k]}: its training rows have no labels")
        total = task_loss + self.distill_weight * (logits_loss + hidden_loss)
        return {"loss": total, "task": task_loss.detach(), "logits": logits_loss.detach(), "hidden": hidden_loss.detach()}


# -- the sources -------------------------------------------------------------------------------
def teacher_folder(path: str, field: str) -> Path:
    """The adapter folder of a teacher given as an adapter folder or a run folder (its adapter/)."""
    p = Path(path)
    for folder in (p, p / "adapter"):
        if (folder / META).is_file() and (folder / WEIGHTS).is_file():
            return folder
    raise ConfigError(f"{field}: {path!r} is neither an adapter folder nor a run folder with adapter/")


@dataclass
class Source:
    """One source task: its teacher, its student and its rows."""

    task: Any  # softprompt.tasks Task
    folder: Path  # the teacher's adapter folder
    label_names: list[str]
    teacher: SoftPromptModel
    student: SoftPromptModel
    train: Encoded
    selection: Encoded


def student_method(teacher: SoftPromptModel, num_tokens: int, cfg: MPTDistillConfig):
    """The teacher's method (site, head) with the mpt producer: P* ∘ (U V) of `num_tokens` x d, rank `cfg.rank`."""
    producer = producer_from_dict({"kind": "mpt", "num_tokens": num_tokens, "rank": cfg.rank, "init": cfg.init,
                                   "init_std": cfg.init_std})
    return dataclasses.replace(teacher.method, name="mpt", producer=producer)


def load_teachers(cfg: MPTDistillConfig, backbone=None):
    """(backbone, [(folder, meta, teacher)]): every teacher checked (one backbone, one site, one task each)."""
    folders = [teacher_folder(path, f"teachers[{i}]") for i, path in enumerate(cfg.teachers)]
    metas = [read_meta(folder) for folder in folders]
    tasks = []
    for i, meta in enumerate(metas):
        if not meta.get("task"):
            raise ConfigError(f"teachers[{i}]: {str(folders[i])!r} names no task (adapter.json 'task')")
        if meta["task"] in tasks:
            raise ConfigError(f"teachers[{i}]: a second teacher for task {meta['task']!r}; give one per task")
        tasks.append(meta["task"])
        if meta["base_fingerprint"] != metas[0]["base_fingerprint"]:
            raise ConfigError(f"teachers[{i}]: made for base model {meta['base_model']!r}, teachers[0] for "
                              f"{metas[0]['base_model']!r}; the teachers must share one backbone")
    if backbone is None:
        from softprompt.backbones import load_backbone

        backbone = load_backbone(metas[0]["base_model"])
    loaded = []
    for i, (folder, meta) in enumerate(zip(folders, metas)):
        teacher = load_adapter(folder, backbone)
        if teacher.producer is None or teacher.method.backbone != "frozen":
            raise ConfigError(f"teachers[{i}]: {str(folder)!r} is not a soft prompt on a frozen backbone "
                              f"(method {teacher.method.name!r})")
        first = loaded[0][2] if loaded else teacher
        if teacher.method.site != first.method.site:
            raise ConfigError(f"teachers[{i}]: its prompt acts at {teacher.site.describe()}, teachers[0]'s at "
                              f"{first.site.describe()}; one shared prompt needs one site")
        loaded.append((folder, meta, teacher))
    return backbone, loaded


def prompt_length(cfg: MPTDistillConfig, teachers: list[SoftPromptModel]) -> int:
    if cfg.num_tokens is not None:
        return cfg.num_tokens
    lengths = sorted({t.producer.num_tokens for t in teachers})
    if len(lengths) > 1:
        raise ConfigError(f"num_tokens: the teachers' prompts have lengths {lengths}; set the shared prompt's")
    return lengths[0]


def task_batches(sizes: list[int], batch_size: int, seed: int, epoch: int, mixing: str,
                 lengths: list[np.ndarray] | None = None) -> list[list[int]]:
    """An epoch's batches over the tasks' examples numbered one after another (task k from sum(sizes[:k])),
    one task per batch: each task's batches as `batch_order` makes them, then shuffled together
    (proportional) or taken in turn (round_robin)."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    per_task = []
    for k, n in enumerate(sizes):
        lens = lengths[k] if lengths is not None else np.ones(n, dtype=np.int64)
        per_task.append([[int(offsets[k] + i) for i in b] for b in batch_order(lens, batch_size, seed + k, epoch, True, True)])
    if mixing == "round_robin":
        longest = max((len(b) for b in per_task), default=0)
        return [bs[i] for i in range(longest) for bs in per_task if i < len(bs)]
    every = [b for bs in per_task for b in bs]
    order = np.random.default_rng([seed, epoch, len(sizes)]).permutation(len(every))
    return [every[i] for i in order]


# -- the run -----------------------------------------------------------------------------------
class MPTDistillation:
    """setup() -> run(): the teachers and data loaded, the students trained through `fit`, the output saved."""

    def __init__(self, cfg: MPTDistillConfig, backbone=None, log: Callable[..., Any] = print):
        self.cfg, self.backbone, self.log = cfg, backbone, log
        self.out = Path(cfg.output_dir)

    def setup(self) -> "MPTDistillation":
        cfg = self.cfg
        self.accelerator = make_accelerator(SimpleNamespace(fsdp=False, tensorboard=False,
                                                            mixed_precision=cfg.mixed_precision), self.out)
        if self.accelerator.num_processes > 1:  # DDP: a batch leaves the other tasks' U_k, V_k without gradients
            raise ConfigError("mpt-distill: runs in one process (launch it without torchrun / accelerate launch)")
        self.backbone, loaded = load_teachers(cfg, self.backbone)
        teachers = [teacher for _, _, teacher in loaded]
        length = prompt_length(cfg, teachers)
        torch.manual_seed(cfg.seed)
        self.sources = []
        for folder, meta, teacher in loaded:
            task = get_task(meta["task"])
            student = SoftPromptModel(self.backbone, student_method(teacher, length, cfg), teacher.num_labels,
                                      teacher.is_regression, teacher.label_words or None,
                                      backbone_dropout=cfg.backbone_dropout, max_length=cfg.max_length,
                                      generative=teacher.generative)
            run = TrainConfig(backbone=self.backbone.name, task=task.name, method="prompt-tuning", data_dir=cfg.data_dir,
                              train_limit=cfg.train_limit, eval_limit=cfg.eval_limit, seed=cfg.seed,
                              selection_split=cfg.selection_split, max_length=cfg.max_length)
            data = load_run_data(run, task, self.log)
            self.sources.append(Source(task, folder, list(meta.get("label_names") or task.label_names), teacher, student,
                                       encode_rows(run, task, self.backbone, data.train),
                                       encode_rows(run, task, self.backbone, data.selection)))
        self.distiller = Distiller(teachers, [s.student for s in self.sources], [s.task.name for s in self.sources],
                                   cfg.distill_weight, cfg.temperature)
        settings = OptimizerSettings.defaults(lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio)
        lrs = settings.group_lrs(self.sources[0].student.method)
        self.optimizer = build_optimizer(self.distiller.param_groups(), lrs, settings)
        steps_per_epoch = -(-len(self.batches(0)) // cfg.grad_accum)
        self.scheduler = build_schedule(self.optimizer, steps_per_epoch * cfg.epochs, cfg.warmup_ratio)
        self.model, self.optimizer = self.accelerator.prepare(self.distiller, self.optimizer)
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    # -- what fit() reads ----------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        return [len(s.train) for s in self.sources]

    def batches(self, epoch: int) -> list[list[int]]:
        world = self.accelerator.num_processes
        return task_batches(self.sizes, self.cfg.batch_size * world, self.cfg.seed, epoch, self.cfg.mixing,
                            [s.train.lengths for s in self.sources])

    def collate(self, indices: list[int]) -> dict:
        """One task's batch (the task of the first index; `task_batches` never mixes them)."""
        offsets = np.cumsum([0] + self.sizes)
        k = int(np.searchsorted(offsets, indices[0], side="right") - 1)
        tok = self.backbone.tokenizer
        batch = collate(self.sources[k].train, [i - int(offsets[k]) for i in indices], tok.pad_token_id, padding_side(tok))
        batch["task"] = k
        return batch

    def batch_loss(self, batch: dict) -> torch.Tensor:
        with self.accelerator.autocast():
            return self.model(batch)

    def evaluate(self) -> dict:
        """Each task's student on its selection rows; "main" is their mean."""
        tok = self.backbone.tokenizer
        per_task = {s.task.name: score(s.task, s.student, s.selection, self.cfg.eval_batch_size, tok)["main"]
                    for s in self.sources}
        self.distiller.train(self.distiller.training)  # scoring switched the students' modes
        return {"main": float(np.mean(list(per_task.values()))), "tasks": per_task}

    def keep_best(self, step: int, scores: dict) -> None:
        if self.accelerator.is_main_process:
            self.save(step, scores)

    def record(self, row: dict) -> None:
        if self.accelerator.is_main_process:
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")

    def loop(self) -> Loop:
        tok = self.backbone.tokenizer
        return Loop(self.accelerator, self.model, self.optimizer, self.scheduler, None, tok.pad_token_id,
                    padding_side(tok), self.batch_loss, evaluate=self.evaluate, keep_best=self.keep_best,
                    record=self.record, log=self.log, selection_name="selection rows (mean over tasks)",
                    metric="mean score", batches=self.batches, collate=self.collate,
                    diverged_note=f"; the best distilled prompt so far is in {self.out}")

    # -- output --------------------------------------------------------------------------------
    @torch.no_grad()
    def save(self, step: int, scores: dict) -> None:
        """P* with the mean U, V (what `shared_from` reads), every task's student adapter and the manifest."""
        students = [s.student for s in self.sources]
        tensors = {
            "producer.shared": self.distiller.shared.detach().cpu().clone().contiguous(),
            "producer.cols": torch.stack([s.producer.cols.detach().cpu() for s in students]).mean(0).contiguous(),
            "producer.rows": torch.stack([s.producer.rows.detach().cpu() for s in students]).mean(0).contiguous(),
        }
        tmp = self.out / (WEIGHTS + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "contents": "mpt-distill"})
        os.replace(tmp, self.out / WEIGHTS)
        for s in self.sources:
            save_adapter(s.student, self.out / "tasks" / s.task.name, task=s.task.name, label_names=s.label_names,
                         train_step=step, max_length=self.cfg.max_length, distilled_from=str(s.folder))
        manifest = {
            "format": "softprompt-mpt-distill",
            "paper": "Wang et al., ICLR 2023, Multitask Prompt Tuning, Sec. 3.1 (prompt distillation)",
            "base_model": self.backbone.name,
            "tasks": [s.task.name for s in self.sources],
            "teachers": [str(s.folder) for s in self.sources],
            "shared": "adapter.safetensors: producer.shared = P*; producer.cols, producer.rows = mean over tasks",
            "per_task": {s.task.name: f"tasks/{s.task.name}" for s in self.sources},
            "num_tokens": int(self.distiller.shared.shape[0]),
            "rank": self.cfg.rank,
            "settings": dataclasses.asdict(self.cfg),
            "step": step,
            "selection_scores": scores,
        }
        (self.out / OUTPUT_MANIFEST).write_text(json.dumps(manifest, indent=2))

    def run(self) -> dict:
        if self.accelerator.is_main_process:
            (self.out / "metrics.jsonl").write_text("")
        progress = fit(self.cfg, self.loop())
        summary = {"output_dir": str(self.out), "tasks": [s.task.name for s in self.sources],
                   "train_examples": self.sizes, "steps": progress["global_step"], "best": progress["best"],
                   "best_step": progress["best_step"], "best_scores": progress.get("best_scores"),
                   "train_seconds": progress["train_seconds"]}
        if self.accelerator.is_main_process:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def distill(cfg: MPTDistillConfig, backbone=None, log: Callable[..., Any] = print) -> dict:
    """Distil P* and the tasks' U_k, V_k from `cfg.teachers`; the run's summary (output in cfg.output_dir)."""
    return MPTDistillation(cfg, backbone, log).setup().run()
