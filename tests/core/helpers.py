"""Helpers for core tests: tiny models, batches with right/left padding."""

from __future__ import annotations

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.errors import ConfigError
from softprompt.methods import PRESETS, method_config
from softprompt.model import SoftPromptModel

SOFT = [name for name, preset in PRESETS.items() if preset.get("producer")]  # every soft-prompt preset
BASELINES = ["head-only", "lora", "full-finetune"]


RUN_MAX_LENGTH = 512  # a run's max_length (DePT sizes A by it): the tiny models' position limit


def with_run_settings(method: str, overrides: dict, max_length: int = RUN_MAX_LENGTH) -> dict:
    """Overrides plus what the trainer fills from the run (`producer_config.fit(max_length)`)."""
    if method_config(method, **overrides).producer_kind != "decomposed":
        return overrides
    producer = {"max_length": max_length, **(overrides.get("producer") or {})}
    return {**overrides, "producer": producer}


def build(backbone_name: str, method: str, num_labels: int = 2, seed: int = 0, **overrides) -> SoftPromptModel:
    """The model; a pair whose site refuses the architecture (one line, "cannot run on") is skipped with that
    line (the architecture matrix asserts each refusal: tests/core/test_architectures.py REFUSED)."""
    torch.manual_seed(seed)
    bb = load_backbone(backbone_name)
    try:
        return SoftPromptModel(bb, method_config(method, **with_run_settings(method, overrides)), num_labels)
    except ConfigError as err:
        if str(err).startswith("method.site.kind:") and "cannot run on" in str(err):
            pytest.skip(str(err))
        raise


def batch(tokenizer, texts: list[str], side: str = "right", pairs: list[str] | None = None):
    tokenizer.padding_side = side
    enc = tokenizer(texts, pairs, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")


TEXTS = ["a gripping, beautifully acted film", "dull", "not bad at all, really", "the plot goes nowhere and the jokes fall flat"]


def train_steps(model, ids, mask, types, labels, lr: float, steps: int) -> list[float]:
    """A few AdamW steps on one batch (head dropout off); returns the losses."""
    model.train()
    model.head.dropout.p = 0.0
    opt = torch.optim.AdamW(model.adapter_params().values(), lr=lr)
    losses = []
    for _ in range(steps):
        out = model(ids, mask, types, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    return losses
