"""Using a trained adapter: evaluate on any task with the same label space, predict texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from softprompt.adapter import META, load_adapter
from softprompt.errors import ConfigError
from softprompt.tasks import Example, get_task, load_split_with_report
from softprompt.train.batches import encode
from softprompt.train.evaluate import predict_logits, predictions_from_logits
from softprompt.tasks import compute_metrics


def adapter_dir(path: str | Path) -> Path:
    path = Path(path)
    return path / "adapter" if not (path / META).exists() and (path / "adapter" / META).exists() else path


def load_run_adapter(path: str | Path, backbone=None):
    model = load_adapter(adapter_dir(path), backbone)
    model.eval()
    return model, model.adapter_meta


def _run_max_length(path: Path) -> int | None:
    cfg = Path(path) / "config.yaml"
    if cfg.exists():
        return (yaml.safe_load(cfg.read_text()) or {}).get("max_length")
    return None


def evaluate_adapter(path, task_name: str, split: str | None = None, data_dir=None, limit=None,
                     max_length: int | None = None, batch_size: int = 64, model=None) -> dict:
    if model is None:
        model, meta = load_run_adapter(path)
    else:
        meta = model.adapter_meta
    task = get_task(task_name)
    trained = list(meta.get("label_names") or [])
    if trained and list(task.label_names) != trained:
        raise ConfigError(
            f"task {task.name!r} has labels {list(task.label_names)}, but the adapter was trained for "
            f"{meta.get('task')!r} with labels {trained}; use a task with the same label space "
            f"(e.g. a binary view such as fpb-binary or tweeteval-binary)"
        )
    if split is None:
        split = "validation" if "validation" in task.splits and "validation" not in task.unlabeled_splits else "test"
    max_length = model.fit_length(max_length or _run_max_length(Path(path)) or meta.get("max_length") or 256)
    examples, report = load_split_with_report(task, split, data_dir, limit, 0)
    enc = encode(model.backbone.tokenizer, examples, max_length)
    logits = predict_logits(model, enc, batch_size, model.backbone.tokenizer)
    preds = predictions_from_logits(logits, task.is_regression)
    labels = enc.labels if task.is_regression else enc.labels.astype(np.int64)
    scores = compute_metrics(task, preds, labels, enc.groups if task.grouped else None)
    return {"task": task.name, "split": split, "examples": len(enc), "truncated": enc.truncated,
            "max_length": max_length, "scores": scores, "data": report.summary()}


@torch.inference_mode()
def predict_texts(model, meta: dict, texts: list[str], pair: str | None = None, max_length: int = 256) -> list[dict]:
    examples = [Example(t, pair, None, None, f"input:{i}") for i, t in enumerate(texts)]
    enc = encode(model.backbone.tokenizer, examples, model.fit_length(max_length))
    logits = predict_logits(model, enc, 32, model.backbone.tokenizer)
    names = meta.get("label_names") or []
    out = []
    for row in logits:
        if meta.get("is_regression"):
            out.append({"score": float(row.reshape(-1)[0])})
            continue
        probs = torch.tensor(row).softmax(-1).tolist()
        best = int(np.argmax(row))
        out.append({"label": names[best] if names else best, "scores": dict(zip(names or range(len(probs)), probs))})
    return out


def evaluate_zero_shot(backbone_name: str, task_name: str, split: str | None = None, data_dir=None, limit=None,
                       max_length: int = 256, batch_size: int = 16, backbone=None,
                       calibrate: bool | str = "batch") -> dict:
    """Zero-shot prompting of an instruction model: the task's question + verbalizer, no training.

    `calibrate` removes the model's prior for one label word: "batch" (Batch Calibration, Zhou
    et al. 2023: minus each label's mean score over the evaluated inputs, no labels used),
    "content-free" or True (Zhao et al. 2021: minus the scores of "N/A"), "none" or False.
    """
    from softprompt.backbones import load_backbone
    from softprompt.train.zero_shot import encode_prompts, zero_shot_logits, zero_shot_model

    task = get_task(task_name)
    backbone = backbone or load_backbone(backbone_name)
    model = zero_shot_model(backbone, task)
    if split is None:
        split = "validation" if "validation" in task.splits and "validation" not in task.unlabeled_splits else "test"
    examples, report = load_split_with_report(task, split, data_dir, limit, 0)
    enc = encode_prompts(task, backbone.tokenizer, examples, max_length)  # cuts the input text only
    logits = zero_shot_logits(model, task, enc, max_length, batch_size, calibrate)
    preds = predictions_from_logits(logits, False)
    scores = compute_metrics(task, preds, enc.labels.astype(np.int64), enc.groups if task.grouped else None)
    return {"task": task.name, "split": split, "examples": len(enc), "truncated": enc.truncated,
            "max_length": max_length, "scores": scores, "data": report.summary(), "method": "zero-shot",
            "backbone": backbone.name, "calibrated": calibrate}
