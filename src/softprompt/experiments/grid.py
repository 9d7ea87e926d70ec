"""Expand a spec into cells and run them one by one, resumably.

Cells, in the order they run (a cell's dependency always comes first):

* train      method x task x backbone x seed (x layer m for a sweep) through the trainer
* eval       a trained run evaluated on another task/split (cross-domain, zero-shot transfer A -> B)
* few-shot   a trained run on A, training continued on `examples` examples of B, scored on B
* zero-shot  an instruction model prompted zero-shot (no training), the cross-domain baseline
* params     trainable parameters of every method on a backbone (no training)

Layout: RESULTS_DIR/<spec>/<cell-id>/result.json (written atomically: temp file + rename),
next to the cell's run folder `run/` (config.yaml, metrics.jsonl, adapter/, summary.json).
A finished cell (result.json present) is never redone; a cell interrupted mid-training
continues from its last checkpoint (train(..., resume=True)). RESULTS_DIR/<spec>/ also holds
manifest.json (spec, profile, every bench invocation with command, commit, machine, times),
skipped.json (cells that cannot run here and why) and bench.log.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import fnmatch
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from softprompt.errors import ConfigError
from softprompt.experiments.spec import Spec, load_spec

SCHEMA = 1
RESULT = "result.json"


@dataclass
class Cell:
    id: str
    kind: str  # "train" | "eval" | "few-shot" | "zero-shot" | "params"
    backbone: str
    method: str | None = None  # the spec's method label
    method_config: dict[str, Any] | None = None
    soft_prompt: bool = False
    backbone_mode: str = "frozen"
    task: str | None = None  # the training task (few-shot / eval: the source task A)
    eval_task: str | None = None  # eval / few-shot / zero-shot: the task scored
    split: str | None = None  # the split scored
    seed: int | None = None
    layer: int | None = None
    train: dict[str, Any] | None = None  # TrainConfig keys (without backbone/task/method/seed/dirs)
    limit: int | None = None  # eval / zero-shot: examples scored
    needs: str | None = None  # id of the cell whose adapter this one uses
    same_labels: bool = False
    metric: str | None = None
    timing: bool = False
    params: dict[str, Any] | None = None
    max_length: int | None = None  # zero-shot
    skip: str | None = field(default=None, compare=False)  # why it cannot run here

    def describe(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("skip")
        return d

    def key(self) -> str:
        """Digest of everything that defines the cell's result (not where the data lives)."""
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- expansion -----------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(text)).strip("-").lower() or "x"


def default_split(task_name: str) -> str:
    """The split a task is scored on: validation where it has public labels, else test."""
    from softprompt.tasks import get_task

    task = get_task(task_name)
    return "validation" if "validation" in task.splits and "validation" not in task.unlabeled_splits else "test"


def _merge(*dicts: dict | None) -> dict:
    out: dict = {}
    for d in dicts:
        out.update(copy.deepcopy(d or {}))
    return out


_LAYER_COUNTS: dict[str, int] = {}


def num_layers(backbone: str) -> int:
    """Transformer layers of a backbone (loads it once per process)."""
    if backbone not in _LAYER_COUNTS:
        from softprompt.backbones import load_backbone
        from softprompt.runners import runner_for

        bb = load_backbone(backbone)
        _LAYER_COUNTS[backbone] = runner_for(bb.family, bb.model).num_layers
    return _LAYER_COUNTS[backbone]


def _offline_reason(task_name: str, split: str, root: Path | None, role: str) -> str | None:
    from softprompt.tasks import get_task

    if root is None:
        return None  # the datasets hub route has every split
    task = get_task(task_name)
    if split in task.offline_splits:
        return None
    have = ", ".join(task.offline_splits) or "no splits"
    return (f"{role} needs {task.name} {split}: not in the local data (it has {have}); hub-only, "
            f"runs where the datasets hub is reachable (without --data-dir / $SOFTPROMPT_DATA)")


