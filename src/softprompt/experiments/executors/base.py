"""The executor interface, and the dependency rule every executor shares."""

from __future__ import annotations

from typing import Iterator, Protocol

from softprompt.experiments.cell_run import CellRun, Outcome
from softprompt.experiments.cells import Cell
from softprompt.experiments.store import Store


class Executor(Protocol):
    name: str
    threads: int  # torch threads of each cell's process

    def run(self, cells: list[Cell], run_cell: CellRun) -> Iterator[Outcome]:
        """Run every cell (dependencies first in `cells`), yielding each outcome as it finishes."""


class Waiting:
    """Cells not submitted yet; a cell is released once the cell it needs is finished (the local
    pool's rule, workers.next_cell): its source failed, or is neither finished nor part of this run,
    and it fails with that reason instead."""

    def __init__(self, cells: list[Cell], store: Store):
        self.left, self.store = list(cells), store
        self.ids = {c.id for c in cells}
        self.failed: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.left)

    def release(self, in_flight: int) -> tuple[list[Cell], list[Outcome]]:
        """(cells that can run now, outcomes of cells that never will); with nothing in flight and nothing
        ready, whatever still waits never will."""
        ready, dropped, keep = [], [], []
        for c in self.left:
            if c.needs is None or self.store.finished(c.needs):
                ready.append(c)
            elif c.needs in self.failed or c.needs not in self.ids:
                why = "which failed" if c.needs in self.ids else "which is neither finished nor part of this run"
                dropped.append(Outcome(c.id, "failed", reason=f"needs {c.needs}, {why}"))
                self.failed.add(c.id)
            else:
                keep.append(c)
        if keep and not ready and not in_flight:
            dropped += [Outcome(c.id, "failed", reason=f"needs {c.needs}, which did not finish") for c in keep]
            keep = []
        self.left = keep
        ready.sort(key=lambda c: c.needs is None)  # stable: evaluations of finished sources first
        return ready, dropped

    def settle(self, outcome: Outcome) -> None:
        """Note an outcome (its dependents are released or dropped at the next `release`)."""
        if outcome.status not in ("done", "finished-elsewhere"):
            self.failed.add(outcome.cell)
