"""The unit every loader produces (`Example`) and the account of one load (`LoadReport`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("softprompt.tasks")


@dataclass(frozen=True)
class Example:
    """One model input and its gold label.

    text / text_pair: the (first, second) input segment; text_pair is None for single-text tasks.
    label: class index into Task.label_names, a float score for regression (STS-B), or None
        for an unlabeled split (GLUE/SuperGLUE test) loaded for prediction.
    group: the MultiRC question id ("<paragraph idx>-<question idx>") shared by all answer
        options of one question, for exact-match scoring; None elsewhere.
    uid: stable id, "<file relative to the data dir>:<1-based line>" for files (plus a suffix
        for rows flattened from one line), "<hub id>/<split>:<row>" for the hub route.
    target: the text a generation task should produce: the label word of a text-to-text view
        (None when unlabeled), the reference of an E2E train pair, the first reference of an
        E2E validation/test MR; None for classification/regression tasks.
    references: every acceptable output, scored against by the generation metrics (E2E: all
        references of the MR; a train pair has its one reference); empty elsewhere.
    """

    text: str
    text_pair: str | None
    label: int | float | None
    group: str | None
    uid: str
    target: str | None = None
    references: tuple[str, ...] = ()


@dataclass
class LoadReport:
    """What one `load_split_with_report` call read, kept and dropped (nothing is dropped silently).

    rows_read: examples the source produced before any filtering (MultiRC: answer rows).
    dropped: reason -> count, e.g. {"label 'neutral' is not in the binary view": 1113}.
    not_sampled: rows left out by `limit` subsampling.
    """

    task: str
    split: str
    source: str
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    not_sampled: int = 0
    rows_returned: int = 0

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        parts = [f"{self.task} {self.split}: {self.rows_returned:,} examples from {self.rows_read:,} rows ({self.source})"]
        for reason, count in self.dropped.items():
            parts.append(f"dropped {count:,} ({reason})")
        if self.not_sampled:
            parts.append(f"{self.not_sampled:,} not sampled (limit)")
        return "; ".join(parts)
