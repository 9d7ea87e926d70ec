"""One training loop (`train.loop.fit`) for softprompt's Trainer and the peft baseline: the same losses
as the loops it replaced, step for step."""

from __future__ import annotations

import json
import math

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.experiments.peft_baseline import build_peft_model, train_peft
from softprompt.tasks import get_task
from softprompt.train.batches import batch_order, collate
from softprompt.train.config import TrainConfig
from softprompt.train.data import encode_rows, load_run_data
from softprompt.train.trainer import train

# per-step losses of `softprompt train` with the loop that trainer.py held before fit() (commit b4e639d)
BEFORE_FIT = {
    ("id-spam", 1): [0.420159, 0.82507, 0.957059, 0.76841, 0.794783, 0.62421, 0.750537, 0.816721,
                     0.617479, 0.712975, 0.839285, 0.706554, 0.720751, 0.85921, 0.745123, 0.793246],
    ("p-tuning-v2", 2): [0.786727, 0.711442, 0.646527, 0.749101, 0.760512, 0.707525, 0.879746, 0.676336],
}


def step_losses(run_dir) -> list[float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("method,grad_accum", list(BEFORE_FIT))
def test_trainer_losses_equal_the_loop_before_fit(tmp_path, data_dir, method, grad_accum):
    cfg = TrainConfig(backbone="tiny-bert", task="sst2", method={"name": method}, data_dir=str(data_dir),
                      train_limit=64, eval_limit=16, epochs=2, batch_size=8, max_length=48, grad_accum=grad_accum,
                      log_every=1, progress=False, output_dir=str(tmp_path / "run"))
    train(cfg, log=lambda *a: None)
    assert step_losses(tmp_path / "run") == pytest.approx(BEFORE_FIT[method, grad_accum], abs=1e-5)


def reference_peft_losses(cfg: TrainConfig, values: dict, bb) -> list[float]:
    """The peft baseline's own loop before fit(): plain torch, one step per grad_accum batches or epoch end."""
    from transformers import get_linear_schedule_with_warmup

    task = get_task(cfg.task)
    torch.manual_seed(cfg.seed)
    enc = encode_rows(cfg, task, bb, load_run_data(cfg, task).train)
    model, _ = build_peft_model(bb, values)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps)
    total = math.ceil(math.ceil(len(enc) / cfg.batch_size) / cfg.grad_accum) * cfg.epochs
    schedule = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    model.train()
    steps = []
    for epoch in range(cfg.epochs):
        batches = batch_order(enc.lengths, cfg.batch_size, cfg.seed, epoch, True, cfg.bucket)
        for b, idx in enumerate(batches):
            batch = collate(enc, idx, bb.tokenizer.pad_token_id, "right")
            loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
            (loss / cfg.grad_accum).backward()
            if (b + 1) % cfg.grad_accum and b + 1 != len(batches):
                continue
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            schedule.step()
            opt.zero_grad(set_to_none=True)
            steps.append(loss.item())  # what metrics.jsonl holds with log_every 1: the last batch's loss
    return steps


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_peft_baseline_through_fit_equals_its_loop_before(tmp_path, data_dir, grad_accum):
    bb = load_backbone("tiny-llama")
    values = {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 4}
    # 24 rows of 8: three batches an epoch, so with grad_accum 2 each epoch ends on a one-batch step
    cfg = TrainConfig(backbone="tiny-llama", task="e2e", data_dir=str(data_dir), train_limit=24, eval_limit=4,
                      epochs=2, batch_size=8, max_length=64, selection_split="validation", eval_split="test",
                      grad_accum=grad_accum, lr=3e-2, log_every=1, progress=False, output_dir=str(tmp_path / "run"))
    summary = train_peft(cfg, values, bb, log=lambda *a: None, with_meteor=False)
    want = reference_peft_losses(cfg, values, bb)
    assert summary["steps"] == len(want) == (6 if grad_accum == 1 else 4)
    assert step_losses(tmp_path / "run") == pytest.approx(want, abs=1e-6)
