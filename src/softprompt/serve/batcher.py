"""Dynamic batching: a bounded queue and one inference thread.

Requests wait up to `max_wait_ms` (from the oldest one) or until `max_batch` are queued, then
run together. `mixed` batching sends rows of different adapters through ONE forward pass of
the shared base (serve/mixed.py); `per-adapter` groups the batch by adapter and runs one
forward per adapter (the way single-adapter-at-a-time servers work; kept as a baseline).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from softprompt.runners.sequence import pad_rows
from softprompt.serve.errors import QueueFull
from softprompt.serve.metrics import Metrics
from softprompt.serve.mixed import Group, mixed_logits
from softprompt.serve.store import AdapterEntry

log = logging.getLogger("softprompt.serve")


class ShuttingDown(Exception):
    """The server is stopping and takes no new work (HTTP 503)."""


@dataclass
class Job:
    entry: AdapterEntry
    text: str
    text_pair: str | None
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class Tokenized:
    """One request's text as token ids (cut to its adapter's limit)."""

    ids: list[int]
    types: list[int] | None
    truncated: bool


class Batcher:
    def __init__(self, runner, tokenizer, metrics: Metrics, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, mode: str = "mixed"):
        self.runner = runner
        self.tokenizer = tokenizer
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.mode = mode
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.in_flight = 0

    # -- queue ----------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="softprompt-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish everything queued, then stop the inference thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are queued (limit --max-queue {self.max_queue})")
            self._queue.append(job)
            self._cond.notify()

    async def classify(self, entry: AdapterEntry, text: str, text_pair: str | None = None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        job = Job(entry, text, text_pair, loop.create_future(), loop)
        self.submit(job)
        return await job.future

    # -- inference thread -----------------------------------------------------------------------
    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None  # stopping and drained
            deadline = self._queue[0].enqueued + self.max_wait
            while len(self._queue) < self.max_batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.max_batch, len(self._queue))
            jobs = [self._queue.popleft() for _ in range(n)]
            self.in_flight = n
            return jobs

    def _work(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            try:
                self._run(jobs)
            except BaseException as err:  # never let the thread die with futures pending
                log.exception("batch failed")
                for job in jobs:
                    _deliver(job, error=err)
            finally:
                self.in_flight = 0

    def _run(self, jobs: list[Job]) -> None:
        start = time.perf_counter()
        encoded = [self._encode(job) for job in jobs]
        groups: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.entry.uid, []).append(i)
        try:
            if self.mode == "mixed":
                logits = self._mixed(jobs, encoded, list(groups.values()))
            else:
                logits = self._per_adapter(jobs, encoded, list(groups.values()))
        except Exception:
            self.metrics.count_batch_error()
            log.exception("mixed batch of %d failed; retrying requests one by one", len(jobs))
            logits = self._one_by_one(jobs, encoded)
        self.metrics.observe_batch(len(jobs), len(groups), time.perf_counter() - start)
        for job, enc, row in zip(jobs, encoded, logits):
            if isinstance(row, Exception):
                _deliver(job, error=row)
            else:
                _deliver(job, result=result_of(job.entry, row, enc.truncated))

    def _encode(self, job: Job) -> Tokenized:
        tok, limit = self.tokenizer, job.entry.max_tokens
        enc = tok(job.text, job.text_pair, verbose=False)  # only to see whether it is too long
        truncated = len(enc["input_ids"]) > limit
        if truncated:
            enc = tok(job.text, job.text_pair, truncation=True, max_length=limit)
        return Tokenized(list(enc["input_ids"]), enc.get("token_type_ids"), truncated)

    def _collate(self, encoded: list[Tokenized]):
        ids, mask, types = pad_rows([e.ids for e in encoded], self.tokenizer.pad_token_id or 0,
                                    self.tokenizer.padding_side, [e.types for e in encoded])
        device = self.runner.word_embeddings.weight.device
        return ids.to(device), mask.to(device), None if types is None else types.to(device)

    def _mixed(self, jobs, encoded, groups: list[list[int]]) -> list[torch.Tensor]:
        ids, mask, types = self._collate(encoded)
        device = ids.device
        parts = [Group(jobs[rows[0]].entry.model, torch.tensor(rows, device=device)) for rows in groups]
        out: list[torch.Tensor | None] = [None] * len(jobs)
        for rows, logits in zip(groups, mixed_logits(self.runner, parts, ids, mask, types)):
            for r, row in zip(rows, logits):
                out[r] = row
        return out

    def _per_adapter(self, jobs, encoded, groups: list[list[int]]) -> list[torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(jobs)
        for rows in groups:
            ids, mask, types = self._collate([encoded[r] for r in rows])
            with torch.inference_mode():
                logits = jobs[rows[0]].entry.model(ids, mask, types).logits
            for r, row in zip(rows, logits):
                out[r] = row
        return out

    def _one_by_one(self, jobs, encoded) -> list[torch.Tensor | Exception]:
        out: list[torch.Tensor | Exception] = []
        for job, enc in zip(jobs, encoded):
            try:
                ids, mask, types = self._collate([enc])
                with torch.inference_mode():
                    out.append(job.entry.model(ids, mask, types).logits[0])
            except Exception as err:
                log.exception("request for adapter %s failed", job.entry.name)
                out.append(err)
        return out


def result_of(entry: AdapterEntry, logits: torch.Tensor, truncated: bool) -> dict[str, Any]:
    values = logits.detach().float().cpu().reshape(-1)
    if entry.is_regression:
        return {"label": None, "score": float(values[0]), "scores": {}, "logits": values.tolist(), "truncated": truncated}
    probs = values.softmax(-1).tolist()
    names = entry.label_names if len(entry.label_names) == len(probs) else [str(i) for i in range(len(probs))]
    best = int(values.argmax())
    return {"label": names[best], "score": probs[best], "scores": dict(zip(names, probs)),
            "logits": values.tolist(), "truncated": truncated}


def _deliver(job: Job, result: Any = None, error: BaseException | None = None) -> None:
    def settle(fut: asyncio.Future) -> None:
        if fut.done():  # the client went away
            return
        if error is not None:
            fut.set_exception(error if isinstance(error, Exception) else RuntimeError(str(error)))
        else:
            fut.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle, job.future)
    except RuntimeError:  # loop closed: nobody is waiting any more
        pass
