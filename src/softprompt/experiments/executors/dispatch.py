"""The submitting process's side of every executor: record each outcome as it arrives."""

from __future__ import annotations

import contextlib
from pathlib import Path

from softprompt.experiments.cell_run import CellRun
from softprompt.experiments.cells import Log
from softprompt.experiments.executors.base import Executor
from softprompt.experiments.store import git_commit_file
from softprompt.experiments.cell_run import Job


def dispatch(executor: Executor, job: Job, logger: Log) -> list[str]:
    """Run `job.cells` on `executor`; each finished cell file is committed here with `job.commit` (unless its
    worker did: the local pool), each failure recorded. Returns the ids of the cells run."""
    store, ran = job.store, []
    remote = executor.name != "local"
    outcomes = executor.run(job.cells, CellRun(job, executor.name, executor.threads))
    with contextlib.closing(outcomes):  # stopping early cancels what is still queued or running
        for outcome in outcomes:
            if outcome.status == "done":
                ran.append(outcome.cell)
                if remote and logger.echo:  # the worker wrote its lines to bench.log
                    logger.echo(f"done {outcome.cell} ({executor.name}, {outcome.seconds or 0:.1f}s)"
                                + (f": {outcome.score:.2f}" if outcome.score is not None else ""))
                if job.commit and not outcome.committed:
                    git_commit_file(Path(outcome.path), f"results: {job.spec.name} {outcome.cell}", logger)
            elif outcome.status == "failed":
                if store.failure(outcome.cell) is None:  # not recorded by the cell itself: died, or never ran
                    store.record_failure(outcome.cell, outcome.reason or "failed")
                    logger(f"FAILED {outcome.cell}: {outcome.reason}")
                elif remote and logger.echo:
                    logger.echo(f"FAILED {outcome.cell}: {outcome.reason}")
                if job.fail_fast:
                    store.request_stop()
                    raise RuntimeError(f"--fail-fast: cell {outcome.cell} failed: {outcome.reason}")
            elif outcome.status == "finished-elsewhere":
                logger(f"{outcome.cell}: finished by another bench process meanwhile")
    return ran