def expand(spec: Spec | str | Path, profile: str | None = "quick", data_dir=None) -> list[Cell]:
    """Every cell of a spec under a profile, dependencies first; cells that cannot run carry `skip`."""
    from softprompt import settings
    from softprompt.train.config import TrainConfig

    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    if profile is not None and spec.profile != profile:
        spec = spec.for_profile(profile)
    root = settings.data_dir(data_dir)
    cells: list[Cell] = []
    ids: set[str] = set()

    def add(cell: Cell) -> Cell:
        if cell.id not in ids:
            ids.add(cell.id)
            cells.append(cell)
        return cell

    def train_kwargs(task: str, label: str, extra: dict | None = None) -> dict:
        kw = _merge(spec.train, spec.task_overrides.get(task), spec.method_overrides.get(label), extra)
        kw.setdefault("eval_split", default_split(task))
        kw.setdefault("progress", False)
        return kw

    def check_config(kw: dict, where: str) -> None:
        from softprompt.config import from_dict

        from_dict(TrainConfig, {k: v for k, v in kw.items()}, where)

    few = spec.few_shot or {}
    train_tasks = list(spec.tasks)
    for p in list(spec.pairs) + list(few.get("pairs") or []):
        if p.train not in train_tasks:
            train_tasks.append(p.train)

    trained: list[Cell] = []
    for backbone in spec.backbones if spec.methods else []:
        if spec.layers == "all":
            layers: list[int | None] = list(range(num_layers(backbone)))
        elif spec.layers is not None:
            layers = list(spec.layers)
            bad = [m for m in layers if m >= num_layers(backbone)]
            if bad:
                raise ConfigError(f"spec {spec.name}: layers: {bad} out of range for {backbone} "
                                  f"({num_layers(backbone)} layers: 0..{num_layers(backbone) - 1})")
        else:
            layers = [None]
        for task in train_tasks:
            for m in spec.methods:
                kw = train_kwargs(task, m.label)
                check_config(kw, f"spec {spec.name}: training config for {m.label} on {task}")
                for layer in layers:
                    config = copy.deepcopy(m.config)
                    if layer is not None:
                        config["site"] = {**(config.get("site") or {}), "kind": "layer", "layer": layer}
                    for seed in spec.seeds:
                        cid = f"{_slug(m.label)}_{task}_{_slug(backbone)}_s{seed}" + (f"_m{layer}" if layer is not None else "")
                        reason = (_offline_reason(task, "train", root, f"training on {task}")
                                  or _offline_reason(task, kw["eval_split"], root, f"training on {task}"))
                        trained.append(add(Cell(
                            cid, "train", backbone, m.label, config, m.soft_prompt, m.backbone_mode, task=task,
                            split=kw["eval_split"], seed=seed, layer=layer, train=kw, metric=spec.metric_for(task),
                            timing=spec.timing, skip=reason)))

    def limit_for(target_limit: int | None) -> int | None:
        limits = [x for x in (target_limit, spec.eval_limit) if x is not None]
        return min(limits) if limits else None

    def eval_cell(src: Cell, task: str, split: str | None, limit: int | None, same_labels: bool) -> None:
        split = split or default_split(task)
        reason = src.skip and f"needs {src.id}, which is skipped: {src.skip}"
        reason = reason or _offline_reason(task, split, root, f"evaluating on {task}")
        add(Cell(f"{src.id}__{task}-{split}", "eval", src.backbone, src.method, src.method_config, src.soft_prompt,
                 src.backbone_mode, task=src.task, eval_task=task, split=split, seed=src.seed, layer=src.layer,
                 limit=limit_for(limit), needs=src.id, same_labels=same_labels, metric=spec.metric_for(task),
                 skip=reason))

    for src in trained:
        if src.task in spec.tasks:
            for target in spec.eval_tasks:
                eval_cell(src, target.task, target.split, target.limit, False)
    for pair in spec.pairs:
        for src in trained:
            if src.task == pair.train and src.layer is None:
                eval_cell(src, pair.eval, pair.split, None, pair.same_labels)
    for pair in few.get("pairs") or []:
        for src in trained:
            if src.task != pair.train or src.layer is not None or src.method not in few["methods"]:
                continue
            label = src.method
            split = pair.split or default_split(pair.eval)
            kw = train_kwargs(pair.eval, label, few.get("train"))
            kw.update(train_limit=few["examples"], eval_split=split)
            kw.setdefault("eval_limit", spec.eval_limit)
            check_config(kw, f"spec {spec.name}: few_shot training config for {label} on {pair.eval}")
            reason = src.skip and f"needs {src.id}, which is skipped: {src.skip}"
            reason = reason or _offline_reason(pair.eval, "train", root, f"few-shot training on {pair.eval}")
            reason = reason or _offline_reason(pair.eval, split, root, f"evaluating on {pair.eval}")
            add(Cell(f"{src.id}__fewshot{few['examples']}-{pair.eval}", "few-shot", src.backbone, label,
                     src.method_config, src.soft_prompt, src.backbone_mode, task=src.task, eval_task=pair.eval,
                     split=split, seed=src.seed, train=kw, needs=src.id, metric=spec.metric_for(pair.eval),
                     skip=reason))
    # a training task that only feeds transfer cells is not trained when none of them can run here
    for src in trained:
        if src.skip or src.task in spec.tasks:
            continue
        users = [c for c in cells if c.needs == src.id]
        if all(c.skip for c in users):
            src.skip = (f"only needed for {', '.join(c.id for c in users)}, which cannot run here"
                        if users else "no transfer cell needs it")
    if spec.zero_shot:
        zs = spec.zero_shot
        for target in zs["tasks"]:
            split = target.split or default_split(target.task)
            add(Cell(f"zero-shot_{_slug(zs['backbone'])}__{target.task}-{split}", "zero-shot", zs["backbone"],
                     method=f"zero-shot ({zs['backbone']})", eval_task=target.task, split=split,
                     limit=limit_for(target.limit), metric=spec.metric_for(target.task),
                     max_length=zs.get("max_length") or 256,
                     skip=_offline_reason(target.task, split, root, f"evaluating on {target.task}")))
    if spec.params:
        for backbone in spec.params["backbones"]:
            add(Cell(f"params_{_slug(backbone)}", "params", backbone,
                     params={"methods": spec.params["methods"], "num_labels": spec.params["num_labels"]}))
    return cells


