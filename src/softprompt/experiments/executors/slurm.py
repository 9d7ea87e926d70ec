"""--executor slurm: each cell a Slurm job, submitted through submitit as job arrays.

Options per cell: partition, time_min, cpus (also the cell's torch threads), gpus, mem_gb, and
`parallel` (the array's parallelism); more sbatch options under `additional`. A cell whose job ends
without a result (killed, node failure) is submitted again, up to `retries` times; a cell that hits
its time limit or is preempted is checkpointed and requeued by submitit (CellJob.checkpoint), and
continues from its run folder. Cells that need another cell's adapter are submitted once it is
finished. `local` (--slurm-local) runs the same code path through submitit's local executor: one
process per job on this machine, `parallel` of them at a time (default: cores / cpus). The
results/runs folders must be on a file system the nodes share.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from softprompt.errors import ConfigError
from softprompt.experiments.cell_run import CellRun, Outcome
from softprompt.experiments.cells import Cell
from softprompt.experiments.executor_options import SlurmOptions
from softprompt.experiments.executors.base import Waiting


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("bench: --executor slurm needs submitit: pip install 'softprompt[slurm]'") from None
    return submitit


class CellJob:
    """A cell as a submitit job; on a time limit or preemption submitit calls `checkpoint` and requeues it."""

    def __init__(self, run_cell: CellRun):
        self.run_cell = run_cell

    def __call__(self, cell_id: str) -> Outcome:
        return self.run_cell(cell_id)

    def checkpoint(self, cell_id: str):
        import submitit

        return submitit.helpers.DelayedSubmission(self, cell_id)  # the retry continues from the run folder


class SlurmExecutor:
    name = "slurm"

    def __init__(self, options: SlurmOptions, log: Callable[[str], Any] | None = print):
        self.options, self.log = options, log
        self.threads = options.cpus

    def executor(self, folder: Path, spec_name: str):
        submitit = import_submitit()
        opts = self.options
        if not opts.local and shutil.which("sbatch") is None:
            raise ConfigError("bench: --executor slurm: no Slurm here (sbatch not found); --slurm-local runs the "
                              "same jobs through submitit's local executor")
        ex = submitit.AutoExecutor(folder=str(folder), cluster="local" if opts.local else "slurm")
        params: dict[str, Any] = {"name": f"softprompt-{spec_name}", "timeout_min": opts.time_min,
                                  "cpus_per_task": opts.cpus, "gpus_per_node": opts.gpus, "tasks_per_node": 1,
                                  "nodes": 1, "slurm_additional_parameters": dict(opts.additional)}
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.mem_gb is not None:
            params["mem_gb"] = opts.mem_gb
        if opts.parallel:
            params["slurm_array_parallelism"] = opts.parallel
        ex.update_parameters(**params)
        return ex

    def run(self, cells: list[Cell], run_cell: CellRun) -> Iterator[Outcome]:
        job = run_cell.job
        folder = Path(self.options.folder or job.store.work_dir / "submitit")
        ex = self.executor(folder, job.spec.name)
        fn = CellJob(run_cell)
        at_once = self.options.parallel or (max(1, (os.cpu_count() or 1) // self.options.cpus)
                                            if self.options.local else None)
        waiting, queue = Waiting(cells, job.store), []
        pending: dict[Any, tuple[str, int]] = {}  # submitit job -> (cell id, submissions so far)
        try:
            while waiting or queue or pending:
                ready, dropped = waiting.release(len(pending) + len(queue))
                yield from dropped
                queue += [(c.id, 0) for c in ready]
                room = len(queue) if at_once is None else max(0, at_once - len(pending))
                batch, queue = queue[:room], queue[room:]
                if batch:
                    jobs = ex.map_array(fn, [cid for cid, _ in batch])  # one job array
                    pending.update({j: (cid, tries + 1) for j, (cid, tries) in zip(jobs, batch)})
                finished = [j for j in pending if j.done()]
                if not finished:
                    time.sleep(job.poll_s)
                    continue
                for j in finished:
                    cell_id, tries = pending.pop(j)
                    outcome = self._outcome(j, cell_id, tries)
                    if outcome is None:  # ended without a result: submit again
                        queue.append((cell_id, tries))
                        continue
                    waiting.settle(outcome)
                    yield outcome
        finally:
            for j in pending:  # the submitting process stopped early (--fail-fast, Ctrl-C)
                j.cancel(check=False)

    def _outcome(self, j, cell_id: str, tries: int) -> Outcome | None:
        try:
            if self.options.local and not j.paths.result_pickle.exists():  # (on a cluster, submitit waits for
                raise RuntimeError(f"job {j.job_id} ended without a result")  # a slow shared file system)
            return j.result()
        except Exception as err:  # submitit's UncompletedJobError / FailedJobError: the job died
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:500]
            if tries <= self.options.retries:
                if self.log:
                    self.log(f"cell {cell_id}: job {j.job_id} ended without a result ({reason}); submitting it again")
                return None
            return Outcome(cell_id, "failed", reason=f"its Slurm job failed {tries} times: {reason}")
