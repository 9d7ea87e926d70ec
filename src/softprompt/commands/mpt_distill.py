"""softprompt mpt-distill: Multitask Prompt Tuning's source training (prompt distillation, Wang et al. 2023, Sec. 3.1)."""

from __future__ import annotations

import json

from softprompt.commands._common import config_from_args
from softprompt.commands.reference import add_config_flags
from softprompt.train.mpt_distill_config import MPTDistillConfig

HELP = ("distil one shared prompt P* and per-task u_k, v_k from single-task teacher prompts (MPT source "
        "training); an mpt method's producer.shared_from reads the output folder")


def add_arguments(parser) -> None:
    add_config_flags(parser, MPTDistillConfig)


def run(args) -> int:
    cfg = config_from_args(args, MPTDistillConfig)  # checked before anything heavy is loaded
    from softprompt.train.mpt_distill import distill

    summary = distill(cfg)
    print(json.dumps(summary, indent=2))
    print(f"P* and the mean U, V: {cfg.output_dir} (method.producer.shared_from); each task's student: "
          f"{cfg.output_dir}/tasks/<task>")
    return 0
