"""Run one cell of a grid: train, peft baseline, evaluate a trained run elsewhere, few-shot, zero-shot, parameters.

Generation tasks (kind "generation": "<task>-t2t" views, E2E) are scored by greedy generated
output everywhere: a train cell's selected adapter is scored once more on the reported split with
every metric (METEOR too) and its outputs written to run/test/; eval cells (cross-domain) and
zero-shot cells (an instruction model generating the answer) write <cell>/outputs/outputs.jsonl
and scores.json. Cell files keep the scores (incl. `unparseable` for text-to-text views) and the
path of the outputs.

Run folders go to <runs>/<spec>/<cell-id>/run/ (store.py); the returned result becomes the cell
file. A cell that needs another cell's adapter (eval, few-shot) finds it in that cell's run folder (a
few-shot method started from another method's run gets that adapter folder wherever its config says
"{source}": SPoT's init_from, ATTEMPT's sources, MPT's shared_from);
on a fresh clone, where only the committed cell file of the source exists, the source is trained
again into its run folder first (same config and seed; its committed cell file is left as it is),
and the result says so (`source_retrained`).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

from softprompt.experiments.cells import SCHEMA, Cell, Log, now_iso, git_commit, machine
from softprompt.experiments.spec import Spec
from softprompt.experiments.store import Store

CURVE_POINTS = 60  # per series in a cell file


class GridRunner:
    with_meteor = True  # METEOR runs Java (~20 s to start); tests switch it off

    def __init__(self, spec: Spec, store: Store, data_dir=None, log: Log | None = None, keep_checkpoints: bool = False,
                 cells: dict[str, Cell] | None = None, mixed_precision: str | None = None, command: str | None = None,
                 worker: int | None = None):
        from softprompt import settings

        self.spec, self.store, self.log = spec, store, log or Log(None)
        self.root = settings.data_dir(data_dir)
        self.keep_checkpoints = keep_checkpoints
        self.cells = cells or {}  # id -> Cell: the sources of eval / few-shot cells
        self.mixed_precision, self.command, self.worker = mixed_precision, command, worker
        self._backbones: dict[str, Any] = {}
        self.provenance = {**git_commit(), "machine": machine()}

    @property
    def device(self):
        import torch

        return torch.device("cuda") if torch.cuda.is_available() else None

    # backbones are loaded once (on the GPU when there is one); methods that change the weights get a copy
    def backbone(self, name: str, mode: str = "frozen"):
        if name not in self._backbones:
            from softprompt.backbones import load_backbone

            bb = load_backbone(name)
            bb.fingerprint()  # of the pristine weights, inherited by the copies below
            if self.device is not None:
                bb.model.to(self.device)
            self._backbones[name] = bb
        bb = self._backbones[name]
        if mode == "frozen":
            return bb
        clone = copy.copy(bb)
        clone.model = copy.deepcopy(bb.model)
        return clone

    def cell_dir(self, cell: Cell | str) -> Path:
        return self.store.work_dir / (cell if isinstance(cell, str) else cell.id)

    def run(self, cell: Cell) -> dict[str, Any]:
        t0 = time.perf_counter()
        handler = {"train": self._train, "peft": self._peft, "eval": self._eval, "few-shot": self._few_shot,
                   "zero-shot": self._zero_shot, "params": self._params}[cell.kind]
        result = handler(cell)
        result.update({
            "schema": SCHEMA, "spec": self.spec.name, "profile": self.spec.profile, "cell": cell.id,
            "cell_key": cell.key(), "kind": cell.kind, "method": cell.method, "method_config": cell.method_config,
            "soft_prompt": cell.soft_prompt, "backbone": cell.backbone, "task": cell.task,
            "eval_task": cell.eval_task, "seed": cell.seed, "layer": cell.layer, "metric": cell.metric,
            "needs": cell.needs, "train_config": cell.train, "wall_s": time.perf_counter() - t0, "finished": now_iso(),
            "git_commit": self.provenance["commit"], "git_dirty": self.provenance["dirty"],
            "machine": self.provenance["machine"], "command": self.command, "worker": self.worker,
        })
        if self.mixed_precision and cell.kind in ("train", "few-shot"):
            result["mixed_precision"] = self.mixed_precision
        result.setdefault("split", cell.split)
        return result

    def _config(self, cell: Cell, run_dir: Path, task: str | None = None, source: Path | None = None):
        from softprompt.train.config import TrainConfig

        extra = {"mixed_precision": self.mixed_precision} if self.mixed_precision else {}
        method = "prompt-tuning" if cell.kind == "peft" else copy.deepcopy(cell.method_config)  # peft: unused
        if source is not None:  # few_shot.sources: the source run's adapter folder where the config says "{source}"
            method = with_source(method, str(source))
        return TrainConfig(**{**cell.train, **extra, "backbone": cell.backbone, "task": task or cell.task,
                              "method": method, "seed": cell.seed,
                              "data_dir": str(self.root) if self.root else None, "output_dir": str(run_dir)})

    def _cell_log(self, cell: Cell):
        return lambda *parts: self.log(f"  {cell.id}:", *parts)

    def _train(self, cell: Cell) -> dict[str, Any]:
        run_dir, summary = self._train_run(cell)
        result = self._train_result(cell, summary, run_dir)
        if self._generative(cell.task):
            result.update(self._test_outputs(cell, run_dir, summary))
        if cell.timing:
            result.update(self._time_inference(cell, run_dir, self._config(cell, run_dir)))
        self._drop_checkpoints(run_dir)
        return result

    @staticmethod
    def _generative(task: str | None) -> bool:
        from softprompt.tasks import get_task

        return task is not None and get_task(task).is_generation

    def _test_outputs(self, cell: Cell, run_dir: Path, summary: dict) -> dict[str, Any]:
        """The selected adapter on the reported split once more, greedy as in the trainer, with every metric
        (METEOR too) and the per-example outputs in run/test/ (the trainer keeps scores only)."""
        from softprompt.train.generation_eval import evaluate_generation
        from softprompt.train.inference import load_run_adapter

        cfg = self._config(cell, run_dir)
        model, _ = load_run_adapter(run_dir, backbone=self.backbone(cell.backbone, cell.backbone_mode))
        if self.device is not None:
            model.to(self.device)
        res = evaluate_generation(model, cell.task, cfg.eval_split, self.root, cfg.eval_limit, cfg.max_length,
                                  cfg.chat_template, cfg.eval_batch_size, out_dir=run_dir / "test",
                                  with_meteor=self.with_meteor)
        trainer_scores = (summary.get("test") or {}).get("scores") or {}
        scores = res["scores"]
        return {"score": scores.get(cell.metric, scores.get("main")), "scores": scores, "outputs": res["outputs"],
                "max_new_tokens": res["max_new_tokens"], "decoding": res["decoding"],
                "trainer_test_main": trainer_scores.get("main"),
                "outputs_match_trainer": None if trainer_scores.get("main") is None  # unknown, not a match
                else abs(float(trainer_scores["main"]) - float(scores["main"])) < 1e-6}

    def _peft(self, cell: Cell) -> dict[str, Any]:
        """A peft-library baseline: same data, batches, loss, epochs and seed as a train cell (peft_baseline.py)."""
        from softprompt.experiments.peft_baseline import train_peft

        run_dir = self.cell_dir(cell) / "run"
        if run_dir.exists():  # no checkpoints: an interrupted peft run starts over
            shutil.rmtree(run_dir)
        cfg = self._config(cell, run_dir)
        summary = train_peft(cfg, cell.method_config["peft"], self.backbone(cell.backbone), log=self._cell_log(cell),
                             where=f"methods {cell.method}.peft", with_meteor=self.with_meteor)
        result = self._train_result(cell, summary, run_dir)
        result.update(outputs=summary["test"]["outputs"], decoding="greedy", lr=summary["lr"],
                      library="peft " + __import__("peft").__version__)
        return result

    def _train_run(self, cell: Cell) -> tuple[Path, dict]:
        """Train a cell into its run folder (continuing an interrupted attempt); returns it and the summary."""
        from softprompt.train import trainer as trainer_module

        run_dir = self.cell_dir(cell) / "run"
        cfg = self._config(cell, run_dir)
        resume = run_dir.exists()  # an earlier attempt started: continue from its last valid checkpoint
        if resume:
            self.log(f"  {cell.id}: resuming (an earlier attempt left {run_dir})")
        summary = trainer_module.train(cfg, backbone=self.backbone(cell.backbone, cell.backbone_mode), resume=resume,
                                       log=self._cell_log(cell))
        return run_dir, summary

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
            "run_dir": str(run_dir), "summary": summary, "curve": curve(run_dir / "metrics.jsonl", cell.metric),
        }

    def _time_inference(self, cell: Cell, run_dir: Path, cfg) -> dict[str, Any]:
        """Seconds per example of a forward pass over the eval split (data loading excluded)."""
        from softprompt.tasks import load_split
        from softprompt.train.batches import encode
        from softprompt.train.evaluate import predict_logits
        from softprompt.train.inference import load_run_adapter

        model, _ = load_run_adapter(run_dir, backbone=self.backbone(cell.backbone, cell.backbone_mode))
        if self.device is not None:
            model.to(self.device)
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
        from softprompt.train.checkpoint import drop_all

        drop_all(run_dir)

    def source_run(self, cell: Cell) -> tuple[Path, bool]:
        """The run folder with the adapter `cell` needs; trains the source again when it is not here."""
        from softprompt.adapter import WEIGHTS
        from softprompt.experiments.claims import Claim
        from softprompt.train.inference import adapter_dir

        from softprompt.experiments.peft_baseline import ADAPTER

        run_dir = self.cell_dir(cell.needs) / "run"
        source = self.cells.get(cell.needs)
        peft = source is not None and source.kind == "peft"

        def ready() -> bool:
            return (run_dir / ADAPTER).is_dir() if peft else (adapter_dir(run_dir) / WEIGHTS).exists()

        if ready():
            return run_dir, False
        if source is None:
            raise RuntimeError(f"needs the adapter of {cell.needs} in {run_dir}, which is not here, and that cell "
                               f"is not part of this grid to train it again")
        with Claim.acquire(self.store.claim_path(f"{source.id}.retrain"), wait=True):  # one worker retrains
            if ready():
                return run_dir, False
            self.log(f"  {cell.id}: the run folder of {source.id} is not here (a fresh clone?): training it again")
            if peft:
                self._peft(source)
            else:
                self._train_run(source)
            self._drop_checkpoints(run_dir)
        return run_dir, True

    def _load_source(self, cell: Cell):
        from softprompt.train.inference import load_run_adapter

        src, retrained = self.source_run(cell)
        model, meta = load_run_adapter(src, backbone=self.backbone(cell.backbone, cell.backbone_mode))
        if self.device is not None:
            model.to(self.device)
        return src, model, meta, retrained

    def _eval(self, cell: Cell) -> dict[str, Any]:
        from softprompt.tasks import get_task
        from softprompt.train.inference import evaluate_adapter

        if self._generative(cell.eval_task):
            return self._eval_generation(cell)
        src, model, meta, retrained = self._load_source(cell)
        if cell.same_labels:  # declared in the spec: label i means the same in both tasks (MRPC <-> QQP)
            model.adapter_meta = {**meta, "label_names": list(get_task(cell.eval_task).label_names)}
        t0 = time.perf_counter()
        res = evaluate_adapter(src, cell.eval_task, cell.split, self.root, cell.limit, max_length=cell.max_length,
                               model=model)
        scores = res["scores"]
        return {"score": scores.get(cell.metric, scores.get("main")), "scores": scores, "split": res["split"],
                "examples": res["examples"], "truncated": res["truncated"], "eval_seconds": time.perf_counter() - t0,
                "data": res["data"], "source_retrained": retrained, "max_length": res["max_length"],
                **({"eval_max_length": cell.max_length} if cell.max_length else {})}

    def _eval_generation(self, cell: Cell) -> dict[str, Any]:
        """A generative adapter (or a peft baseline) scored on another generation task by generated output."""
        from softprompt.experiments.peft_baseline import evaluate_peft
        from softprompt.train.generation_eval import evaluate_generation

        source = self.cells.get(cell.needs)
        out_dir = self.cell_dir(cell) / "outputs"
        t0 = time.perf_counter()
        if source is not None and source.kind == "peft":
            src, retrained = self.source_run(cell)
            cfg = self._config(source, src)
            res = evaluate_peft(src, self.backbone(cell.backbone), cell.eval_task, cell.split, self.root, cell.limit,
                                cfg.max_length, cfg.chat_template, cfg.eval_batch_size, out_dir=out_dir,
                                with_meteor=self.with_meteor)
        else:
            src, model, meta, retrained = self._load_source(cell)
            if not meta.get("generative"):
                raise RuntimeError(f"{cell.needs} trained a classifier ({meta.get('task')}); a generation task "
                                   f"({cell.eval_task}) scores generative adapters only")
            train = dict(source.train or {}) if source is not None else {}
            res = evaluate_generation(model, cell.eval_task, cell.split, self.root, cell.limit,
                                      train.get("max_length", 128), bool(train.get("chat_template", False)),
                                      train.get("eval_batch_size", 64), out_dir=out_dir,
                                      with_meteor=self.with_meteor)
        scores = res["scores"]
        return {"score": scores.get(cell.metric, scores.get("main")), "scores": scores, "split": res["split"],
                "examples": res["examples"], "truncated": res["truncated"], "eval_seconds": time.perf_counter() - t0,
                "data": res["data"], "source_retrained": retrained, "outputs": res["outputs"], "decoding": "greedy"}

    def _few_shot(self, cell: Cell) -> dict[str, Any]:
        from softprompt.adapter import WEIGHTS, read_tensors
        from softprompt.train.inference import adapter_dir
        from softprompt.train.trainer import Trainer

        src_run, retrained = self.source_run(cell)
        run_dir = self.cell_dir(cell) / "run"
        cfg = self._config(cell, run_dir, task=cell.eval_task, source=adapter_dir(src_run))
        log = self._cell_log(cell)
        resume = run_dir.exists()
        trainer = Trainer(cfg, self.backbone(cell.backbone, cell.backbone_mode), resume, log).setup()
        loaded, skipped = warm_start(trainer.unwrapped, read_tensors(adapter_dir(src_run) / WEIGHTS))
        log(f"warm start from {cell.needs}: {loaded} tensors" + (f", kept fresh: {', '.join(skipped)}" if skipped else ""))
        summary = trainer.train()
        result = self._train_result(cell, summary, run_dir)
        selected_on = (summary.get("selection") or {}).get("split")
        final = last_eval(run_dir / "metrics.jsonl") if selected_on in (None, cell.split) else None
        if final is not None:  # selection ran on the scored split: report the model after the last epoch instead
            result.update(score=final.get(cell.metric, final.get("main")), scores=final,
                          best_score=(summary.get("best_scores") or {}).get(cell.metric))
        result.update(warm_start_tensors=loaded, fresh_tensors=skipped, few_shot_examples=summary.get("train_examples"),
                      source_retrained=retrained)
        self._drop_checkpoints(run_dir)
        return result

    def _zero_shot(self, cell: Cell) -> dict[str, Any]:
        from softprompt.train.inference import evaluate_zero_shot

        if cell.generation is not None:
            return self._zero_shot_generation(cell)
        t0 = time.perf_counter()
        res = evaluate_zero_shot(cell.backbone, cell.eval_task, cell.split, self.root, cell.limit,
                                 max_length=cell.max_length or 256, backbone=self.backbone(cell.backbone))
        scores = res["scores"]
        return {"score": scores.get(cell.metric, scores.get("main")), "scores": scores, "split": res["split"],
                "examples": res["examples"], "truncated": res["truncated"], "eval_seconds": time.perf_counter() - t0,
                "infer_s_per_sample": (time.perf_counter() - t0) / max(res["examples"], 1), "data": res["data"]}

    def _zero_shot_generation(self, cell: Cell) -> dict[str, Any]:
        from softprompt.train.generation_eval import evaluate_zero_shot_generation

        t0 = time.perf_counter()
        res = evaluate_zero_shot_generation(self.backbone(cell.backbone), cell.eval_task, cell.split, self.root,
                                            cell.limit, max_length=cell.max_length or 256,
                                            instruction=cell.generation.get("instruction"),
                                            max_new_tokens=cell.generation.get("max_new_tokens"),
                                            out_dir=self.cell_dir(cell) / "outputs", with_meteor=self.with_meteor)
        scores = res["scores"]
        seconds = time.perf_counter() - t0
        return {"score": scores.get(cell.metric, scores.get("main")), "scores": scores, "split": res["split"],
                "examples": res["examples"], "truncated": res["truncated"], "eval_seconds": seconds,
                "infer_s_per_sample": seconds / max(res["examples"], 1), "data": res["data"],
                "outputs": res["outputs"], "decoding": res["decoding"], "max_new_tokens": res["max_new_tokens"],
                "chat_template": res["chat_template"], "instruction_example": res["instruction_example"]}

    def _params(self, cell: Cell) -> dict[str, Any]:
        from softprompt.experiments.params import parameter_table

        bb = self.backbone(cell.backbone)
        rows = parameter_table(bb, list(cell.params["methods"]), cell.params["num_labels"])
        return {"rows": rows, "backbone_params": bb.num_parameters(), "num_labels": cell.params["num_labels"]}


def with_source(value, folder: str):
    """A method config with every "{source}" (spec.SOURCE) replaced by the source run's adapter folder."""
    from softprompt.experiments.spec import SOURCE

    if isinstance(value, dict):
        return {k: with_source(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [with_source(v, folder) for v in value]
    return folder if value == SOURCE else value


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


def _metrics(metrics_path: Path) -> list[dict]:
    if not metrics_path.exists():
        return []
    rows = []
    for line in metrics_path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def last_eval(metrics_path: Path) -> dict | None:
    evals = [r["eval"] for r in _metrics(metrics_path) if "eval" in r]
    return evals[-1] if evals else None


def curve(metrics_path: Path, metric: str | None) -> dict[str, list]:
    """The learning curve, small enough for a cell file: [step, selection score] and [step, training loss]."""
    rows = _metrics(metrics_path)
    evals = [[r["step"], round(float(r["eval"].get(metric or "main", r["eval"].get("main"))), 4)]
             for r in rows if "eval" in r and r["eval"].get(metric or "main", r["eval"].get("main")) is not None]
    losses = [[r["step"], round(float(r["loss"]), 4)] for r in rows if "loss" in r and "eval" not in r]
    return {"eval": _thin(evals), "loss": _thin(losses)}


def _thin(points: list, most: int = CURVE_POINTS) -> list:
    if len(points) <= most:
        return points
    step = len(points) / most
    return [points[int(i * step)] for i in range(most - 1)] + [points[-1]]
