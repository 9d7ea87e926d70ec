"""One optimizer builder (train/optim.py): the Trainer and the transformers-Trainer bridge get the same AdamW."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from softprompt.backbones import load_backbone
from softprompt.interop.hf_trainer import TrainerModel, build_optimizer, optimizers
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from softprompt.train.config import TrainConfig
from softprompt.train.optim import OptimizerSettings, param_groups
from softprompt.train.trainer import Trainer


def summary(opt) -> list[tuple]:
    return [(g["lr"], g["weight_decay"], tuple(g["betas"]), g["eps"], tuple(p.shape for p in g["params"]))
            for g in opt.param_groups]


def test_defaults_are_train_configs():
    cfg = TrainConfig()
    assert OptimizerSettings.defaults() == OptimizerSettings.of(cfg)
    assert OptimizerSettings.defaults().adam_betas == (0.9, 0.98) and OptimizerSettings.defaults().adam_eps == 1e-6


def test_matrices_decay_vectors_do_not():
    w, b = torch.nn.Parameter(torch.zeros(3, 2)), torch.nn.Parameter(torch.zeros(3))
    groups = param_groups({"head": [w, b]}, {"head": 0.1}, 0.01)
    assert [(g["params"][0] is w, g["weight_decay"], g["lr"]) for g in groups] == [(True, 0.01, 0.1), (False, 0.0, 0.1)]


@pytest.mark.parametrize("method", ["prompt-tuning", "dept", "lora"])
def test_hf_bridge_optimizer_is_the_trainers(tmp_path, data_dir, method):
    cfg = TrainConfig(backbone="tiny-bert", task="sst2", method={"name": method}, data_dir=str(data_dir),
                      train_limit=16, eval_limit=8, epochs=1, batch_size=8, output_dir=str(tmp_path), progress=False)
    trainer = Trainer(cfg, log=lambda *a: None).setup()
    bridged = build_optimizer(TrainerModel(trainer.unwrapped))
    assert summary(bridged) == summary(trainer.optimizer)  # rates per group, decay, betas (0.9, 0.98), eps 1e-6
    assert all(tuple(g["betas"]) == (0.9, 0.98) and g["eps"] == 1e-6 for g in bridged.param_groups)


def test_hf_bridge_settings_and_schedule_are_stated_options():
    model = SoftPromptModel(load_backbone("tiny-bert"), method_config("prompt-tuning"), 2)
    settings = OptimizerSettings.defaults(adam_betas=(0.9, 0.999), weight_decay=0.0, warmup_ratio=0.1)
    opt, schedule = optimizers(model, 100, lrs={"head": 5e-3}, settings=settings)
    assert {tuple(g["betas"]) for g in opt.param_groups} == {(0.9, 0.999)}
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0}
    assert schedule.get_last_lr()[0] == 0.0  # warm-up from 0 over 10 steps
    for _ in range(10):
        opt.step()
        schedule.step()
    head = [g for g in opt.param_groups if g["name"] == "head"]
    assert head[0]["lr"] == pytest.approx(5e-3)
    assert dataclasses.replace(settings, warmup_ratio=0.06) == OptimizerSettings.defaults(
        adam_betas=(0.9, 0.999), weight_decay=0.0)
