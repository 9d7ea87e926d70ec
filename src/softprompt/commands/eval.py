"""softprompt eval: score a trained adapter on any task it can be scored on.

A classification adapter: any classification task with the same label space (cross-domain:
sst2 -> imdb, fpb-binary, ...), scored from its head's logits. A generative adapter: any
generation task and split (e2e: BLEU, ROUGE-L, METEOR, CIDEr; "<task>-t2t" views: accuracy of
the label parsed from the generated answer), greedy, exactly as the bench scores a run, with the
run's max_length, chat template and eval batch size; outputs.jsonl (input, references or label,
generated text, finish reason per example) and scores.json go to <run>/eval/<task>-<split>/.
"""

from __future__ import annotations

import json

from softprompt.errors import ConfigError

HELP = ("evaluate a trained run/adapter on a task and split: classifiers on tasks with the same labels "
        "(sst2 -> imdb, fpb-binary, ...), generative adapters on generation tasks (e2e, <task>-t2t)")


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (with adapter/) or adapter folder")
    parser.add_argument("--task", required=True, action="append", help="task to evaluate on (repeatable)")
    parser.add_argument("--split", default=None, help="split (default: validation, or test where there is none; fpb, fpb-binary: 'all' = every row)")
    from softprompt.commands.reference import add_field_flag
    from softprompt.train.config import TrainConfig

    add_field_flag(parser, TrainConfig, "data_dir", default=None)
    parser.add_argument("--limit", type=int, default=None, help="evaluate on a seeded subsample of N examples")
    parser.add_argument("--max-length", type=int, default=None, help="truncate inputs (default: the run's setting)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="examples per batch (default: 64; generative adapters: the run's eval_batch_size)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="generation tasks: tokens generated per example at most (default: 64 for data-to-text, "
                             "the longest label word + 2 for text-to-text views)")
    parser.add_argument("--output-dir", default=None,
                        help="generation tasks: folder for outputs.jsonl and scores.json (default: "
                             "<run>/eval/<task>-<split>; with several --task, a subfolder per task and split)")
    parser.add_argument("--no-meteor", action="store_true",
                        help="generation tasks: skip METEOR (it starts Java, ~20 s); reported as unavailable")
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def run(args) -> int:
    from softprompt.adapter import read_meta
    from softprompt.tasks import get_task
    from softprompt.train.generation_eval import check_adapter_task
    from softprompt.train.inference import adapter_dir

    _refuse_peft_run(args.run)
    meta = read_meta(adapter_dir(args.run))
    tasks = [get_task(name) for name in args.task]
    for task in tasks:  # every task checked before the model loads
        check_adapter_task(meta, task)
    results = []
    model = None
    for task in tasks:
        if meta.get("generative"):
            res, model = _generation(args, task, model)
        else:
            res, model = _classification(args, task, model)
        results.append(res)
        if not args.json:
            _print(res)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _refuse_peft_run(path) -> None:
    """A bench peft-baseline run (peft_adapter/, no adapter.json) keeps no config.yaml to score it as the bench did."""
    from pathlib import Path

    path = Path(path)
    if (path / "peft_adapter").is_dir() and not (path / "adapter.json").exists() and not (path / "adapter").is_dir():
        raise ConfigError(f"{path} is a peft-library baseline run (peft_adapter/), not a softprompt adapter; "
                          f"score it on other tasks with a bench eval cell (experiments/peft_baseline.py evaluate_peft)")


def _classification(args, task, model):
    from softprompt.train.inference import evaluate_adapter, load_run_adapter

    if model is None:
        model, _ = load_run_adapter(args.run)
    return evaluate_adapter(args.run, task.name, args.split, args.data_dir, args.limit, args.max_length,
                            args.batch_size or 64, model=model), model


def _generation(args, task, model):
    from pathlib import Path

    from softprompt.train.generation_eval import default_split, evaluate_run
    from softprompt.train.inference import load_run_adapter

    if model is None:
        model, _ = load_run_adapter(args.run)
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None and len(args.task) > 1:
        out_dir = out_dir / f"{task.name}-{task.check_split(args.split) if args.split else default_split(task)}"
    res = evaluate_run(args.run, task.name, args.split, args.data_dir, args.limit, args.max_length, args.batch_size,
                       args.max_new_tokens, out_dir, with_meteor=not args.no_meteor, model=model)
    return res, model


def _print(res: dict) -> None:
    trunc = f", {res['truncated']} truncated to {res['max_length']} tokens" if res["truncated"] else ""
    generated = "outputs" in res  # generation tasks: "main" repeats the task's metric, "n" the examples
    scores = {k: v for k, v in res["scores"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
              and not (generated and k in ("n", "main"))}
    shown = ", ".join(f"{k} {v}" if generated and isinstance(v, int) else f"{k} {v:.2f}" for k, v in scores.items())
    print(f"{res['task']} {res['split']} ({res['examples']} examples{trunc}): {shown}")
    for name, why in (res["scores"].get("unavailable") or {}).items():
        print(f"  {name}: unavailable ({why})")
    if res.get("outputs"):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((res.get("finish_reasons") or {}).items()))
        print(f"  outputs: {res['outputs']}" + (f" (finish reasons: {reasons})" if reasons else ""))


__all__ = ["ConfigError"]
