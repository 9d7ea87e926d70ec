"""A run's data, as every training path reads it: training rows, selection rows, the reported split.

The protocol (train/trainer.py's docstring): selection on `selection_split` (by default rows carved
from train, train/splits.py), the selected adapter scored once on `eval_split`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from softprompt.errors import ConfigError
from softprompt.tasks import Example, LoadReport, load_split_with_report, subsample
from softprompt.train.batches import Encoded, encode
from softprompt.train.config import TrainConfig
from softprompt.train.splits import Carve, carve_validation
from softprompt.train.text_batches import encode_generation


@dataclass
class RunData:
    train: list[Example]
    selection: list[Example]
    train_report: LoadReport
    selection_report: str  # one line: where the selection rows came from
    selection_name: str  # "carved validation" or the split's name
    carve: Carve | None  # the carve, when selection_split is "carved"


def load_run_data(cfg: TrainConfig, task, log: Callable[..., Any] = print) -> RunData:
    """Training and selection rows of `cfg` (the reported split is loaded at the end: `load_reported`)."""
    if cfg.selection_split == "carved":
        return _carved(cfg, task)
    try:
        split = task.check_split(cfg.selection_split)
    except ConfigError as err:
        raise ConfigError(f"selection_split: {err} (or 'carved', 10% of train)") from None
    if split == "train":
        raise ConfigError("selection_split: 'train' is the training data; use 'carved' or a held-out split")
    train, train_report = load_split_with_report(task, "train", cfg.data_dir, cfg.train_limit, cfg.seed)
    selection, report = load_split_with_report(task, split, cfg.data_dir, cfg.eval_limit, 0)
    if split == task.check_split(cfg.eval_split):
        log(f"warning: selection_split {split!r} is also the reported split (eval_split): "
            f"its score is optimistically biased")
    return RunData(train, selection, train_report, report.summary(), split, None)


def _carved(cfg: TrainConfig, task) -> RunData:
    pool, train_report = load_split_with_report(task, "train", cfg.data_dir, None, cfg.seed)
    carve = carve_validation(pool, task.name, cfg.train_limit, is_regression=task.is_regression, grouped=task.grouped)
    rest = carve.rest
    limit = None if cfg.train_limit is None else cfg.train_limit - len(carve.validation)
    train = rest if limit is None else subsample(rest, max(limit, 1), cfg.seed, grouped=task.grouped)
    train_report.not_sampled = len(rest) - len(train)
    train_report.rows_returned = len(train)
    selection = carve.validation
    if cfg.eval_limit is not None:
        selection = subsample(selection, cfg.eval_limit, 0, grouped=task.grouped)
    note = f"; {len(selection):,} used (eval_limit)" if len(selection) < len(carve.validation) else ""
    return RunData(train, selection, train_report, carve.summary() + note, "carved validation", carve)


def load_reported(cfg: TrainConfig, task) -> tuple[list[Example], LoadReport]:
    """The reported split (`eval_split`), scored once with the selected adapter."""
    return load_split_with_report(task, cfg.eval_split, cfg.data_dir, cfg.eval_limit, 0)


def encode_rows(cfg: TrainConfig, task, backbone, rows: list[Example]) -> Encoded:
    """Token ids of `rows` for training or scoring: source + target for generation tasks, else text (+ label)."""
    if task.is_generation:
        return encode_generation(backbone.tokenizer, task, rows, cfg.max_length, backbone.kind, chat=cfg.chat_template)
    return encode(backbone.tokenizer, rows, cfg.max_length)
