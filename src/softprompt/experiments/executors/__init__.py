"""Executors: where the cells of a grid run. Each takes the runnable cells (dependencies first) and
`CellRun` (cell_run.py: runs one cell in a fresh process and writes its cell file) and yields an
`Outcome` per cell as it finishes; the submitting process (grid.run_grid) records them and, with
--commit, commits each cell file as it arrives.

    local  today's pool (workers.py): N processes claiming cells through lock files (the default)
    ray    one Ray task per cell, on a local runtime started here or a running cluster (--address)
    slurm  one Slurm job per cell, submitted as job arrays through submitit (--slurm-local: submitit's
           local executor, the same code path without a cluster)

Ray and submitit are optional extras: pip install 'softprompt[ray]' / 'softprompt[slurm]'.
"""

from __future__ import annotations

from typing import Any, Callable

from softprompt.experiments.executors.base import Executor, Waiting  # noqa: F401 (the interface)


def make_executor(kind: str, options: Any, workers: int = 1, log: Callable[[str], Any] | None = print) -> Executor:
    """The executor of --executor `kind` with its options (executor_options.resolve)."""
    if kind == "ray":
        from softprompt.experiments.executors.ray import RayExecutor

        return RayExecutor(options, log)
    if kind == "slurm":
        from softprompt.experiments.executors.slurm import SlurmExecutor

        return SlurmExecutor(options, log)
    from softprompt.experiments.executors.local import LocalExecutor

    return LocalExecutor(workers, log)
