"""Evaluation protocol: select on rows carved from train, report the dev split once (as the test set)."""

import dataclasses
import json

import pytest

from softprompt.errors import ConfigError
from softprompt.tasks import load_split
from softprompt.train.config import TrainConfig
from softprompt.train.inference import evaluate_adapter
from softprompt.train.splits import carve_validation
from softprompt.train.trainer import Trainer, train


def config(tmp_path, data_dir, **kw):
    base = dict(backbone="tiny-bert", task="sst2", method={"name": "prompt-tuning"}, data_dir=str(data_dir),
                train_limit=80, eval_limit=24, epochs=2, batch_size=8, output_dir=str(tmp_path / "run"), progress=False,
                max_length=48, lr=3e-2)
    base.update(kw)
    return TrainConfig(**base)


def test_selection_is_the_carved_split_and_dev_is_scored_once_with_the_selected_adapter(tmp_path, data_dir):
    summary = train(config(tmp_path, data_dir), log=lambda *a: None)
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval" in r]
    assert {r["eval_split"] for r in evals} == {"carved validation"}
    sel, test = summary["selection"], summary["test"]
    assert sel["split"] == "carved validation" and sel["examples"] == 8  # 10% of 80
    assert sel["carve"]["rows"] == 8 and sel["carve"]["of_rows"] == 80 and sel["carve"]["from"] == "train"
    assert sel["best"] == summary["best"] == max(r["eval"]["main"] for r in evals)
    assert sel["best_step"] == summary["best_step"] and sel["scores"]["main"] == sel["best"]
    assert summary["train_examples"] == 72
    assert test["split"] == "validation" and test["examples"] == 24 and "note" not in test
    # the reported numbers are the saved (selected) adapter on dev, not the last model nor the selection split
    again = evaluate_adapter(run, "sst2", "validation", data_dir, 24)
    assert test["scores"] == again["scores"] == summary["best_scores"]
    assert any("rows carved as the selection split" in d for d in summary["data"])
    assert json.loads((run / "summary.json").read_text())["test"]["scores"] == test["scores"]


def test_carved_rows_never_train_and_do_not_depend_on_the_run_seed(tmp_path, data_dir):
    a = Trainer(config(tmp_path / "a", data_dir), log=lambda *a: None).setup()
    b = Trainer(config(tmp_path / "b", data_dir, seed=1), log=lambda *a: None).setup()
    assert a.selection_enc.input_ids == b.selection_enc.input_ids  # same carve for every seed
    assert a.train_enc.input_ids != b.train_enc.input_ids  # train_limit subsamples with the run's seed
    carved = carve_validation(load_split("sst2", "train", data_dir), "sst2", 80)
    assert [e.uid for e in a.carve.validation] == [e.uid for e in carved.validation]
    carved_ids = {tuple(x) for x in a.selection_enc.input_ids}
    for t in (a, b):
        assert not carved_ids & {tuple(x) for x in t.train_enc.input_ids}


def test_a_named_selection_split_is_used_and_flagged_when_it_is_the_reported_one(tmp_path, data_dir):
    logs = []
    summary = train(config(tmp_path, data_dir, selection_split="dev", epochs=1), log=logs.append)
    assert summary["selection"]["split"] == "validation" and summary["selection"]["carve"] is None
    assert summary["train_examples"] == 80 and summary["selection"]["examples"] == 24
    assert summary["test"]["note"] == "selected on this split: optimistically biased"
    assert summary["best"] == summary["test"]["scores"]["main"]  # same split, same selected adapter
    assert any("optimistically biased" in line for line in logs)


@pytest.mark.parametrize("split,match", [("train", "selection_split: 'train' is the training data"),
                                         ("holdout", "selection_split: task 'sst2' has no split 'holdout'")])
def test_bad_selection_split_names_the_field(tmp_path, data_dir, split, match):
    with pytest.raises(ConfigError, match=match):
        Trainer(config(tmp_path, data_dir, selection_split=split), log=lambda *a: None).setup()


def test_selection_split_is_a_cli_flag(tmp_path, data_dir):
    from softprompt.cli import main

    run = tmp_path / "cli"
    assert main(["train", "--backbone", "tiny-bert", "--task", "sst2", "--method", "prompt-tuning", "--data-dir", str(data_dir),
                 "--train-limit", "40", "--eval-limit", "8", "--epochs", "1", "--batch-size", "8", "--output-dir", str(run),
                 "--progress", "false", "--selection-split", "validation"]) == 0
    cfg = dataclasses.asdict(TrainConfig())
    assert cfg["selection_split"] == "carved"
    assert json.loads((run / "summary.json").read_text())["selection"]["split"] == "validation"


@pytest.mark.parametrize("selection_scores, evaluations", [
    ([50.0, 50.0, 50.0, 50.0, 50.0], 5),  # never left its first score (majority class): keeps every epoch
    ([50.0, 60.0, 55.0, 58.0, 70.0], 4),  # rose once, then 2 evaluations without gain: stops
    ([50.0, 50.0, 50.0, 60.0, 59.0], 5),  # learned late: patience counts only after the first gain
])
def test_early_stopping_waits_for_the_first_gain(tmp_path, data_dir, monkeypatch, selection_scores, evaluations):
    from softprompt.train.trainer import Trainer

    real, scripted_scores = Trainer.selection_scores, iter(selection_scores)
    # the selection score of each evaluation comes from the script
    monkeypatch.setattr(Trainer, "selection_scores", lambda self: {**real(self), "main": next(scripted_scores)})
    train(config(tmp_path, data_dir, epochs=5, patience=2, train_limit=40), log=lambda *a: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval"]["main"] for r in rows if "eval" in r] == selection_scores[:evaluations]
