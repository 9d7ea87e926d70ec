"""`load_split`: one task split as a list of Examples, from local files or the datasets hub.

Route: a data dir (argument, else $SOFTPROMPT_DATA) -> the original files under it, read in
place; no data dir -> `datasets.load_dataset`. Then, in this order: the binary view's label
mapping (dropped rows counted per reason), a text-to-text view's targets (the label words),
then optional deterministic subsampling.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from softprompt import settings
from softprompt.errors import ConfigError, DataError
from softprompt.tasks.example import Example, LoadReport, log
from softprompt.tasks.loaders import e2e, fpb, glue, hub, imdb, superglue, tweeteval
from softprompt.tasks.registry import Task, get_task

FileLoader = Callable[[Task, str, Path], list[Example]]
FILE_LOADERS: dict[str, FileLoader] = {
    "glue": glue.load,
    "superglue": superglue.load,
    "imdb": imdb.load,
    "fpb": fpb.load,
    "tweeteval": tweeteval.load,
    "e2e": e2e.load,
}


def load_split(
    task: Task | str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
    labeled: bool = True,
) -> list[Example]:
    """Examples of one split; see `load_split_with_report` for the arguments."""
    return load_split_with_report(task, split, data_dir, limit, seed, labeled)[0]


def load_split_with_report(
    task: Task | str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
    labeled: bool = True,
) -> tuple[list[Example], LoadReport]:
    """Examples of one split and a LoadReport of what was read, dropped and sampled.

    task: a Task or its name. split: "train", "validation" ("dev"/"val" accepted), "test".
    data_dir: the benchmark data folder; default $SOFTPROMPT_DATA; neither -> datasets hub.
    limit / seed: keep `limit` examples chosen by numpy default_rng(seed) (same seed, same
        rows, original order kept); grouped tasks (MultiRC) keep whole question groups, so at
        most `limit` rows. labeled=False allows splits without public labels (label=None).
    """
    task = get_task(task)
    split = task.check_split(split)
    if labeled and split in task.unlabeled_splits:
        raise DataError(
            f"{task.name} {split} split has no public labels; pass labeled=False to load it for prediction "
            f"(labels come back as None), or use 'validation' for scoring"
        )
    base = get_task(task.parent, agreement=task.agreement if task.benchmark == "fpb" else None) if task.parent else task
    root = settings.data_dir(data_dir)

    if root is None:
        examples = hub.load(base, split)
        source = f"datasets hub {hub.hub_id(hub.source_for(base))}"
    else:
        _check_offline(task, split, root)
        examples = FILE_LOADERS[base.benchmark](base, split, root)
        source = str(source_path(base, split, root))

    report = LoadReport(task.name, split, source, rows_read=len(examples))
    if labeled:
        _check_labeled(examples, report)
    if task.label_map is not None:
        examples = _apply_label_map(task, base, examples, report)
    if task.is_text_to_text:
        examples = [with_label_word_target(task, example) for example in examples]
    if limit is not None:
        kept = subsample(examples, limit, seed, grouped=task.grouped)
        report.not_sampled = len(examples) - len(kept)
        examples = kept
    report.rows_returned = len(examples)
    log.info(report.summary())
    return examples, report


def source_path(task: Task, split: str, root: Path) -> Path:
    """The file (or folder) a split is read from."""
    if task.benchmark == "glue":
        return glue.split_path(task, split, root)
    if task.benchmark == "superglue":
        return superglue.split_path(task, split, root)
    if task.benchmark == "imdb":
        return imdb.tarball_path(root)
    if task.benchmark == "fpb":
        return fpb.file_path(task.agreement or "all", root)
    if task.benchmark == "e2e":
        return e2e.file_path(root)
    return tweeteval.folder(root)


def _check_offline(task: Task, split: str, root: Path) -> None:
    if not root.is_dir():
        raise DataError(
            f"data dir {root} does not exist; set ${settings.DATA_ENV} or pass --data-dir to the benchmark data folder"
        )
    if split not in task.offline_splits:
        have = ", ".join(task.offline_splits) or "no splits"
        raise DataError(
            f"{task.name} {split} is not available offline (the local data has {have}); "
            f"unset ${settings.DATA_ENV} and --data-dir to load it from the datasets hub"
        )


def _check_labeled(examples: list[Example], report: LoadReport) -> None:
    """Every example has a gold label, or for a data-to-text task (E2E) a reference."""
    missing = sum(example.label is None and not example.references for example in examples)
    if missing:
        raise DataError(
            f"{report.source}: {missing:,} of {len(examples):,} rows have no label; "
            f"expected a labeled {report.split} split (pass labeled=False for prediction)"
        )


def _apply_label_map(task: Task, base: Task, examples: list[Example], report: LoadReport) -> list[Example]:
    """Map parent labels into the view's label space; count every dropped row by reason."""
    assert task.label_map is not None
    kept = []
    for example in examples:
        if example.label is None:
            kept.append(example)
            continue
        new_label = task.label_map[int(example.label)]
        if new_label is None:
            reason = f"label {base.label_names[int(example.label)]!r} not in the binary view"
            report.dropped[reason] = report.dropped.get(reason, 0) + 1
            continue
        kept.append(replace(example, label=new_label))
    return kept


def with_label_word_target(task: Task, example: Example) -> Example:
    """The example with its label word (task.verbalizer) as target; unlabeled stays target=None."""
    if example.label is None:
        return example
    return replace(example, target=task.verbalizer[int(example.label)])


def subsample(examples: list[Example], limit: int, seed: int, grouped: bool = False) -> list[Example]:
    """Deterministic subset of at most `limit` examples, in their original order.

    Uses a local numpy Generator(seed) (global RNG state is never touched). grouped=True keeps
    whole groups (MultiRC questions): groups in random order are added while they fit.
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
        raise ConfigError(f"limit must be a non-negative integer, got {limit!r}")
    if limit >= len(examples):
        return list(examples)
    rng = np.random.default_rng(seed)
    if not grouped:
        chosen = np.sort(rng.choice(len(examples), size=int(limit), replace=False))
        return [examples[i] for i in chosen]

    members: dict[str | None, list[int]] = {}
    for index, example in enumerate(examples):
        members.setdefault(example.group, []).append(index)
    groups = list(members)
    chosen_rows: list[int] = []
    for g in rng.permutation(len(groups)):
        rows = members[groups[g]]
        if len(chosen_rows) + len(rows) <= limit:
            chosen_rows += rows
            if len(chosen_rows) == limit:
                break
    return [examples[i] for i in sorted(chosen_rows)]
