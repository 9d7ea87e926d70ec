"""E2E NLG data-to-text: <data>/e2e/devset.csv (CSV, header `mr,ref`, quoted, UTF-8).

Only the official development set is available offline: 4,672 (MR, reference) rows, 547 distinct
meaning representations, the rows of one MR adjacent. Task "e2e" splits the *MRs* (never rows):
MRs in order of first appearance are permuted with numpy's default_rng(E2E_SPLIT_SEED) and cut
80% train / 10% validation / rest test (sizes round half up: 438 / 55 / 54); each split keeps
file order, so one MR never appears in two splits.

Examples: train has one Example per (MR, reference) pair (target = that reference); validation
and test have one per MR with every reference in `references` (target = the first one). The
input text is the MR as written (`name[The Eagle], eatType[coffee shop], ...`); `group` is the
id of the MR's first row; labels are None. The hub route (e2e_nlg, whose validation split is the
same development set) feeds the same functions, so both routes give the same split.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softprompt.errors import DataError
from softprompt.tasks.example import Example
from softprompt.tasks.loaders._files import BOM, decode, relative_uid, require_file
from softprompt.tasks.registry import Task

E2E_SPLIT_SEED = 13
SPLIT_FRACTIONS = (0.8, 0.1)  # train, validation; test gets the rest
DEV_FILE = Path("e2e") / "devset.csv"
HEADER = ["mr", "ref"]
_SLOT = r"[A-Za-z][A-Za-z ]*\[[^\[\]]*\]"
MR_PATTERN = re.compile(rf"{_SLOT}(?:, {_SLOT})*")
MR_EXAMPLE = "name[The Eagle], eatType[coffee shop]"


@dataclass(frozen=True)
class Row:
    """One (MR, reference) row; uid names its file and line (or hub split and row)."""

    mr: str
    ref: str
    uid: str


@dataclass(frozen=True)
class MRGroup:
    """All references of one MR, in source order; uid is the id of its first row."""

    mr: str
    refs: tuple[str, ...]
    uids: tuple[str, ...]

    @property
    def uid(self) -> str:
        return self.uids[0]


def file_path(root: Path) -> Path:
    return root / DEV_FILE


def check_row(mr: str, ref: str, uid: str, where: str) -> Row:
    """A stripped, validated Row; DataError naming `where` (file and line) for a malformed field."""
    for column, value in (("mr", mr), ("ref", ref)):
        if not isinstance(value, str):
            raise DataError(f"{where}: {column} must be text, got {type(value).__name__} {value!r}")
    mr, ref = mr.strip(), ref.strip()
    if not MR_PATTERN.fullmatch(mr):
        raise DataError(
            f"{where}: expected a meaning representation of attribute[value] slots joined by ', ' "
            f"(like {MR_EXAMPLE!r}), got {mr[:80]!r}"
        )
    if not ref:
        raise DataError(f"{where}: empty reference (ref) for MR {mr[:60]!r}")
    return Row(mr, ref, uid)


def read_rows(path: Path, root: Path) -> list[Row]:
    """Every row of an E2E CSV file, validated; errors name the file and 1-based line."""
    text = decode(path, require_file(path, "E2E").read_bytes(), "utf-8")
    reader = csv.reader(io.StringIO(text.removeprefix(BOM), newline=""), strict=True)
    rows: list[Row] = []
    start = 1  # first physical line of the record being read (quoted fields may span lines)
    try:
        for index, cells in enumerate(reader):
            if index == 0:
                if cells != HEADER:
                    raise DataError(f"{path} line 1: expected header 'mr,ref', got {','.join(cells)!r}")
            elif len(cells) != len(HEADER):
                raise DataError(f"{path} line {start}: expected 2 comma-separated fields (mr, ref), got {len(cells)}")
            else:
                rows.append(check_row(cells[0], cells[1], relative_uid(path, root, start), f"{path} line {start}"))
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path} line {start}: malformed CSV ({err}); expected quoted fields mr,ref") from None
    if not rows:
        raise DataError(f"{path}: no data rows; expected a header 'mr,ref' and one row per reference")
    return rows


def group_rows(rows: list[Row]) -> list[MRGroup]:
    """One MRGroup per distinct MR, in order of first appearance."""
    members: dict[str, list[Row]] = {}
    for row in rows:
        members.setdefault(row.mr, []).append(row)
    return [MRGroup(mr, tuple(r.ref for r in group), tuple(r.uid for r in group)) for mr, group in members.items()]


def split_indices(n_groups: int, seed: int = E2E_SPLIT_SEED) -> dict[str, list[int]]:
    """Seeded 80/10/10 split of MR positions; each list ascending, together a partition of range(n)."""
    order = np.random.default_rng(seed).permutation(n_groups)
    n_train = int(np.floor(n_groups * SPLIT_FRACTIONS[0] + 0.5))
    n_val = int(np.floor(n_groups * SPLIT_FRACTIONS[1] + 0.5))
    parts = {"train": order[:n_train], "validation": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {name: sorted(part.tolist()) for name, part in parts.items()}


def to_examples(groups: list[MRGroup], split: str) -> list[Example]:
    """train: one Example per (MR, reference); validation/test: one per MR with all references."""
    if split == "train":
        return [
            Example(g.mr, None, None, g.uid, uid, target=ref, references=(ref,))
            for g in groups
            for ref, uid in zip(g.refs, g.uids)
        ]
    return [Example(g.mr, None, None, g.uid, g.uid, target=g.refs[0], references=g.refs) for g in groups]


def select_split(rows: list[Row], split: str) -> list[Example]:
    """The development-set rows cut by MR into the seeded split."""
    groups = group_rows(rows)
    return to_examples([groups[i] for i in split_indices(len(groups))[split]], split)


def load(task: Task, split: str, root: Path) -> list[Example]:
    return select_split(read_rows(file_path(root), root), split)
