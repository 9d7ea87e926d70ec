"""Expand a spec into cells and run them, resumably, with one or more workers.

Cells, in the order they run (a cell's dependency always comes first):

* train      method x task x backbone x seed (x layer m for a sweep) through the trainer
* peft       a peft-library baseline (method entry with `peft:`) on the same data, batches and loss
             (experiments/peft_baseline.py); generation tasks on decoders
* eval       a trained run evaluated on another task/split (cross-domain, zero-shot transfer A -> B)
* few-shot   a trained run on A, training continued on `examples` examples of B, scored on B (or, for a
             method in few_shot.sources, started from another method's run on A: SPoT, ATTEMPT, MPT)
* zero-shot  an instruction model prompted zero-shot (no training), the cross-domain baseline
* params     trainable parameters of every method on a backbone (no training)

Layout (store.py): a finished cell is one small JSON file, results/<profile>/<spec>/cells/<id>.json
(written atomically, committed to git, never redone); its run folder (adapter, checkpoints,
metrics.jsonl) is runs/<profile>/<spec>/<id>/run/ (git-ignored). A cell interrupted mid-training
continues from its last checkpoint. results/<profile>/<spec>/ also holds manifest.json (spec,
profile, every bench invocation with command, commit, machine, times) and skipped.json (cells
that cannot run here and why); runs/<profile>/<spec>/bench.log is the log. Workers: workers.py;
where cells run (--executor local|ray|slurm): executors/.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from softprompt.errors import ConfigError
from softprompt.methods import method_config
from softprompt.experiments.spec import Spec, load_spec
from softprompt.experiments.cells import SCHEMA, Cell, Log, now_iso, git_commit, machine  # noqa: F401 (public here too)
from softprompt.experiments.store import Store, write_json_atomic  # noqa: F401 (write_json_atomic: public here too)

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
        _LAYER_COUNTS[backbone] = runner_for(bb.model, bb.kind).num_layers
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


def _check_peft_backbone(spec: Spec, label: str, backbone: str) -> None:
    from softprompt.backbones.registry import get_spec

    bs = get_spec(backbone)
    if bs is not None and bs.kind != "decoder":
        raise ConfigError(f"spec {spec.name}: methods {label}: the peft baseline trains decoders (causal LM); "
                          f"backbone {backbone} is {bs.kind}")


def expand(spec: Spec | str | Path, profile: str | None = "quick", data_dir=None) -> list[Cell]:
    """Every cell of a spec under a profile, dependencies first; cells that cannot run carry `skip`."""
    from softprompt import settings

    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    if profile is not None and spec.profile != profile:
        spec = spec.for_profile(profile)
    grid = _Grid(spec, settings.data_dir(data_dir))
    trained = grid.training_cells()
    grid.evaluation_cells(trained)
    grid.few_shot_cells(trained)
    grid.skip_unused_sources(trained)
    grid.zero_shot_cells()
    grid.params_cells()
    return grid.cells


class _Grid:
    """The cells of one spec as they are added, each id once, dependencies first."""

    def __init__(self, spec: Spec, root):
        self.spec, self.root = spec, root
        self.cells: list[Cell] = []
        self.ids: set[str] = set()
        self.few = spec.few_shot or {}

    def add(self, cell: Cell) -> Cell:
        if cell.id not in self.ids:
            self.ids.add(cell.id)
            self.cells.append(cell)
        return cell

    def train_kwargs(self, task: str, label: str, extra: dict | None = None) -> dict:
        spec = self.spec
        kw = _merge(spec.train, spec.task_overrides.get(task), spec.method_overrides.get(label), extra)
        kw.setdefault("eval_split", default_split(task))
        kw.setdefault("progress", False)
        return kw

    @staticmethod
    def check_config(kw: dict, where: str) -> None:
        from softprompt.config import from_dict
        from softprompt.train.config import TrainConfig

        from_dict(TrainConfig, dict(kw), where)

    def limit_for(self, target_limit: int | None) -> int | None:
        limits = [x for x in (target_limit, self.spec.eval_limit) if x is not None]
        return min(limits) if limits else None

    def _layers(self, backbone: str) -> list[int | None]:
        spec = self.spec
        if spec.layers == "all":
            return list(range(num_layers(backbone)))
        if spec.layers is None:
            return [None]
        layers = list(spec.layers)
        bad = [m for m in layers if m >= num_layers(backbone)]
        if bad:
            raise ConfigError(f"spec {spec.name}: layers: {bad} out of range for {backbone} "
                              f"({num_layers(backbone)} layers: 0..{num_layers(backbone) - 1})")
        return layers

    def training_cells(self) -> list[Cell]:
        spec = self.spec
        train_tasks = list(spec.tasks)
        for p in list(spec.pairs) + list(self.few.get("pairs") or []):
            if p.train not in train_tasks:
                train_tasks.append(p.train)
        sourced = self.few.get("sources") or {}  # few-shot only: they start from another method's run
        trained: list[Cell] = []
        for backbone in spec.backbones if spec.methods else []:
            layers = self._layers(backbone)
            for task in train_tasks:
                for m in spec.methods:
                    if m.label not in sourced:
                        trained += self._method_cells(m, backbone, task, layers)
        return trained

    def _method_cells(self, m, backbone: str, task: str, layers: list[int | None]) -> list[Cell]:
        spec = self.spec
        if m.peft is not None:
            _check_peft_backbone(spec, m.label, backbone)
        kw = self.train_kwargs(task, m.label)
        self.check_config(kw, f"spec {spec.name}: training config for {m.label} on {task}")
        reason = (_offline_reason(task, "train", self.root, f"training on {task}")
                  or _offline_reason(task, kw["eval_split"], self.root, f"training on {task}"))
        out = []
        for layer in layers:
            config = copy.deepcopy(m.config)
            if layer is not None and m.peft is None:  # through the typed API, so a bad layer is named as a config error
                config = method_config(config).with_site(kind="layer", layer=layer).to_dict()
            for seed in spec.seeds:
                cid = f"{_slug(m.label)}_{task}_{_slug(backbone)}_s{seed}" + (f"_m{layer}" if layer is not None else "")
                out.append(self.add(Cell(
                    cid, "peft" if m.peft is not None else "train", backbone, m.label, config, m.soft_prompt,
                    m.backbone_mode, task=task, split=kw["eval_split"], seed=seed, layer=layer, train=kw,
                    metric=spec.metric_for(task), timing=spec.timing, skip=reason)))
        return out

    def _eval_cell(self, src: Cell, task: str, split: str | None, limit: int | None, same_labels: bool,
                   max_length: int | None = None) -> None:
        split = split or default_split(task)
        reason = src.skip and f"needs {src.id}, which is skipped: {src.skip}"
        reason = reason or _offline_reason(task, split, self.root, f"evaluating on {task}")
        self.add(Cell(f"{src.id}__{task}-{split}", "eval", src.backbone, src.method, src.method_config,
                      src.soft_prompt, src.backbone_mode, task=src.task, eval_task=task, split=split, seed=src.seed,
                      layer=src.layer, limit=self.limit_for(limit), needs=src.id, same_labels=same_labels,
                      metric=self.spec.metric_for(task), max_length=max_length, skip=reason))

    def evaluation_cells(self, trained: list[Cell]) -> None:
        for src in trained:
            if src.task in self.spec.tasks:
                for target in self.spec.eval_tasks:
                    self._eval_cell(src, target.task, target.split, target.limit, False, target.max_length)
        for pair in self.spec.pairs:
            for src in trained:
                if src.task == pair.train and src.layer is None:
                    self._eval_cell(src, pair.eval, pair.split, None, pair.same_labels)

    def few_shot_cells(self, trained: list[Cell]) -> None:
        """A run on A, training continued on B: each few-shot method from its own run on A, or (few_shot.sources)
        from another method's, whose adapter folder its config names as "{source}"."""
        spec, few = self.spec, self.few
        sources = few.get("sources") or {}
        starts: dict[str, list[str]] = {}  # method trained on A -> the few-shot methods that start from it
        for label in few.get("methods") or []:
            starts.setdefault(sources.get(label, label), []).append(label)
        for pair in few.get("pairs") or []:
            for src in trained:
                if src.task != pair.train or src.layer is not None or src.kind == "peft":
                    continue
                for label in starts.get(src.method, []):
                    self._few_shot_cell(pair, src, label, label in sources)

    def _few_shot_cell(self, pair, src: Cell, label: str, sourced: bool) -> None:
        spec, few = self.spec, self.few
        m = spec.method(label)
        split = pair.split or default_split(pair.eval)
        kw = self.train_kwargs(pair.eval, label, few.get("train"))
        kw.update(train_limit=few["examples"], eval_split=split)
        kw.setdefault("eval_limit", spec.eval_limit)
        self.check_config(kw, f"spec {spec.name}: few_shot training config for {label} on {pair.eval}")
        reason = src.skip and f"needs {src.id}, which is skipped: {src.skip}"
        reason = reason or _offline_reason(pair.eval, "train", self.root, f"few-shot training on {pair.eval}")
        reason = reason or _offline_reason(pair.eval, split, self.root, f"evaluating on {pair.eval}")
        # a method from another's run: its own label where the source's stands in the id
        cid = (_slug(label) + src.id[len(_slug(src.method)):]) if sourced else src.id
        self.add(Cell(f"{cid}__fewshot{few['examples']}-{pair.eval}", "few-shot", src.backbone, label,
                      copy.deepcopy(m.config) if sourced else src.method_config,
                      m.soft_prompt if sourced else src.soft_prompt,
                      m.backbone_mode if sourced else src.backbone_mode, task=src.task,
                      eval_task=pair.eval, split=split, seed=src.seed, train=kw, needs=src.id,
                      metric=spec.metric_for(pair.eval), skip=reason))

    def skip_unused_sources(self, trained: list[Cell]) -> None:
        """A training task that only feeds transfer cells is not trained when none of them can run here."""
        for src in trained:
            if src.skip or src.task in self.spec.tasks:
                continue
            users = [c for c in self.cells if c.needs == src.id]
            if all(c.skip for c in users):
                src.skip = (f"only needed for {', '.join(c.id for c in users)}, which cannot run here"
                            if users else "no transfer cell needs it")

    def zero_shot_cells(self) -> None:
        from softprompt.tasks import get_task

        zs = self.spec.zero_shot
        for target in (zs or {}).get("tasks", []):
            split = target.split or default_split(target.task)
            generation = None
            if get_task(target.task).is_generation:  # the instruction model generates the answer
                generation = {"instruction": zs.get("instruction"), "max_new_tokens": zs.get("max_new_tokens"),
                              "decoding": "greedy"}
            self.add(Cell(f"zero-shot_{_slug(zs['backbone'])}__{target.task}-{split}", "zero-shot", zs["backbone"],
                          method=f"zero-shot ({zs['backbone']})", eval_task=target.task, split=split,
                          limit=self.limit_for(target.limit), metric=self.spec.metric_for(target.task),
                          max_length=target.max_length or zs.get("max_length") or 256, generation=generation,
                          skip=_offline_reason(target.task, split, self.root, f"evaluating on {target.task}")))

    def params_cells(self) -> None:
        params = self.spec.params
        for backbone in (params or {}).get("backbones", []):
            self.add(Cell(f"params_{_slug(backbone)}", "params", backbone,
                          params={"methods": params["methods"], "num_labels": params["num_labels"]}))


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


