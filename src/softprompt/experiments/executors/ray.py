"""--executor ray: each cell a Ray task, on a local runtime started here or a running cluster.

Resources per cell: `cpus` (also the cell's torch threads) and `gpus` (Ray sets the task's
CUDA_VISIBLE_DEVICES). A cell whose worker process dies (killed, out of memory, a lost node) is
run again by Ray (max_retries = `retries`); the retry takes the cell's claim, which the kernel
freed with the dead process, and continues from what the run folder holds. Cells that need
another cell's adapter are submitted once it is finished. The submitting process's SOFTPROMPT_* and
HF_* variables are passed to the workers; on a cluster, every node needs softprompt installed and
the results/runs folders on a shared file system (same paths).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterator

from softprompt.errors import ConfigError
from softprompt.experiments.cell_run import CellRun, Outcome
from softprompt.experiments.cells import Cell
from softprompt.experiments.executor_options import RayOptions
from softprompt.experiments.executors.base import Waiting

FORWARDED_ENV = ("SOFTPROMPT_", "HF_", "TRANSFORMERS_")


def _run(run_cell: CellRun, cell_id: str) -> Outcome:
    return run_cell(cell_id)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("bench: --executor ray needs Ray: pip install 'softprompt[ray]'") from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(self, options: RayOptions, log: Callable[[str], Any] | None = print):
        self.options, self.log = options, log
        self.threads = max(1, int(options.cpus))

    def run(self, cells: list[Cell], run_cell: CellRun) -> Iterator[Outcome]:
        ray = import_ray()
        started = self._connect(ray)
        pending: dict[Any, str] = {}
        try:
            task = ray.remote(_run).options(num_cpus=self.options.cpus, num_gpus=self.options.gpus,
                                            max_retries=self.options.retries, retry_exceptions=False)
            shared = ray.put(run_cell)
            waiting = Waiting(cells, run_cell.job.store)
            while waiting or pending:
                ready, dropped = waiting.release(len(pending))
                for outcome in dropped:
                    yield outcome
                for cell in ready:
                    pending[task.remote(shared, cell.id)] = cell.id
                if not pending:
                    continue
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    outcome = self._outcome(ray, ref, pending.pop(ref))
                    waiting.settle(outcome)
                    yield outcome
        finally:
            for ref in pending:  # the submitting process stopped early (--fail-fast, Ctrl-C)
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()

    def _outcome(self, ray, ref, cell_id: str) -> Outcome:
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return Outcome(cell_id, "failed", reason=f"its Ray task failed after {self.options.retries} "
                                                     f"retries: {type(err).__name__}: {first}"[:500])

    def _connect(self, ray) -> bool:
        """Join the runtime already initialised in this process, or start/connect one; True if started here."""
        opts = self.options
        if ray.is_initialized():
            started = False
        else:
            env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
            ray.init(address=opts.address, num_cpus=opts.local_cpus if opts.address is None else None,
                     include_dashboard=False, log_to_driver=self.log is not None, logging_level=logging.WARNING,
                     runtime_env={"env_vars": env} if env else None)
            started = True
        have = ray.cluster_resources()
        for resource, need in (("CPU", opts.cpus), ("GPU", opts.gpus)):
            if need and have.get(resource, 0) < need:
                if started:
                    ray.shutdown()
                raise ConfigError(f"bench: a cell asks for {need:g} {resource}(s) (--{resource.lower()}s-per-cell) "
                                  f"but the Ray cluster has {have.get(resource, 0):g}")
        return started
