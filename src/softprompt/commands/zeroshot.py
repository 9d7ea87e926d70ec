"""softprompt zero-shot: the zero-shot prompting baseline (instruction model + label words)."""

from __future__ import annotations

import json

HELP = "score an instruction-tuned model zero-shot on a task (instruction + verbalizer words, no training)"


def add_arguments(parser) -> None:
    from softprompt.commands.reference import add_field_flag
    from softprompt.train.config import TrainConfig

    add_field_flag(parser, TrainConfig, "backbone", default="smollm2-135m")
    parser.add_argument("--task", required=True, action="append",
                        help="task to score (repeatable; required), e.g. sst2 (`softprompt data stats` lists them)")
    parser.add_argument("--split", default=None,
                        help="split to score (default: validation, or test where the task has no labelled validation split)")
    add_field_flag(parser, TrainConfig, "data_dir", default=None)
    parser.add_argument("--limit", type=int, default=None,
                        help="score a seeded subsample of this many examples (default: all)")
    parser.add_argument("--max-length", type=int, default=256,
                        help="prompt tokens; longer inputs are shortened, the instruction and the answer turn never")
    from softprompt.train.calibration import CALIBRATIONS

    parser.add_argument("--calibration", default="batch", choices=CALIBRATIONS,
                        help="batch: minus each label's mean score over the inputs (Zhou et al. 2023, no labels); "
                             "content-free: minus the scores of 'N/A' (Zhao et al. 2021)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args) -> int:
    from softprompt.backbones import load_backbone
    from softprompt.train.inference import evaluate_zero_shot

    backbone = load_backbone(args.backbone)
    results = [evaluate_zero_shot(args.backbone, t, args.split, args.data_dir, args.limit, args.max_length, backbone=backbone,
                                  calibrate=args.calibration) for t in args.task]
    for res in results:
        if not args.json:
            cut = f", {res['truncated']} inputs shortened to fit {res['max_length']} tokens" if res["truncated"] else ""
            print(f"{res['task']} {res['split']} ({res['examples']} examples{cut}, {args.backbone} zero-shot, "
                  f"{args.calibration} calibration): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in res["scores"].items()))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0
