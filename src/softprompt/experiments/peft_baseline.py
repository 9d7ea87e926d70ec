"""The peft library as a baseline in a grid: train `peft.get_peft_model(base, config)` on a generation
task with softprompt's data, batches, loss and schedule, generate greedily with peft, score the same way.

    method entry in a spec:  {label: peft-prompt-tuning, peft: {peft_type: PROMPT_TUNING,
                              num_virtual_tokens: 10, prompt_tuning_init: TEXT,
                              prompt_tuning_init_text: "Describe the restaurant:"}}
    summary = train_peft(cfg, peft_spec, backbone, log)        # cfg: a TrainConfig (its method is unused)

What is shared with softprompt's trainer (train/trainer.py), so only the model differs:
* data: `train.data.load_run_data` (train rows, selection rows), `load_reported` and
  `encode_rows` (same max_length, chat template, target tokens + EOS);
* the loop: `train.loop.fit` (the same example indices per step, gradient accumulation and
  clipping, mixed precision, epochs, seed, selection on `selection_split` every `eval_every`
  steps or epoch with the best adapter kept, early stopping), the selected adapter scored once
  on `eval_split`; batches collated with right padding (HF/peft position ids assume it;
  softprompt's runner reads positions from the mask and pads decoders on the left);
* loss: the causal-LM cross-entropy averaged over target tokens only (labels -100 elsewhere;
  peft adds -100 for its virtual tokens);
* optimizer: `train.optim` (AdamW: weight decay on matrices only, betas, eps; linear
  warm-up/decay), one learning rate for the prompt (`DEFAULT_LR` unless the config's `lr`);
* generation: greedy, `max_new_tokens_for(task)`, sources padded on the left, cut at EOS.

TEXT init (`prompt_tuning_init: TEXT`) is done here as peft does it (tokenize the text with the
backbone's tokenizer, repeat/cut to num_virtual_tokens, copy those word embeddings), because peft
would load a tokenizer by path. Default learning rates (`DEFAULT_LR`) follow the issue's
independent measurement: 3e-2 for prompt tuning, 1e-3 for prefix tuning; `lr` in the cell's
training config overrides them.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Callable

from softprompt.errors import ConfigError

PEFT_TYPES = ("PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING")
DEFAULT_LR = {"PROMPT_TUNING": 3e-2, "PREFIX_TUNING": 1e-3, "P_TUNING": 1e-3}
ADAPTER = "peft_adapter"


def peft_config(values: Any, where: str = "peft"):
    """A peft PromptLearningConfig (task type CAUSAL_LM) from a spec mapping; ConfigError names the field."""
    import dataclasses

    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping with peft_type and peft config keys, got {values!r}")
    data = dict(values)
    kind = str(data.pop("peft_type", "") or "").upper()
    if kind not in PEFT_TYPES:
        raise ConfigError(f"{where}.peft_type: expected one of {', '.join(PEFT_TYPES)}, got {values.get('peft_type')!r}")
    cls = {"PROMPT_TUNING": PromptTuningConfig, "PREFIX_TUNING": PrefixTuningConfig, "P_TUNING": PromptEncoderConfig}[kind]
    known = {f.name for f in dataclasses.fields(cls)} - {"peft_type", "task_type"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown {cls.__name__} key(s) {', '.join(unknown)}")
    if "tokenizer_name_or_path" in data:
        raise ConfigError(f"{where}.tokenizer_name_or_path: TEXT init uses the backbone's tokenizer; leave it out")
    init = str(data.get("prompt_tuning_init", "RANDOM")).upper() if kind == "PROMPT_TUNING" else None
    if init == "TEXT" and not data.get("prompt_tuning_init_text"):
        raise ConfigError(f"{where}.prompt_tuning_init_text: required with prompt_tuning_init: TEXT")
    if init is not None:
        data["prompt_tuning_init"] = "RANDOM"  # TEXT: copied in by init_from_text (peft would load a tokenizer)
    try:
        return cls(task_type=TaskType.CAUSAL_LM, **data), init
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def init_from_text(model, tokenizer, text: str) -> list[int]:
    """peft's TEXT init: the text's token embeddings, repeated and cut to the virtual tokens."""
    import torch

    enc = model.prompt_encoder[model.active_adapter]
    n = enc.embedding.weight.shape[0]
    ids = tokenizer(text)["input_ids"]
    ids = (ids * math.ceil(n / len(ids)))[:n]
    words = model.get_input_embeddings()
    with torch.no_grad():
        enc.embedding.weight.copy_(words(torch.tensor(ids, device=words.weight.device)).detach().clone())
    return ids


def build_peft_model(backbone, values: dict, where: str = "peft"):
    """get_peft_model on a copy of the backbone's causal LM (the caller's backbone stays untouched)."""
    from peft import get_peft_model

    if backbone.kind != "decoder":
        raise ConfigError(f"{where}: the peft baseline trains decoders (causal LM); {backbone.name} is {backbone.kind}")
    config, init = peft_config(values, where)
    model = get_peft_model(copy.deepcopy(backbone.model), config)
    if init == "TEXT":
        init_from_text(model, backbone.tokenizer, values["prompt_tuning_init_text"])
    return model, config


def peft_generate(model, enc, batch_size: int, tokenizer, max_new_tokens: int) -> list[str]:
    """Greedy generated text per example (in the split's order), sources padded on the left."""
    import numpy as np
    import torch

    from softprompt.train.batches import Encoded, collate

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sources = Encoded(enc.sources, None, enc.labels, enc.groups, 0)
    order = np.argsort(sources.lengths, kind="stable")
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    texts = [""] * len(enc)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size].tolist()
            batch = collate(sources, idx, pad, "left")
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 num_beams=1, eos_token_id=eos, pad_token_id=pad)
            new = out[:, ids.shape[1]:] if out.shape[1] > ids.shape[1] and torch.equal(out[:, :ids.shape[1]], ids) else out
            for r, i in enumerate(idx):
                row = new[r].tolist()
                if eos is not None and eos in row:
                    row = row[: row.index(eos)]
                texts[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    model.train(was_training)
    return texts


def _score(task, enc, model, tokenizer, batch_size: int, with_meteor: bool) -> tuple[dict, list[str]]:
    from softprompt.tasks import score_predictions
    from softprompt.train.evaluate import max_new_tokens_for

    preds = peft_generate(model, enc, batch_size, tokenizer, max_new_tokens_for(task, tokenizer))
    return score_predictions(task, enc.examples, preds, with_meteor=with_meteor), preds


def _trainable_state(model) -> dict:
    """The prompt encoder's own tensors (peft's state dict would fold a prefix MLP into its output)."""
    return {k: v.detach().clone() for k, v in model.prompt_encoder.state_dict().items()}


def train_peft(cfg, values: dict, backbone, log: Callable[..., Any] = print, where: str = "peft",
               with_meteor: bool = True) -> dict[str, Any]:
    """Train a peft prompt-learning model on cfg.task (a generation task) into cfg.run_dir(); its summary.

    The run folder gets metrics.jsonl, peft_adapter/ (the selected adapter, peft's save_pretrained),
    test/outputs.jsonl + scores.json and summary.json."""
    import torch

    from softprompt.tasks import get_task
    from softprompt.tasks.generation_outputs import write_outputs
    from softprompt.train.data import encode_rows, load_reported, load_run_data
    from softprompt.train.loop import Loop, fit, make_accelerator
    from softprompt.train.optim import OptimizerSettings, build_optimizer, build_schedule, optimizer_steps

    task = get_task(cfg.task)
    if not task.is_generation:
        raise ConfigError(f"{where}: the peft baseline trains generation tasks; {task.name} is {task.kind}")
    run_dir = Path(cfg.run_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    data = load_run_data(cfg, task, log)
    tok = backbone.tokenizer
    train_enc, selection_enc = (encode_rows(cfg, task, backbone, rows) for rows in (data.train, data.selection))
    model, config = build_peft_model(backbone, values, where)
    kind = str(values["peft_type"]).upper()
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[kind]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer({"prompt": params}, {"prompt": lr}, OptimizerSettings.of(cfg))
    scheduler = build_schedule(optimizer, optimizer_steps(len(train_enc), cfg.batch_size, cfg.grad_accum, cfg.epochs),
                               cfg.warmup_ratio)
    acc = make_accelerator(cfg, run_dir)
    model, optimizer = acc.prepare(model, optimizer)
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text("")
    kept: dict[str, Any] = {}

    def batch_loss(batch: dict) -> torch.Tensor:
        with acc.autocast():
            return model(**{k: batch[k].to(acc.device) for k in ("input_ids", "attention_mask", "labels")}).loss

    def record(row: dict) -> None:
        with open(metrics, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def keep_best(step: int, scores: dict) -> None:
        kept["state"] = _trainable_state(acc.unwrap_model(model))

    progress = fit(cfg, Loop(
        acc, model, optimizer, scheduler, train_enc, tok.pad_token_id, "right", batch_loss,
        evaluate=lambda: _score(task, selection_enc, acc.unwrap_model(model), tok, cfg.eval_batch_size, False)[0],
        keep_best=keep_best, record=record, log=log, selection_name=data.selection_name, metric=task.metric,
        diverged_note=f" ({where})",
    ))
    model = acc.unwrap_model(model)
    model.prompt_encoder.load_state_dict(kept["state"])
    model.save_pretrained(str(run_dir / ADAPTER))
    test_rows, report = load_reported(cfg, task)
    test_enc = encode_rows(cfg, task, backbone, test_rows)
    scores, preds = _score(task, test_enc, model, tok, cfg.eval_batch_size, with_meteor=with_meteor)
    outputs, _ = write_outputs(run_dir / "test", task, test_enc.examples, preds, scores)
    best = progress["best"]
    summary = {
        "task": task.name, "method": f"peft {kind}", "backbone": cfg.backbone, "seed": cfg.seed,
        "metric": task.metric, "peft_config": {**values}, "lr": lr, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "selection": {"split": data.selection_name, "examples": len(selection_enc), "best": best,
                      "best_step": progress["best_step"], "scores": progress.get("best_scores")},
        "test": {"split": task.check_split(cfg.eval_split), "examples": len(test_enc), "truncated": test_enc.truncated,
                 "scores": scores, "data": report.summary(), "outputs": str(outputs)},
        "best": best, "best_step": progress["best_step"], "best_scores": scores,
        "time_to_best_s": progress["time_to_best"], "train_seconds": progress["train_seconds"],
        "steps": progress["global_step"], "train_examples": len(train_enc), "train_truncated": train_enc.truncated,
        "eval_examples": len(test_enc), "epoch_samples_per_s": progress["epoch_throughput"],
        "trainable_params": sum(p.numel() for p in params), "decoding": "greedy",
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def load_peft_run(run_dir: str | Path, backbone):
    """The selected peft adapter of a run folder on a copy of `backbone`'s causal LM."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(copy.deepcopy(backbone.model), str(Path(run_dir) / ADAPTER))
    return model.eval()


def evaluate_peft(run_dir: str | Path, backbone, task_name: str, split: str | None, data_dir=None,
                  limit: int | None = None, max_length: int = 128, chat: bool = False, batch_size: int = 32,
                  out_dir=None, with_meteor: bool = True) -> dict[str, Any]:
    """A trained peft run scored on a generation task (cross-domain), outputs written to out_dir."""
    from softprompt.tasks import get_task, load_split_with_report
    from softprompt.tasks.generation_outputs import write_outputs
    from softprompt.train.generation_eval import default_split
    from softprompt.train.text_batches import encode_generation

    task = get_task(task_name)
    split = task.check_split(split) if split else default_split(task)
    rows, report = load_split_with_report(task, split, data_dir, limit, 0)
    enc = encode_generation(backbone.tokenizer, task, rows, max_length, backbone.kind, chat=chat)
    model = load_peft_run(run_dir, backbone)
    scores, preds = _score(task, enc, model, backbone.tokenizer, batch_size, with_meteor)
    outputs = write_outputs(out_dir, task, enc.examples, preds, scores)[0] if out_dir is not None else None
    return {"task": task.name, "split": split, "examples": len(enc), "truncated": enc.truncated, "scores": scores,
            "data": report.summary(), "decoding": "greedy", "outputs": str(outputs) if outputs else None}
