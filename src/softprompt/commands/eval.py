"""softprompt eval: score a trained adapter on any task with the same label space."""

from __future__ import annotations

import json

from softprompt.errors import ConfigError

HELP = "evaluate a trained run/adapter on a task and split (cross-domain: sst2 -> imdb, fpb-binary, ...)"


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (with adapter/) or adapter folder")
    parser.add_argument("--task", required=True, action="append", help="task to evaluate on (repeatable)")
    parser.add_argument("--split", default=None, help="split (default: validation, or test where there is none; fpb, fpb-binary: 'all' = every row)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=None, help="evaluate on a seeded subsample of N examples")
    parser.add_argument("--max-length", type=int, default=None, help="truncate inputs (default: the run's setting)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def run(args) -> int:
    from softprompt.train.inference import evaluate_adapter

    results = []
    for task in args.task:
        res = evaluate_adapter(args.run, task, args.split, args.data_dir, args.limit, args.max_length, args.batch_size)
        results.append(res)
        if not args.json:
            trunc = f", {res['truncated']} truncated to {res['max_length']} tokens" if res["truncated"] else ""
            print(f"{res['task']} {res['split']} ({res['examples']} examples{trunc}): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in res["scores"].items()))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


__all__ = ["ConfigError"]
