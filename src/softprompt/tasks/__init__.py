"""Benchmark tasks: registry, loaders for the original data formats (or the datasets hub), metrics.

    from softprompt.tasks import get_task, load_split, compute_metrics
    examples = load_split("sst2", "validation", data_dir="/data", limit=200, seed=0)
    scores = compute_metrics("sst2", predictions, [e.label for e in examples])  # {"main": ..., ...}

Generation tasks (Task.kind == "generation": "<task>-t2t" views, "e2e") carry Example.target /
references; score generated texts with score_predictions (tasks.text2text), which uses
parse_label / label_scores_from_text or generation_scores (tasks.generation_metrics).
"""

from softprompt.tasks.example import Example, LoadReport
from softprompt.tasks.loading import load_split, load_split_with_report, subsample
from softprompt.tasks.metrics import compute_metrics
from softprompt.tasks.registry import FPB_AGREEMENTS, SPLITS, TASKS, Task, get_task
from softprompt.tasks.text2text import label_scores_from_text, parse_label, render_input, score_predictions

__all__ = [
    "Example",
    "FPB_AGREEMENTS",
    "LoadReport",
    "SPLITS",
    "TASKS",
    "Task",
    "compute_metrics",
    "get_task",
    "label_scores_from_text",
    "load_split",
    "load_split_with_report",
    "parse_label",
    "render_input",
    "score_predictions",
    "subsample",
]