def select(cells: list[Cell], only: str | None) -> list[Cell]:
    """Cells whose id matches any comma-separated glob in `only`, plus what they need."""
    if not only:
        return list(cells)
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    by_id = {c.id: c for c in cells}
    keep: set[str] = set()
    for c in cells:
        if any(fnmatch.fnmatchcase(c.id, p) or p in c.id for p in patterns):
            keep.add(c.id)
            dep = c.needs
            while dep:
                keep.add(dep)
                dep = by_id[dep].needs
    if not keep:
        raise ConfigError(f"--only {only!r} matches no cell; cell ids look like {cells[0].id if cells else '(none)'}")
    return [c for c in cells if c.id in keep]


# -- provenance ----------------------------------------------------------------------------------

def git_commit() -> dict[str, Any]:
    repo = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def machine() -> dict[str, Any]:
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cores": cores, "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": "cpu"}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    return info


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# -- running -------------------------------------------------------------------------------------

class Log:
    """Timestamped lines to the console (or a callback) and RESULTS_DIR/<spec>/bench.log."""

    def __init__(self, path: Path | None, echo: Callable[[str], Any] | None = print):
        self.path, self.echo = path, echo

    def __call__(self, *parts: Any) -> None:
        line = f"[{_dt.datetime.now().strftime('%H:%M:%S')}] " + " ".join(str(p) for p in parts)
        if self.echo:
            self.echo(line)
        if self.path:
            with open(self.path, "a") as fh:
                fh.write(line + "\n")


