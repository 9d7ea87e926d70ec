"""Financial PhraseBank v1.0: <data>/financial_phrasebank/Sentences_{50,66,75,All}Agree.txt.

Each line is `sentence@label`, label negative/neutral/positive (split at the LAST '@').
Encodings (checked on the actual bytes): the 50/66/75Agree files are Latin-1, AllAgree is UTF-8.

There is no official split. `split_indices` makes a deterministic one: stratified by label,
each class's rows (in file order) are permuted with numpy's default_rng(FPB_SPLIT_SEED) --
one generator, classes visited in label order -- and cut 80% train / 10% validation / rest test
(sizes round half up); each split keeps file order. The split is a function of the row order
and labels only, so the hub route (same rows, same order) yields the same split, and the
binary view (fpb-binary) is the 3-class split with neutral removed. AllAgree gives
train 1,811 / validation 226 / test 227. Split "all" is every row of the file (AllAgree: 2,264;
fpb-binary 873), for cross-domain evaluation of models that never train on FPB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from softprompt.errors import DataError
from softprompt.tasks.example import Example
from softprompt.tasks.loaders._files import read_lines, relative_uid
from softprompt.tasks.registry import Task

FPB_SPLIT_SEED = 42
SPLIT_FRACTIONS = (0.8, 0.1)  # train, validation; test gets the rest
LABELS = {"negative": 0, "neutral": 1, "positive": 2}
FILES = {"50": "Sentences_50Agree.txt", "66": "Sentences_66Agree.txt", "75": "Sentences_75Agree.txt", "all": "Sentences_AllAgree.txt"}


def file_path(agreement: str, root: Path) -> Path:
    return root / "financial_phrasebank" / FILES[agreement]


def encoding_of(agreement: str) -> str:
    return "utf-8" if agreement == "all" else "latin-1"


def split_indices(labels: Sequence[int], seed: int = FPB_SPLIT_SEED) -> dict[str, list[int]]:
    """Seeded stratified 80/10/10 split of row positions; each list is in ascending order."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for label in sorted(set(labels_arr.tolist())):
        rows = np.flatnonzero(labels_arr == label)
        rows = rows[rng.permutation(len(rows))]
        n_train = int(np.floor(len(rows) * SPLIT_FRACTIONS[0] + 0.5))
        n_val = int(np.floor(len(rows) * SPLIT_FRACTIONS[1] + 0.5))
        parts["train"] += rows[:n_train].tolist()
        parts["validation"] += rows[n_train : n_train + n_val].tolist()
        parts["test"] += rows[n_train + n_val :].tolist()
    return {name: sorted(rows) for name, rows in parts.items()}


def read_all(agreement: str, root: Path) -> list[Example]:
    """Every sentence of one agreement file, in file order."""
    path = file_path(agreement, root)
    examples = []
    for index, line in enumerate(read_lines(path, encoding_of(agreement), what="Financial PhraseBank")):
        sentence, sep, label_text = line.rpartition("@")
        if not sep or not sentence:
            raise DataError(f"{path} line {index + 1}: expected 'sentence@label', got {line[:60]!r}")
        if label_text not in LABELS:
            raise DataError(
                f"{path} line {index + 1}: unknown label {label_text!r}; expected one of negative, neutral, positive"
            )
        examples.append(Example(sentence, None, LABELS[label_text], None, relative_uid(path, root, index + 1)))
    return examples


def select_split(examples: list[Example], split: str) -> list[Example]:
    if split == "all":  # every row, file order: for evaluation only (nothing should train on it)
        return list(examples)
    positions = split_indices([int(example.label) for example in examples])[split]  # type: ignore[arg-type]
    return [examples[i] for i in positions]


def load(task: Task, split: str, root: Path) -> list[Example]:
    return select_split(read_all(task.agreement or "all", root), split)
