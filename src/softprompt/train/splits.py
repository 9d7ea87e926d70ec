"""The model-selection split carved from the training data.

GLUE-style test labels are private, so the dev set is reported as the test set and must not
pick the checkpoint. Selection instead uses rows carved out of `train`:

* size: 10% of the rows the run trains on (`train_limit`, else the whole split), rounded half
  up, at least 1 and at most 1,000;
* which rows: one fixed-seed order (CARVE_SEED, not the run's seed) of the *whole* train split,
  stratified by label: each class is shuffled, a row's key is (its position in its class + 0.5)
  / class size, rows are sorted by that key, so every prefix holds each class in proportion
  (to within one row). The carve is the first rows of that order: it does not depend on the
  run's seed or on how `train_limit` subsamples, and a smaller carve is a subset of a larger one.
  Regression tasks are not stratified; grouped tasks (MultiRC) carve whole question groups;
* the carved rows are removed from the pool that `train_limit` then subsamples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from softprompt.errors import ConfigError
from softprompt.tasks import Example

CARVE_SEED = 1234
CARVE_FRACTION = 0.1
CARVE_MAX = 1000


def carve_size(n_train: int) -> int:
    """Rows to carve when the run trains on n_train rows: round(10%), at least 1, at most 1,000."""
    return int(min(CARVE_MAX, max(1, np.floor(n_train * CARVE_FRACTION + 0.5))))


@dataclass
class Carve:
    validation: list[Example]  # the selection split, in train-file order
    rest: list[Example]  # the training pool, carved rows removed, in train-file order
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        r = self.report
        how = "stratified by label" if r["stratified"] else ("whole groups" if r["grouped"] else "unstratified")
        return (f"{r['task']} train: {r['rows']:,} rows carved as the selection split (10% of {r['of_rows']:,} "
                f"training rows, at most {CARVE_MAX:,}; {how}, seed {r['seed']}; fingerprint {r['fingerprint']}); "
                f"{len(self.rest):,} rows left for training")


def selection_order(examples: list[Example], stratify: bool, seed: int = CARVE_SEED) -> np.ndarray:
    """Row positions in carve order (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = len(examples)
    if not stratify:
        return rng.permutation(n)
    labels = np.array([e.label for e in examples])
    key = np.empty(n, dtype=np.float64)
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        rows = rows[rng.permutation(len(rows))]
        key[rows] = (np.arange(len(rows)) + 0.5) / len(rows)
    tiebreak = rng.permutation(n)  # classes of equal size interleave in a seeded order
    return np.lexsort((tiebreak, key))


def _group_carve(examples: list[Example], size: int, seed: int) -> list[int]:
    """Whole groups in seeded order while they fit in `size` rows (at least one group)."""
    members: dict[str | None, list[int]] = {}
    for i, e in enumerate(examples):
        members.setdefault(e.group, []).append(i)
    groups = list(members)
    chosen: list[int] = []
    for g in np.random.default_rng(seed).permutation(len(groups)):
        rows = members[groups[g]]
        if chosen and len(chosen) + len(rows) > size:
            continue
        chosen += rows
        if len(chosen) >= size:
            break
    return chosen


def carve_validation(examples: list[Example], task_name: str, n_train: int | None = None, *, is_regression: bool = False,
                     grouped: bool = False, seed: int = CARVE_SEED) -> Carve:
    """Split `examples` (a whole train split) into the selection split and the training pool.

    n_train: rows the run trains on (its train_limit); None = all of `examples`.
    """
    n_train = len(examples) if n_train is None else min(n_train, len(examples))
    size = carve_size(n_train)
    if len(examples) - size < 1:
        raise ConfigError(f"selection_split: {task_name} train has {len(examples)} row(s), too few to carve a selection "
                          f"split from; name another split (e.g. selection_split: validation)")
    stratify = not (is_regression or grouped)
    if grouped:
        chosen = set(_group_carve(examples, size, seed))
    else:
        chosen = set(selection_order(examples, stratify, seed)[:size].tolist())
    validation = [e for i, e in enumerate(examples) if i in chosen]
    rest = [e for i, e in enumerate(examples) if i not in chosen]
    fingerprint = hashlib.sha1("\n".join(sorted(e.uid for e in validation)).encode()).hexdigest()[:12]
    labels: dict[str, int] = {}
    if not is_regression:
        for e in validation:
            labels[str(e.label)] = labels.get(str(e.label), 0) + 1
    report = {"split": "carved", "task": task_name, "from": "train", "rows": len(validation), "of_rows": n_train,
              "fraction": CARVE_FRACTION, "max_rows": CARVE_MAX, "seed": seed, "stratified": stratify,
              "grouped": grouped, "label_counts": dict(sorted(labels.items())), "fingerprint": fingerprint}
    return Carve(validation, rest, report)