def run_grid(spec: Spec | str | Path, profile: str = "quick", out: str | Path | None = None, data_dir=None,
             only: str | None = None, log: Callable[[str], Any] | None = print, keep_checkpoints: bool = False,
             fail_fast: bool = False, command: str | None = None, results: str | Path | None = None,
             runs: str | Path | None = None, workers: int = 1, commit: bool = False,
             mixed_precision: str | None = None, poll_s: float = 1.0, executor: str = "local",
             executor_flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or continue) every cell of a spec; returns counts and where the results are.

    Cell files go to `results` (default results/<profile>), run folders to `runs` (default
    runs/<profile>); `out` puts both there. `workers` > 1: that many processes with one thread
    each (one GPU each where there are GPUs). `commit`: git-commit every cell file as it is written.
    `mixed_precision`: no/bf16/fp16 for every training cell (not part of the cells' identity).
    `executor`: local (the pool of `workers` processes), ray or slurm (experiments/executors/), with
    `executor_flags` ({field: value or None}, executor_options.py) over the spec's `executors:`."""
    from softprompt.experiments.executor_options import resolve
    from softprompt.experiments.executors import make_executor
    from softprompt.experiments.executors.dispatch import dispatch
    from softprompt.experiments.cell_run import Job

    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    spec = spec.for_profile(profile)
    _check_options(out, results, runs, workers, mixed_precision, executor)
    options = resolve(executor, spec.executors, executor_flags or {}, f"spec {spec.name} (profile {profile}): "
                                                                      f"executors.{executor}")
    store = Store.for_profile(spec.name, profile, out, results, runs)
    store.spec_dir.mkdir(parents=True, exist_ok=True)
    store.work_dir.mkdir(parents=True, exist_ok=True)
    logger = Log(store.work_dir / "bench.log", log)
    cells = expand(spec, None, data_dir)
    chosen = select(cells, only)

    manifest_path = store.spec_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if manifest.get("profile") not in (None, profile):
        raise ConfigError(f"{store.spec_dir} holds results of profile {manifest['profile']!r}, not {profile!r}; "
                          f"use another --results/--out or remove that folder")
    migrated = store.migrate_legacy()
    if migrated:
        logger(f"copied {len(migrated)} result.json file(s) of the old layout to {store.cells_dir}")
    _check_finished(store, cells)

    entry = _start_entry(command, profile, only, data_dir, workers, store, executor, options)
    _record_run(manifest, spec, profile, cells, entry)
    write_json_atomic(manifest_path, manifest)
    write_json_atomic(store.spec_dir / "skipped.json", [{"cell": c.id, "reason": c.skip} for c in cells if c.skip])

    store.start_invocation()
    done = [c for c in chosen if store.finished(c.id)]
    todo = [c for c in chosen if c not in done]
    skipped = [c for c in todo if c.skip]
    runnable = [c for c in todo if not c.skip]
    logger(f"bench {spec.name} (profile {profile}): {len(cells)} cells, {len(chosen)} selected, "
           f"{len(done)} already finished, {len(skipped)} skipped, {len(runnable)} to run"
           + (f" by {workers} workers" if workers > 1 else "")
           + (f" on {executor}" if executor != "local" else "") + f" -> {store.cells_dir}")
    for c in skipped:
        logger(f"skip {c.id}: {c.skip}")
    job = Job(spec, store, runnable, {c.id: c for c in cells}, str(data_dir) if data_dir else None, keep_checkpoints,
              fail_fast, commit, mixed_precision, entry["command"], echo=log is not None, poll_s=poll_s,
              gpus=_visible_gpus() if workers > 1 else [])
    t_start = time.perf_counter()
    ran: list[str] = []
    status = "interrupted"
    try:
        ran = dispatch(make_executor(executor, options, workers, logger.echo), job, logger)
        status = "failures" if store.failures() else "complete"
    finally:
        failed = store.failures()
        entry.update(finished=now_iso(), wall_s=round(time.perf_counter() - t_start, 1), status=status, ran=len(ran),
                     failed=failed, already_finished=len(done), skipped=len(skipped))
        write_json_atomic(manifest_path, manifest)
    logger(f"bench {spec.name}: ran {len(ran)}, failed {len(failed)}, already finished {len(done)}, skipped "
           f"{len(skipped)} in {time.perf_counter() - t_start:.0f}s")
    return {"spec": spec.name, "dir": str(store.spec_dir), "cells_dir": str(store.cells_dir),
            "runs_dir": str(store.work_dir), "cells": len(cells), "selected": len(chosen), "ran": ran,
            "failed": failed, "already_finished": [c.id for c in done], "skipped": {c.id: c.skip for c in skipped},
            "wall_s": time.perf_counter() - t_start}


def _check_options(out, results, runs, workers, mixed_precision, executor="local") -> None:
    from softprompt.experiments.claims import LOCKS_AVAILABLE

    if out is not None and (results is not None or runs is not None):
        raise ConfigError("bench: give either --out (cell files and run folders in one place) or --results/--runs")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"bench: --workers must be a positive integer, got {workers!r}")
    if workers > 1 and executor != "local":
        raise ConfigError(f"bench: --workers is for --executor local; on {executor} every cell is a task of its own "
                          f"(resources per cell: --cpus-per-cell, --gpus-per-cell)")
    if workers > 1 and not LOCKS_AVAILABLE:
        raise ConfigError("bench: --workers > 1 needs POSIX file locks (fcntl), which this platform lacks")
    if mixed_precision not in (None, "no", "bf16", "fp16"):
        raise ConfigError(f"bench: --mixed-precision must be no, bf16 or fp16, got {mixed_precision!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("bench: run it as one process (each cell runs on this process's device; use --workers N "
                          "for one cell per GPU), not under `accelerate launch`/`torchrun` with several processes")


def _check_finished(store, cells) -> None:
    """Finished cells must match the spec as it is now, and their training cells must be finished too."""
    existing = store.load()
    stale = [c.id for c in cells if c.id in existing and existing[c.id].get("cell_key") != c.key()]
    if stale:
        raise ConfigError(f"{store.cells_dir}: {len(stale)} finished cell(s) were made with another configuration "
                          f"(e.g. {stale[0]}); the spec changed since: use another --results or remove them")
    orphans = [c for c in cells if c.needs and c.id in existing and c.needs not in existing]
    if orphans:  # their adapter will be trained anew: their scores are of the old one
        raise ConfigError(f"{store.cells_dir}: {len(orphans)} finished cell(s) score an adapter whose training cell "
                          f"is not finished (e.g. {orphans[0].id} needs {orphans[0].needs}); remove them too")


def _start_entry(command, profile, only, data_dir, workers, store, executor="local", options=None) -> dict[str, Any]:
    """This invocation's record in the manifest (updated when it ends)."""
    provenance = {**git_commit(), "machine": machine()}
    root = _data_root(data_dir)
    return {"command": command or " ".join(sys.argv), "profile": profile, "only": only, "started": now_iso(),
            "git_commit": provenance["commit"], "git_dirty": provenance["dirty"], "machine": provenance["machine"],
            "data_dir": str(root) if root else "datasets hub", "workers": workers, "runs_dir": str(store.work_dir),
            "executor": executor, **({"executor_options": dataclasses.asdict(options)} if options else {}),
            "status": "running"}


def _record_run(manifest: dict, spec: Spec, profile: str, cells: list, entry: dict) -> None:
    manifest.update({
        "spec": spec.name, "title": spec.title, "reference": spec.reference, "description": spec.description,
        "path": spec.path, "profile": profile, "backbones": spec.backbones, "seeds": spec.seeds,
        "methods": [{"label": m.label, "soft_prompt": m.soft_prompt, "config": m.config,
                     **({"sweep": m.sweep} if m.sweep else {})} for m in spec.methods],
        "tasks": spec.tasks, "eval_tasks": [dataclasses.asdict(t) for t in spec.eval_tasks],
        "pairs": [dataclasses.asdict(p) for p in spec.pairs],
        "few_shot": {**spec.few_shot, "pairs": [dataclasses.asdict(p) for p in spec.few_shot["pairs"]]}
        if spec.few_shot else None,
        "zero_shot": {"backbone": spec.zero_shot["backbone"]} if spec.zero_shot else None,
        "layers": spec.layers, "metric": spec.metric, "published": spec.published, "versus": spec.versus,
        "cells": len(cells),
    })
    manifest.setdefault("runs", []).append(entry)


def _data_root(data_dir) -> Path | None:
    from softprompt import settings

    return settings.data_dir(data_dir)


def _visible_gpus() -> list[str]:
    """The GPUs workers are spread over (CUDA_VISIBLE_DEVICES as given, else every device)."""
    import torch

    if not torch.cuda.is_available():
        return []
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given:
        return [g.strip() for g in given.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]
