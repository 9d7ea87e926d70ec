"""Run one cell and write its cell file: the step every executor shares.

`run_one` runs a cell that its caller has claimed (claims.py): a failure is recorded (the grid goes
on, unless --fail-fast), a result becomes the cell file. The local pool (workers.py) calls it in
its loop; `CellRun` is the picklable function the Ray and Slurm executors send to a fresh process
(a Ray worker, a Slurm job): it takes the cell's claim there (waiting while another bench process
holds it), runs it with `run_one` and returns an `Outcome`; committing is left to the submitting
process.

Fault injection for tests: SOFTPROMPT_TEST_KILL_CELL="<cell-id>@<marker file>" ends the process
(os._exit) once, after the cell ran and before its cell file is written, in the first process that
creates the marker.
"""

from __future__ import annotations

import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from softprompt.experiments.cells import Cell, Log
from softprompt.experiments.claims import Claim
from softprompt.experiments.spec import Spec
from softprompt.experiments.store import Store, git_commit_file

if TYPE_CHECKING:
    from softprompt.experiments.runner import GridRunner

KILL_HOOK = "SOFTPROMPT_TEST_KILL_CELL"


@dataclass
class Job:
    spec: Spec
    store: Store
    cells: list[Cell]  # the cells to run (not finished, not skipped), dependencies first
    sources: dict[str, Cell] = field(default_factory=dict)  # every cell of the grid by id (to retrain a source)
    data_dir: str | None = None
    keep_checkpoints: bool = False
    fail_fast: bool = False
    commit: bool = False
    mixed_precision: str | None = None
    command: str | None = None
    echo: bool = True  # worker processes print their log lines
    poll_s: float = 1.0
    gpus: list[str] = field(default_factory=list)  # one per worker process, round robin


@dataclass
class Outcome:
    cell: str
    status: str  # "done" | "failed" | "finished-elsewhere" (another bench process made it) | "stopped"
    path: str | None = None  # the cell file
    score: float | None = None
    reason: str | None = None
    seconds: float | None = None
    committed: bool = False


def run_one(job: Job, runner: GridRunner, cell: Cell, logger: Callable[..., Any], commit: bool,
            executor: str = "local") -> Outcome:
    """Run a claimed cell: its cell file written (committed with `commit`), or its failure recorded."""
    store = job.store
    t0 = time.perf_counter()
    try:
        result = runner.run(cell)
    except Exception as err:  # one broken cell does not stop the grid (unless --fail-fast)
        reason = f"{type(err).__name__}: {err}"
        store.record_failure(cell.id, reason)
        logger(f"FAILED {cell.id}: {reason}")
        with open(store.work_dir / "bench.log", "a") as fh:
            fh.write(traceback.format_exc())
        if job.fail_fast:
            store.request_stop()
            raise
        return Outcome(cell.id, "failed", reason=reason, seconds=time.perf_counter() - t0)
    _kill_hook(cell.id)
    result["executor"] = executor
    path = store.write(result)
    score = result.get("score")
    seconds = time.perf_counter() - t0
    logger(f"done {cell.id} in {seconds:.1f}s"
           + (f": {cell.metric} {score:.2f}" if isinstance(score, (int, float)) else ""))
    committed = commit and git_commit_file(path, f"results: {job.spec.name} {cell.id}", logger)
    return Outcome(cell.id, "done", str(path), score if isinstance(score, (int, float)) else None,
                   seconds=seconds, committed=committed)


def _kill_hook(cell_id: str) -> None:
    target, _, marker = os.environ.get(KILL_HOOK, "").partition("@")
    if target == cell_id and marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # killed once already: this is the retry
        os.write(fd, f"pid {os.getpid()}\n".encode())
        os.close(fd)
        os._exit(17)


_RUNNERS: dict[str, GridRunner] = {}  # one per submission, kept while this process serves it (backbones loaded once)


class CellRun:
    """The function an executor runs in a fresh process: CellRun(job)(cell_id) -> Outcome."""

    def __init__(self, job: Job, executor: str, threads: int = 1):
        self.job, self.executor, self.threads = job, executor, max(1, int(threads))
        self.cwd = os.getcwd()  # relative result/run folders are the submitting process's
        self.key = uuid.uuid4().hex
        self.cells = {c.id: c for c in job.cells}

    def __call__(self, cell_id: str) -> Outcome:
        if Path(self.cwd).is_dir():
            os.chdir(self.cwd)
        limit_threads(self.threads)
        job, store, cell = self.job, self.job.store, self.cells[cell_id]
        logger = Log(store.work_dir / "bench.log", None)  # the submitting process echoes each outcome
        if store.stop_requested():
            return Outcome(cell_id, "stopped", reason="a --fail-fast stop was requested")
        with Claim.acquire(store.claim_path(cell_id), wait=True) as _claim:  # another bench process: wait for it
            if store.finished(cell_id):
                return Outcome(cell_id, "finished-elsewhere", str(store.cell_file(cell_id)))
            logger(f"[{self.executor}] {cell.kind} {cell.id} (pid {os.getpid()})")
            try:
                return run_one(job, self._runner(logger), cell, logger, commit=False, executor=self.executor)
            except Exception as err:  # --fail-fast: recorded by run_one; the submitting process stops the grid
                return Outcome(cell_id, "failed", reason=f"{type(err).__name__}: {err}")

    def _runner(self, logger) -> GridRunner:
        from softprompt.experiments.runner import GridRunner

        if self.key not in _RUNNERS:
            _RUNNERS.clear()
            job = self.job
            _RUNNERS[self.key] = GridRunner(job.spec, job.store, job.data_dir, logger, job.keep_checkpoints,
                                            job.sources, job.mixed_precision, job.command)
        runner = _RUNNERS[self.key]
        runner.log = logger
        return runner


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(n: int) -> None:
    """n BLAS/OpenMP threads and n torch threads in this process."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
