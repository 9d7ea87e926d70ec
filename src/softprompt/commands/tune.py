"""softprompt tune: Optuna search over the ID-SPAM paper's space, with automatic layer choice."""

from __future__ import annotations

import json

from softprompt.commands._common import config_from_args
from softprompt.commands.reference import add_config_flags

HELP = "hyperparameter search (Optuna, pruning); --layer auto picks the injection layer by successive halving"


def add_arguments(parser) -> None:
    add_config_flags(parser)
    parser.add_argument("--trials", type=int, default=10, help="Optuna trials to run (each one training run)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite in the run folder; "
                        "a shared RDB URL such as postgresql://... lets many workers share the study)")
    parser.add_argument("--study", default=None, help="study name (default: task-method-backbone)")
    parser.add_argument("--layer", choices=["search", "auto", "fixed"], default="search",
                        help="search: m is a hyperparameter; auto: successive halving first; fixed: the config's m")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap the epochs of the search space")


def run(args) -> int:
    from softprompt.train.tune import tune

    cfg = config_from_args(args)
    report = tune(cfg, args.trials, args.storage, args.study, args.layer, args.max_epochs)
    if "layer_search" in report:
        print("layer curve (score by m): " + ", ".join(f"m={m}: {s:.2f}" for m, s in report["layer_search"]["curve"].items()))
    print(json.dumps({k: v for k, v in report.items() if k != "layer_search"}, indent=2))
    return 0
