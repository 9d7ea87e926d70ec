"""softprompt train: train a method on a task (YAML config and/or flags), one or more seeds."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from softprompt.commands._common import config_from_args
from softprompt.commands.reference import add_config_flags

HELP = "train a soft prompt (or baseline) on a task; every config key is also a --flag"


def add_arguments(parser) -> None:
    add_config_flags(parser)
    parser.add_argument("--seeds", help="comma-separated seeds (e.g. 0,1,2): one run each, then mean ± std")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last valid checkpoint")


def run(args) -> int:
    cfg = config_from_args(args)  # checked before anything heavy is imported or loaded
    from softprompt.train.trainer import train

    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [cfg.seed]
    summaries = []
    for seed in seeds:
        run_cfg = dataclasses.replace(cfg, seed=seed)
        if cfg.output_dir and len(seeds) > 1:
            run_cfg = dataclasses.replace(run_cfg, output_dir=str(Path(cfg.output_dir) / f"s{seed}"))
        summary = train(run_cfg, resume=args.resume)
        summaries.append(summary)
        print(f"seed {seed}: best {summary['metric']} = {summary['best']:.2f} at step {summary['best_step']} "
              f"({summary['train_seconds']:.0f}s training) -> {run_cfg.run_dir()}")
    if len(summaries) > 1:
        best = [s["best"] for s in summaries]
        agg = {"seeds": seeds, "scores": best, "mean": statistics.mean(best), "std": statistics.stdev(best)}
        out = Path(cfg.output_dir or Path(cfg.run_dir()).parent) / "seeds_summary.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(agg, indent=2))
        print(f"{summaries[0]['metric']}: {agg['mean']:.2f} ± {agg['std']:.2f} over seeds {seeds} ({out})")
    return 0
