"""softprompt demo: the main job. Train ID-SPAM on an SST-2 subset with the packaged default
backbone, then evaluate the soft prompt on SST-2 dev and three other sentiment domains.

The checkpoint is selected on rows carved from the SST-2 training subset (10%, not trained on);
SST-2 dev and the other domains are never used for selection, so every row of the table is a
test score."""

from __future__ import annotations

import json
import time
from pathlib import Path

HELP = "train ID-SPAM on SST-2 (packaged minilm-l6) and evaluate cross-domain; prints a results table"

EVALS = [  # task, split, limit (IMDB subsampled to keep the demo under 15 minutes on 2 CPU cores)
    ("sst2", "validation", None),
    ("imdb", "test", 2000),
    ("fpb-binary", "all", None),  # every all-agree sentence but the neutral ones: nothing trains on FPB
    ("tweeteval-binary", "test", None),
]


def add_arguments(parser) -> None:
    from softprompt.commands.reference import add_field_flag
    from softprompt.train.config import TrainConfig

    add_field_flag(parser, TrainConfig, "data_dir", default=None)
    add_field_flag(parser, TrainConfig, "backbone", default="minilm-l6")
    add_field_flag(parser, TrainConfig, "method", default="id-spam")
    add_field_flag(parser, TrainConfig, "train_limit", type=int, default=4000)
    add_field_flag(parser, TrainConfig, "epochs", type=int, default=3)
    add_field_flag(parser, TrainConfig, "output_dir", default="runs/demo")


def run(args) -> int:
    from softprompt.train.config import TrainConfig
    from softprompt.train.inference import evaluate_adapter, load_run_adapter
    from softprompt.train.trainer import train

    start = time.time()
    cfg = TrainConfig(backbone=args.backbone, task="sst2", method={"name": args.method}, data_dir=args.data_dir,
                      train_limit=args.train_limit, epochs=args.epochs, output_dir=args.output_dir)
    print(f"[1/2] training {args.method} on {args.train_limit} SST-2 examples with {args.backbone} ({args.epochs} epochs); "
          f"10% of them are held out to select the checkpoint")
    summary = train(cfg)
    sel = summary["selection"]
    print(f"      selected step {sel['best_step']} on {sel['split']} ({sel['examples']} SST-2 train rows, not trained on): "
          f"accuracy {sel['best']:.2f}; trained on {summary['train_examples']:,} rows for {summary['train_seconds']:.0f}s; "
          f"{summary['trainable_params']:,} trainable parameters")
    print("[2/2] evaluating the selected soft prompt on splits it was not selected on")
    model, _ = load_run_adapter(args.output_dir)
    rows = []
    for task, split, limit in EVALS:
        t0 = time.time()
        res = evaluate_adapter(args.output_dir, task, split, args.data_dir, limit, 256, 64, model=model)
        res["seconds"] = time.time() - t0
        rows.append(res)
        print(f"      {task:<17} {split:<10} {res['examples']:>6} examples  accuracy {res['scores']['accuracy']:.2f}")
    print()
    print(f"Checkpoint selected on {sel['split']} ({sel['examples']} rows of SST-2 train); no row below was used for selection.")
    print(f"| task | split | examples | accuracy | macro-F1 |")
    print(f"|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['task']} | {r['split']} | {r['examples']} | {r['scores']['accuracy']:.2f} | {r['scores']['macro_f1']:.2f} |")
    Path(args.output_dir, "demo_results.json").write_text(json.dumps({"selection": sel, "evaluations": rows}, indent=2))
    print(f"\nrun folder: {args.output_dir} (adapter/, metrics.jsonl, summary.json); total {time.time() - start:.0f}s")
    return 0
