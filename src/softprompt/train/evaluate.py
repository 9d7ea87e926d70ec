"""Batched inference over an encoded split, and scoring with the task's metrics."""

from __future__ import annotations

import numpy as np
import torch

from softprompt.errors import ConfigError
from softprompt.tasks import compute_metrics
from softprompt.train.batches import Encoded, batch_order, collate


def padding_side(tokenizer) -> str:
    return getattr(tokenizer, "padding_side", "right") or "right"


@torch.inference_mode()
def predict_logits(model, enc: Encoded, batch_size: int, tokenizer, device=None) -> np.ndarray:
    """Logits for every example, in the split's order (batches sorted by length for speed)."""
    if getattr(model, "generative", False):
        raise ConfigError("this adapter generates text (a generative adapter has no classification head); "
                          "score it on a generation task (e.g. e2e or <task>-t2t)")
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    order = np.argsort(enc.lengths, kind="stable")
    out: list[np.ndarray | None] = [None] * len(enc)
    pad_id = tokenizer.pad_token_id
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size].tolist()
        batch = collate(enc, idx, pad_id, padding_side(tokenizer))
        logits = model(
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            batch["token_type_ids"].to(device) if "token_type_ids" in batch else None,
        ).logits.float().cpu().numpy()
        for r, i in enumerate(idx):
            out[i] = logits[r]
    model.train(was_training)
    return np.stack(out) if out else np.zeros((0,))


def predictions_from_logits(logits: np.ndarray, is_regression: bool) -> np.ndarray:
    return logits.reshape(-1) if is_regression else logits.argmax(-1)


def score(task, model, enc: Encoded, batch_size: int, tokenizer) -> dict[str, float]:
    if enc.generative:
        return score_generation(task, model, enc, batch_size, tokenizer)[0]
    logits = predict_logits(model, enc, batch_size, tokenizer)
    preds = predictions_from_logits(logits, task.is_regression)
    labels = enc.labels if task.is_regression else enc.labels.astype(np.int64)
    groups = enc.groups if task.grouped else None
    return compute_metrics(task, preds, labels, groups)


def max_new_tokens_for(task, tokenizer) -> int:
    """Room for the longest label word (text-to-text views) or a sentence (data-to-text)."""
    if task.is_text_to_text:
        return max(len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) for w in task.verbalizer) + 2
    return 64


@torch.inference_mode()
def generate_with_reasons(model, enc: Encoded, batch_size: int, tokenizer, max_new_tokens: int,
                          **options) -> tuple[list[str], list[str]]:
    """Generated text and finish reason for every example's source, in the split's order (decoders pad on
    the left); `model.generate_text` decodes, `options` are its generation options (greedy by default)."""
    was_training = model.training
    model.eval()
    device = model.runner.word_embeddings.weight.device
    sources = Encoded(enc.sources, None, enc.labels, enc.groups, 0)
    side = "left" if enc.decoder_only else "right"
    order = np.argsort(sources.lengths, kind="stable")
    texts: list[str] = [""] * len(enc)
    reasons: list[str] = [""] * len(enc)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size].tolist()
        batch = collate(sources, idx, tokenizer.pad_token_id, side)
        out = model.generate_text(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                  max_new_tokens=max_new_tokens, **options)
        for r, i in enumerate(idx):
            texts[i] = out.texts[r].strip()
            reasons[i] = out.finish_reasons[r]
    model.train(was_training)
    return texts, reasons


def generate_outputs(model, enc: Encoded, batch_size: int, tokenizer, max_new_tokens: int, **options) -> list[str]:
    """Generated text for every example's source, in the split's order (see `generate_with_reasons`)."""
    return generate_with_reasons(model, enc, batch_size, tokenizer, max_new_tokens, **options)[0]


def score_generation(task, model, enc: Encoded, batch_size: int, tokenizer, max_new_tokens: int | None = None,
                     with_meteor: bool = False) -> tuple[dict, list[str]]:
    """Scores of generated outputs (labels parsed back for text-to-text views; BLEU etc. for data-to-text)."""
    from softprompt.tasks import score_predictions

    preds = generate_outputs(model, enc, batch_size, tokenizer, max_new_tokens or max_new_tokens_for(task, tokenizer))
    return score_predictions(task, enc.examples, preds, with_meteor=with_meteor), preds


__all__ = ["batch_order", "predict_logits", "predictions_from_logits", "score", "score_generation", "generate_outputs",
           "generate_with_reasons", "finish_reason", "padding_side"]
