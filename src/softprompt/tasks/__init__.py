"""Benchmark tasks: registry, loaders for the original data formats (or the datasets hub), metrics.

    from softprompt.tasks import get_task, load_split, compute_metrics
    examples = load_split("sst2", "validation", data_dir="/data", limit=200, seed=0)
    scores = compute_metrics("sst2", predictions, [e.label for e in examples])  # {"main": ..., ...}
"""

from softprompt.tasks.example import Example, LoadReport
from softprompt.tasks.loading import load_split, load_split_with_report, subsample
from softprompt.tasks.metrics import compute_metrics
from softprompt.tasks.registry import FPB_AGREEMENTS, SPLITS, TASKS, Task, get_task

__all__ = [
    "Example",
    "FPB_AGREEMENTS",
    "LoadReport",
    "SPLITS",
    "TASKS",
    "Task",
    "compute_metrics",
    "get_task",
    "load_split",
    "load_split_with_report",
    "subsample",
]