class GridRunner:
    def __init__(self, spec: Spec, out: Path, data_dir=None, log: Log | None = None, keep_checkpoints: bool = False):
        from softprompt import settings

        self.spec, self.out, self.log = spec, Path(out), log or Log(None)
        self.root = settings.data_dir(data_dir)
        self.keep_checkpoints = keep_checkpoints
        self._backbones: dict[str, Any] = {}
        self.provenance = {**git_commit(), "machine": machine()}

    # backbones are loaded once; methods that change the weights get a private copy
    def backbone(self, name: str, mode: str = "frozen"):
        if name not in self._backbones:
            from softprompt.backbones import load_backbone

            bb = load_backbone(name)
            bb.fingerprint()  # of the pristine weights, inherited by the copies below
            self._backbones[name] = bb
        bb = self._backbones[name]
        if mode == "frozen":
            return bb
        clone = copy.copy(bb)
        clone.model = copy.deepcopy(bb.model)
        return clone

    def cell_dir(self, cell: Cell | str) -> Path:
        return self.out / self.spec.name / (cell if isinstance(cell, str) else cell.id)

    def run(self, cell: Cell) -> dict[str, Any]:
        t0 = time.perf_counter()
        handler = {"train": self._train, "eval": self._eval, "few-shot": self._few_shot,
                   "zero-shot": self._zero_shot, "params": self._params}[cell.kind]
        result = handler(cell)
        result.update({
            "schema": SCHEMA, "spec": self.spec.name, "profile": self.spec.profile, "cell": cell.id,
            "cell_key": cell.key(), "kind": cell.kind, "method": cell.method, "method_config": cell.method_config,
            "soft_prompt": cell.soft_prompt, "backbone": cell.backbone, "task": cell.task,
            "eval_task": cell.eval_task, "seed": cell.seed, "layer": cell.layer, "metric": cell.metric,
            "needs": cell.needs, "wall_s": time.perf_counter() - t0, "finished": _now(),
            "git_commit": self.provenance["commit"], "git_dirty": self.provenance["dirty"],
        })
        result.setdefault("split", cell.split)
        return result

    def _config(self, cell: Cell, run_dir: Path, task: str | None = None):
        from softprompt.train.config import TrainConfig

        return TrainConfig(**{**cell.train, "backbone": cell.backbone, "task": task or cell.task,
                              "method": copy.deepcopy(cell.method_config), "seed": cell.seed,
                              "data_dir": str(self.root) if self.root else None, "output_dir": str(run_dir)})

    def _cell_log(self, cell: Cell):
        return lambda *parts: self.log(f"  {cell.id}:", *parts)

    def _train(self, cell: Cell) -> dict[str, Any]:
        from softprompt.train import trainer as trainer_module

        run_dir = self.cell_dir(cell) / "run"
        cfg = self._config(cell, run_dir)
        resume = run_dir.exists()  # an earlier attempt started: continue from its last valid checkpoint
        if resume:
            self.log(f"  {cell.id}: resuming (an earlier attempt left {run_dir})")
        summary = trainer_module.train(cfg, backbone=self.backbone(cell.backbone, cell.backbone_mode), resume=resume,
                                       log=self._cell_log(cell))
        result = self._train_result(cell, summary, run_dir)
        if cell.timing:
            result.update(self._time_inference(cell, run_dir, cfg))
        self._drop_checkpoints(run_dir)
        return result

    def _train_result(self, cell: Cell, summary: dict, run_dir: Path) -> dict[str, Any]:
        scores = summary.get("best_scores") or {}
        throughput = [s for s in summary.get("epoch_samples_per_s") or [] if s]
        return {
            "score": scores.get(cell.metric, summary.get("best")), "scores": scores, "split": cell.split,
            "examples": summary.get("eval_examples"), "train_examples": summary.get("train_examples"),
            "trainable_params": summary.get("trainable_params"), "time_to_best_s": summary.get("time_to_best_s"),
            "train_seconds": summary.get("train_seconds"), "steps": summary.get("steps"),
            "best_step": summary.get("best_step"), "epochs_run": len(throughput),
            "train_s_per_sample": (1.0 / (sum(throughput) / len(throughput))) if throughput else None,
            "train_s_per_sample_epoch1": (1.0 / throughput[0]) if throughput else None,
            "run_dir": os.path.relpath(run_dir, self.cell_dir(cell)), "summary": summary,
        }

    def _time_inference(self, cell: Cell, run_dir: Path, cfg) -> dict[str, Any]:
        """Seconds per example of a forward pass over the eval split (data loading excluded)."""
        from softprompt.tasks import load_split
        from softprompt.train.batches import encode
        from softprompt.train.evaluate import predict_logits
        from softprompt.train.inference import load_run_adapter

        model, _ = load_run_adapter(run_dir, backbone=self.backbone(cell.backbone, cell.backbone_mode))
        examples = load_split(cell.task, cfg.eval_split, cfg.data_dir, cfg.eval_limit, 0)
        enc = encode(model.backbone.tokenizer, examples, cfg.max_length)
        t0 = time.perf_counter()
        predict_logits(model, enc, cfg.eval_batch_size, model.backbone.tokenizer)
        seconds = time.perf_counter() - t0
        return {"infer_s_per_sample": seconds / max(len(enc), 1), "infer_examples": len(enc),
                "infer_batch_size": cfg.eval_batch_size}

    def _drop_checkpoints(self, run_dir: Path) -> None:
        if self.keep_checkpoints:
            return
        for ckpt in run_dir.glob("ckpt-*"):
            shutil.rmtree(ckpt, ignore_errors=True)

    def _load_source(self, cell: Cell):
        from softprompt.train.inference import load_run_adapter

        src = self.cell_dir(cell.needs) / "run"
        model, meta = load_run_adapter(src, backbone=self.backbone(cell.backbone, cell.backbone_mode))
        return src, model, meta

    def _eval(self, cell: Cell) -> dict[str, Any]:
        from softprompt.tasks import get_task
        from softprompt.train.inference import evaluate_adapter

        src, model, meta = self._load_source(cell)
        if cell.same_labels:  # declared in the spec: label i means the same in both tasks (MRPC <-> QQP)
            model.adapter_meta = {**meta, "label_names": list(get_task(cell.eval_task).label_names)}
        t0 = time.perf_counter()
        res = evaluate_adapter(src, cell.eval_task, cell.split, self.root, cell.limit, model=model)
        scores = res["scores"]
        return {"score": scores.get(cell.metric, scores.get("main")), "scores": scores, "split": res["split"],
                "examples": res["examples"], "truncated": res["truncated"], "eval_seconds": time.perf_counter() - t0,
                "data": res["data"]}

    def _few_shot(self, cell: Cell) -> dict[str, Any]:
        from softprompt.adapter import read_tensors, WEIGHTS
        from softprompt.train.inference import adapter_dir
        from softprompt.train.trainer import Trainer

        run_dir = self.cell_dir(cell) / "run"
        cfg = self._config(cell, run_dir, task=cell.eval_task)
        src = adapter_dir(self.cell_dir(cell.needs) / "run") / WEIGHTS
        log = self._cell_log(cell)
        resume = run_dir.exists()
        trainer = Trainer(cfg, self.backbone(cell.backbone, cell.backbone_mode), resume, log).setup()
        loaded, skipped = warm_start(trainer.unwrapped, read_tensors(src))
        log(f"warm start from {cell.needs}: {loaded} tensors" + (f", kept fresh: {', '.join(skipped)}" if skipped else ""))
        summary = trainer.train()
        result = self._train_result(cell, summary, run_dir)
        final = last_eval(run_dir / "metrics.jsonl")
        if final is not None:  # the model after the last epoch: no selection on the scored split
            result.update(score=final.get(cell.metric, final.get("main")), scores=final,
                          best_score=(summary.get("best_scores") or {}).get(cell.metric))
        result.update(warm_start_tensors=loaded, fresh_tensors=skipped, few_shot_examples=summary.get("train_examples"))
        self._drop_checkpoints(run_dir)
        return result

    def _zero_shot(self, cell: Cell) -> dict[str, Any]:
        from softprompt.train.inference import evaluate_zero_shot

        t0 = time.perf_counter()
        res = evaluate_zero_shot(cell.backbone, cell.eval_task, cell.split, self.root, cell.limit,
                                 max_length=cell.max_length or 256, backbone=self.backbone(cell.backbone))
        scores = res["scores"]
        return {"score": scores.get(cell.metric, scores.get("main")), "scores": scores, "split": res["split"],
                "examples": res["examples"], "truncated": res["truncated"], "eval_seconds": time.perf_counter() - t0,
                "infer_s_per_sample": (time.perf_counter() - t0) / max(res["examples"], 1), "data": res["data"]}

    def _params(self, cell: Cell) -> dict[str, Any]:
        from softprompt.commands.params import parameter_table

        bb = self.backbone(cell.backbone)
        rows = parameter_table(bb, list(cell.params["methods"]), cell.params["num_labels"])
        return {"rows": rows, "backbone_params": bb.num_parameters(), "num_labels": cell.params["num_labels"]}


