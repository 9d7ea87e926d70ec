"""Optuna search with pruning and the automatic layer choice, on tiny-bert."""

import json

import optuna

from softprompt.backbones import load_backbone
from softprompt.cli import main
from softprompt.train.config import TrainConfig
from softprompt.train.layer_search import successive_halving
from softprompt.train.tune import tune


def cfg(tmp_path, data_dir, backbone="tiny-bert", **kw):
    return TrainConfig(backbone=backbone, task="sst2", method={"name": "id-spam"}, data_dir=str(data_dir),
                       train_limit=64, eval_limit=24, epochs=1, batch_size=16, output_dir=str(tmp_path / "t"),
                       progress=False, max_length=32, **kw)


def test_successive_halving_keeps_the_better_half_and_reports_the_curve(tmp_path, data_dir, monkeypatch):
    scores = {0: 50.0, 1: 70.0, 2: 60.0, 3: 40.0}
    calls = []

    def fake_train(run, backbone=None, log=None, **kw):
        m = run.method.site.layer
        calls.append((m, run.train_limit))
        return {"best": scores[m] + run.train_limit / 1000}

    monkeypatch.setattr("softprompt.train.trainer.train", fake_train)
    # the layers are checked against the backbone's depth (minilm-l6: 6); fake_train loads nothing
    result = successive_halving(cfg(tmp_path, data_dir, backbone="minilm-l6"), [0, 1, 2, 3], min_examples=16)
    assert result["layer"] == 1
    assert [sorted(r) for r in result["rounds"]] == [[0, 1, 2, 3], [1, 2]]
    assert calls[:4] == [(m, 16) for m in range(4)] and calls[4:] == [(1, 32), (2, 32)]
    assert set(result["curve"]) == {0, 1, 2, 3}


def test_tune_runs_trials_into_sqlite_and_layer_auto_reports_choice(tmp_path, data_dir):
    report = tune(cfg(tmp_path, data_dir), trials=2, layer="auto", max_epochs=1, backbone=load_backbone("tiny-bert"),
                  log=lambda *a: None)
    assert report["trials"] == 2 and report["best_value"] is not None
    assert report["best_params"]["layer"] == report["layer_search"]["layer"] in (0, 1)
    study = optuna.load_study(study_name="sst2-id-spam-tiny-bert", storage=report["storage"])
    assert len(study.trials) == 2  # persisted: another worker would share it
    values = [t.value for t in study.trials if t.value is not None]
    assert report["best_value"] == max(values)
    assert report["best_params"] == {**study.best_trial.params, "layer": report["layer_search"]["layer"]}
    assert json.loads((tmp_path / "t" / "tune_summary.json").read_text())["trials"] == 2


def test_pruning_stops_a_poor_trial(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number >= 1)
    report = tune(cfg(tmp_path, data_dir), trials=3, layer="fixed", max_epochs=1, backbone=load_backbone("tiny-bert"),
                  log=lambda *a: None)
    assert report["pruned"] == 2 and report["trials"] == 3


def test_tune_command(tmp_path, data_dir, capsys):
    assert main(["tune", "--backbone", "tiny-bert", "--task", "sst2", "--method", "lpt", "--data-dir", str(data_dir),
                 "--train-limit", "32", "--eval-limit", "16", "--epochs", "1", "--max-length", "32",
                 "--output-dir", str(tmp_path / "c"), "--trials", "1", "--layer", "fixed", "--max-epochs", "1"]) == 0
    assert '"trials": 1' in capsys.readouterr().out
