"""Trainable parameters of every method on a backbone (ID-SPAM paper Tables 12-13)."""

from __future__ import annotations

import copy


def parameter_table(backbone, methods: list[str], num_labels: int = 2, max_length: int = 128) -> list[dict]:
    """One row per trainable preset: trainable parameters, without the head, % of the backbone, site.

    `max_length` is the run's input length, which sizes DePT's A (the trainer's default, 128).
    """
    from softprompt.methods import PRESETS, method_config
    from softprompt.model import SoftPromptModel

    rows = []
    base_total = sum(p.numel() for p in backbone.model.parameters())
    for name in methods:
        if PRESETS[name].get("zero_shot"):
            continue
        bb = copy.copy(backbone)
        if PRESETS[name].get("backbone", "frozen") != "frozen":
            bb.model = copy.deepcopy(backbone.model)  # LoRA/full change the model; keep the shared one clean
        sized_by_run = (PRESETS[name].get("producer") or {}).get("kind") == "decomposed"
        run = {"producer": {"max_length": max_length}} if sized_by_run else {}
        model = SoftPromptModel(bb, method_config(name, **run), num_labels)
        head = sum(p.numel() for p in model.head.parameters())
        n = model.num_trainable()
        rows.append({"method": name, "trainable": n, "without_head": n - head,
                     "percent_of_backbone": 100.0 * n / base_total, "site": model.site.describe() if model.site else "-"})
    return rows
