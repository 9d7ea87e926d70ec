"""--executor local: today's pool (workers.py), N processes claiming cells through lock files."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from softprompt.experiments.cell_run import CellRun, Outcome
from softprompt.experiments.cells import Cell
from softprompt.experiments.workers import run_workers


class LocalExecutor:
    name = "local"
    threads = 1

    def __init__(self, workers: int = 1, log: Callable[[str], Any] | None = print):
        self.workers, self.log = workers, log

    def run(self, cells: list[Cell], run_cell: CellRun) -> Iterator[Outcome]:
        """The pool's workers run `cells` (run_cell.job's) themselves and commit as they go; the outcomes
        come when they end."""
        job = run_cell.job
        for worker in run_workers(job, self.workers, self.log):
            for cell_id in worker["ran"]:
                yield Outcome(cell_id, "done", str(job.store.cell_file(cell_id)), committed=job.commit)