def warm_start(model, tensors: dict) -> tuple[int, list[str]]:
    """Copy a trained adapter's tensors into `model` where names and shapes match."""
    import torch

    state = model.adapter_state()  # shares storage with the parameters
    loaded, skipped = 0, []
    with torch.no_grad():
        for name, target in state.items():
            value = tensors.get(name)
            if value is not None and tuple(value.shape) == tuple(target.shape):
                target.copy_(value.to(target.dtype))
                loaded += 1
            else:
                skipped.append(name)
    return loaded, skipped


def last_eval(metrics_path: Path) -> dict | None:
    if not metrics_path.exists():
        return None
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    evals = [r["eval"] for r in rows if "eval" in r]
    return evals[-1] if evals else None


def load_results(spec_dir: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(Path(spec_dir).glob(f"*/{RESULT}")):
        try:
            out[path.parent.name] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return out


def run_grid(spec: Spec | str | Path, profile: str = "quick", out: str | Path = "runs/bench", data_dir=None,
             only: str | None = None, log: Callable[[str], Any] | None = print, keep_checkpoints: bool = False,
             fail_fast: bool = False, command: str | None = None) -> dict[str, Any]:
    """Run (or continue) every cell of a spec; returns counts and where the results are."""
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    spec = spec.for_profile(profile)
    out = Path(out)
    spec_dir = out / spec.name
    spec_dir.mkdir(parents=True, exist_ok=True)
    logger = Log(spec_dir / "bench.log", log)
    cells = expand(spec, None, data_dir)
    chosen = select(cells, only)

    manifest_path = spec_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if manifest.get("profile") not in (None, profile):
        raise ConfigError(f"{spec_dir} holds results of profile {manifest['profile']!r}, not {profile!r}; "
                          f"use another --out (e.g. {out}-{profile}) or remove that folder")
    existing = load_results(spec_dir)
    stale = [c.id for c in cells if c.id in existing and existing[c.id].get("cell_key") != c.key()]
    if stale:
        raise ConfigError(f"{spec_dir}: {len(stale)} finished cell(s) were made with another configuration "
                          f"(e.g. {stale[0]}); the spec changed since: use another --out or remove them")

    runner = GridRunner(spec, out, data_dir, logger, keep_checkpoints)
    entry = {"command": command or " ".join(sys.argv), "profile": profile, "only": only, "started": _now(),
             "git_commit": runner.provenance["commit"], "git_dirty": runner.provenance["dirty"],
             "machine": runner.provenance["machine"], "data_dir": str(runner.root) if runner.root else "datasets hub",
             "status": "running"}
    manifest.update({
        "spec": spec.name, "title": spec.title, "reference": spec.reference, "description": spec.description,
        "path": spec.path, "profile": profile, "backbones": spec.backbones, "seeds": spec.seeds,
        "methods": [{"label": m.label, "soft_prompt": m.soft_prompt, "config": m.config} for m in spec.methods],
        "tasks": spec.tasks, "eval_tasks": [dataclasses.asdict(t) for t in spec.eval_tasks],
        "pairs": [dataclasses.asdict(p) for p in spec.pairs],
        "few_shot": {**spec.few_shot, "pairs": [dataclasses.asdict(p) for p in spec.few_shot["pairs"]]}
        if spec.few_shot else None,
        "zero_shot": {"backbone": spec.zero_shot["backbone"]} if spec.zero_shot else None,
        "layers": spec.layers, "metric": spec.metric, "published": spec.published, "cells": len(cells),
    })
    manifest.setdefault("runs", []).append(entry)
    write_json_atomic(manifest_path, manifest)
    write_json_atomic(spec_dir / "skipped.json", [{"cell": c.id, "reason": c.skip} for c in cells if c.skip])

    done = [c for c in chosen if (spec_dir / c.id / RESULT).exists()]
    todo = [c for c in chosen if c not in done]
    logger(f"bench {spec.name} (profile {profile}): {len(cells)} cells, {len(chosen)} selected, "
           f"{len(done)} already finished, {sum(1 for c in todo if c.skip)} skipped, "
           f"{sum(1 for c in todo if not c.skip)} to run -> {spec_dir}")
    t_start = time.perf_counter()
    failed: dict[str, str] = {}
    ran: list[str] = []
    status = "interrupted"
    try:
        for i, cell in enumerate(todo, 1):
            if cell.skip:
                logger(f"skip {cell.id}: {cell.skip}")
                continue
            if cell.needs in failed:
                failed[cell.id] = f"needs {cell.needs}, which failed"
                logger(f"skip {cell.id}: {failed[cell.id]}")
                continue
            logger(f"[{i}/{len(todo)}] {cell.kind} {cell.id}")
            t0 = time.perf_counter()
            try:
                result = runner.run(cell)
            except Exception as err:  # one broken cell does not stop the grid (unless --fail-fast)
                failed[cell.id] = f"{type(err).__name__}: {err}"
                logger(f"FAILED {cell.id}: {failed[cell.id]}")
                with open(spec_dir / "bench.log", "a") as fh:
                    fh.write(traceback.format_exc())
                if fail_fast:
                    raise
                continue
            write_json_atomic(spec_dir / cell.id / RESULT, result)
            ran.append(cell.id)
            score = result.get("score")
            logger(f"done {cell.id} in {time.perf_counter() - t0:.1f}s"
                   + (f": {cell.metric} {score:.2f}" if isinstance(score, (int, float)) else ""))
        status = "failures" if failed else "complete"
    finally:
        entry.update(finished=_now(), wall_s=round(time.perf_counter() - t_start, 1), status=status, ran=len(ran),
                     failed=failed, already_finished=len(done), skipped=sum(1 for c in todo if c.skip))
        write_json_atomic(manifest_path, manifest)
    logger(f"bench {spec.name}: ran {len(ran)}, failed {len(failed)}, already finished {len(done)}, skipped "
           f"{sum(1 for c in todo if c.skip)} in {time.perf_counter() - t_start:.0f}s")
    return {"spec": spec.name, "dir": str(spec_dir), "cells": len(cells), "selected": len(chosen), "ran": ran,
            "failed": failed, "already_finished": [c.id for c in done],
            "skipped": {c.id: c.skip for c in todo if c.skip}, "wall_s": time.perf_counter() - t_start}


def main(argv: list[str] | None = None) -> int:
    from softprompt.commands import bench

    return bench.main(argv, prog="python -m softprompt.experiments.grid")


if __name__ == "__main__":
    sys.exit(main())
