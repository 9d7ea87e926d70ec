"""Hyperparameter search with Optuna over the ID-SPAM paper's space (Table 7), with pruning.

Studies live in SQLite by default; any Optuna RDB URL (e.g. postgresql://...) shares one study
between many workers and machines (start the same command on each).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from softprompt.train.config import TrainConfig

SPACE = {
    "epochs": [1, 5, 10, 20, 30],
    "batch_size": [16, 32, 64],
    "lr": [1e-3, 5e-4, 1e-4, 5e-5, 1e-5],
    "dropout": [0.1, 0.2, 0.3],
    "weight_decay": [0.0, 0.01, 0.1],
}


def tune(cfg: TrainConfig, trials: int, storage: str | None = None, study_name: str | None = None,
         layer: str = "search", max_epochs: int | None = None, backbone=None, log=print) -> dict:
    """Run `trials` trials; `layer`: 'search' (m is a hyperparameter), 'auto' (successive halving
    first, then m fixed) or 'fixed' (the config's m)."""
    import optuna

    from softprompt.backbones import load_backbone
    from softprompt.train.layer_search import successive_halving
    from softprompt.train.trainer import train

    backbone = backbone or load_backbone(cfg.backbone)
    layers = backbone.model.config.num_hidden_layers
    out = Path(cfg.run_dir())
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{out / 'study.db'}"
    report: dict = {"storage": storage}
    fixed_layer = None
    if layer == "auto":
        log(f"choosing the layer by successive halving over m = 0..{layers - 1}")
        search = successive_halving(cfg, list(range(layers)), backbone, log=log)
        fixed_layer = search["layer"]
        report["layer_search"] = search
        log(f"chosen layer m = {fixed_layer}")
    epochs = [e for e in SPACE["epochs"] if e <= (max_epochs or cfg.epochs)] or [min(SPACE["epochs"])]

    def objective(trial: "optuna.Trial") -> float:
        method = cfg.method
        m = fixed_layer if fixed_layer is not None else (
            trial.suggest_int("layer", 0, layers - 1) if layer == "search" else None)
        if m is not None:
            method = method.with_site(kind="layer", layer=m)
        dropout = trial.suggest_categorical("dropout", SPACE["dropout"])
        # the paper's dropout grid is the generator's (Table 7); methods without one tune the head's
        has_own = method.producer is not None and hasattr(method.producer, "dropout")
        method = method.with_producer(dropout=dropout) if has_own else method.with_head(dropout=dropout)
        run = dataclasses.replace(
            cfg, method=method, epochs=trial.suggest_categorical("epochs", epochs),
            batch_size=trial.suggest_categorical("batch_size", SPACE["batch_size"]),
            lr=trial.suggest_categorical("lr", SPACE["lr"]),
            weight_decay=trial.suggest_categorical("weight_decay", SPACE["weight_decay"]),
            output_dir=str(out / f"trial-{trial.number}"), progress=False, checkpoint_every=0,
        )

        def report_and_prune(trainer, step, scores):
            trial.report(scores["main"], step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return train(run, backbone=backbone, log=lambda *a: None, eval_callbacks=[report_and_prune])["best"]

    study = optuna.create_study(study_name=study_name or f"{cfg.task}-{cfg.method_name}-{cfg.backbone}",
                                storage=storage, load_if_exists=True, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=cfg.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    study.optimize(objective, n_trials=trials)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    report.update({
        "best_value": study.best_value if done else None,
        "best_params": {**(study.best_params if done else {}), **({"layer": fixed_layer} if fixed_layer is not None else {})},
        "trials": len(study.trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
    })
    (out / "tune_summary.json").write_text(json.dumps(report, indent=2))
    return report
