"""Work through a grid's cells: one worker in this process, or N worker processes with one thread each.

A worker repeatedly takes the next cell that is not finished, not failed in this invocation,
whose source (if any) is finished, and that it can claim (claims.py), runs it and writes its cell
file while still holding the claim; it waits while the only cells left are claimed by others or
wait for a source. Evaluations of a finished source come before new trainings, so a grid stopped
halfway rarely leaves a source without its evaluations. With `commit`, every cell file is
committed as soon as it is written. Running one claimed cell is cell_run.run_one, which the Ray and
Slurm executors (executors/) share.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Callable

from softprompt.experiments.cell_run import THREAD_VARS, Job, limit_threads, run_one
from softprompt.experiments.claims import Claim
from softprompt.experiments.cells import Cell, Log
from softprompt.experiments.store import Store


def one_thread() -> None:
    """Initializer of a worker process: one BLAS/OpenMP thread and one torch thread."""
    limit_threads(1)


@contextmanager
def one_thread_here():
    """One BLAS/OpenMP and torch thread in this process while the block runs; the caller's settings after."""
    import torch

    saved = {var: os.environ.get(var) for var in THREAD_VARS}
    threads = torch.get_num_threads()
    limit_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def run_workers(job: Job, workers: int = 1, log: Callable[[str], Any] | None = print) -> list[dict]:
    """Run `job` with `workers` workers; returns each worker's {"ran": [...]}."""
    if workers <= 1:  # in this process, with one thread like every executor's cell (the same numbers)
        with one_thread_here():
            return [work(job, None, log)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    error: BaseException | None = None
    outcomes = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=one_thread) as pool:
        futures = [pool.submit(work, job, k) for k in range(1, workers + 1)]
        for future in futures:
            try:
                outcomes.append(future.result())
            except BaseException as err:  # the others go on (or stop at the stop request of --fail-fast)
                error = error or err
    if error is not None:
        raise error
    return outcomes


def work(job: Job, worker: int | None = None, log: Callable[[str], Any] | None = None) -> dict[str, Any]:
    from softprompt.experiments.runner import GridRunner

    if worker is not None and job.gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = job.gpus[(worker - 1) % len(job.gpus)]
    store = job.store
    echo = log if worker is None else (print if job.echo else None)
    base = Log(store.work_dir / "bench.log", echo)
    logger = base if worker is None else (lambda *parts: base(f"w{worker}", *parts))
    runner = GridRunner(job.spec, store, job.data_dir, logger, job.keep_checkpoints, job.sources,
                        job.mixed_precision, job.command, worker)
    ids = {c.id for c in job.cells}
    ran: list[str] = []
    while not store.stop_requested():
        cell, claim, waiting = next_cell(job.cells, ids, store, logger)
        if cell is None:
            if not waiting:
                break
            time.sleep(job.poll_s)
            continue
        with claim:
            logger(f"[{sum(store.finished(c.id) for c in job.cells) + 1}/{len(job.cells)}] {cell.kind} {cell.id}")
            outcome = run_one(job, runner, cell, logger, job.commit)
        if outcome.status == "done":
            ran.append(cell.id)
    return {"worker": worker, "ran": ran}


def next_cell(cells: list[Cell], ids: set[str], store: Store, log) -> tuple[Cell | None, Claim | None, bool]:
    """(cell, its claim, False), or (None, None, waiting) where waiting says whether others may free more."""
    ready, waiting = [], False
    for c in cells:
        if store.finished(c.id) or store.failure(c.id) is not None:
            continue
        if c.needs and not store.finished(c.needs):
            if store.failure(c.needs) is not None or c.needs not in ids:
                why = "which failed" if c.needs in ids else "which is neither finished nor part of this run"
                store.record_failure(c.id, f"needs {c.needs}, {why}")
                log(f"skip {c.id}: needs {c.needs}, {why}")
            else:
                waiting = True
            continue
        ready.append(c)
    ready.sort(key=lambda c: c.needs is None)  # stable: evaluations of finished sources first
    for c in ready:
        claim = Claim.acquire(store.claim_path(c.id))
        if claim is None:
            waiting = True
            continue
        if store.finished(c.id) or store.failure(c.id) is not None:  # finished while we looked
            claim.release()
            continue
        return c, claim, False
    return None, None, waiting
