"""GLUE TSV files as distributed: <data>/glue/<TASK>/{train,dev,test}.tsv.

Formats (checked cell by cell; test files have no label column and are unlabeled):
  SST-2  header `sentence\\tlabel` (test `index\\tsentence`), label 0/1
  CoLA   NO header: source, label, original mark, sentence (test has header `index\\tsentence`)
  MRPC   header `Quality\\t#1 ID\\t#2 ID\\t#1 String\\t#2 String` (UTF-8 BOM tolerated), Quality 0/1
  RTE    header `index\\tsentence1\\tsentence2\\tlabel`, label entailment/not_entailment
  WNLI   same columns, label 0/1 (1 = entailment); the strings are accepted too
  STS-B  header of 10 columns, `score` a float 0..5 (regression)
  QNLI   header `index\\tquestion\\tsentence\\tlabel`; dev and test only (train is hub-only)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from softprompt.errors import DataError
from softprompt.tasks.example import Example
from softprompt.tasks.loaders._files import iter_tsv, parse_label, relative_uid
from softprompt.tasks.registry import Task

SPLIT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
STSB_COLUMNS = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2")


@dataclass(frozen=True)
class GlueFormat:
    folder: str
    columns: tuple[str, ...]  # train/dev columns
    header: bool  # train/dev have a header line
    test_columns: tuple[str, ...]  # test.tsv always has a header
    text_columns: tuple[str, ...]  # 1 or 2 columns that become text / text_pair
    label_column: str | None  # None for regression (score column)
    labels: dict[str, int] | None  # label string -> class index; None = float score


_BINARY = {"0": 0, "1": 1}
_ENTAILMENT = {"entailment": 0, "not_entailment": 1}

FORMATS: dict[str, GlueFormat] = {
    "sst2": GlueFormat("SST-2", ("sentence", "label"), True, ("index", "sentence"), ("sentence",), "label", _BINARY),
    "cola": GlueFormat(
        "CoLA", ("source", "label", "original_mark", "sentence"), False, ("index", "sentence"), ("sentence",), "label", _BINARY
    ),
    "mrpc": GlueFormat(
        "MRPC",
        ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
        True,
        ("index", "#1 ID", "#2 ID", "#1 String", "#2 String"),
        ("#1 String", "#2 String"),
        "Quality",
        _BINARY,
    ),
    "rte": GlueFormat(
        "RTE", ("index", "sentence1", "sentence2", "label"), True, ("index", "sentence1", "sentence2"),
        ("sentence1", "sentence2"), "label", _ENTAILMENT,
    ),
    "wnli": GlueFormat(
        "WNLI", ("index", "sentence1", "sentence2", "label"), True, ("index", "sentence1", "sentence2"),
        ("sentence1", "sentence2"), "label", {"0": 0, "1": 1, "not_entailment": 0, "entailment": 1},
    ),
    "stsb": GlueFormat(
        "STS-B", STSB_COLUMNS + ("score",), True, STSB_COLUMNS, ("sentence1", "sentence2"), None, None
    ),
    "qnli": GlueFormat(
        "QNLI", ("index", "question", "sentence", "label"), True, ("index", "question", "sentence"),
        ("question", "sentence"), "label", _ENTAILMENT,
    ),
}


def split_path(task: Task, split: str, root: Path) -> Path:
    return root / "glue" / FORMATS[task.name].folder / SPLIT_FILES[split]


def load(task: Task, split: str, root: Path) -> list[Example]:
    """Read one GLUE split; the test split comes back with label=None."""
    fmt = FORMATS[task.name]
    path = split_path(task, split, root)
    labeled = split != "test"
    columns = fmt.columns if labeled else fmt.test_columns
    header = fmt.header if labeled else True
    text_at = [columns.index(name) for name in fmt.text_columns]
    label_at = columns.index(fmt.label_column or "score") if labeled else None

    examples = []
    for line, cells in iter_tsv(path, columns, header, what=f"GLUE {fmt.folder} {split}"):
        label: int | float | None = None
        if label_at is not None:
            if fmt.labels is None:
                label = _parse_score(path, line, cells[label_at])
            else:
                label = parse_label(path, line, cells[label_at], fmt.labels, column=columns[label_at])
        text = cells[text_at[0]]
        text_pair = cells[text_at[1]] if len(text_at) > 1 else None
        examples.append(Example(text, text_pair, label, None, relative_uid(path, root, line)))
    return examples


def _parse_score(path: Path, line: int, value: str) -> float:
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not (0.0 <= score <= 5.0):  # also rejects nan
        raise DataError(f"{path} line {line}: expected a similarity score between 0 and 5 in column score, got {value!r}")
    return score
