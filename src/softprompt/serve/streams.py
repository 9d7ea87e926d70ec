"""Generation requests between the HTTP layer and the engine (serve/engine.py).

    service = Generations(engine, store, metrics, settings)
    run = await service.open(model_name, prompt_ids, params)   # Refused -> an HTTP error
    async for piece in run.pieces(): ...                        # text deltas, stop strings held back
    run.finish                                                  # the engine's Finish
    await run.close()                                           # cancels if unfinished; frees the adapter

Each engine stream is read by one thread of a dedicated pool (never the event loop's default
executor, which a few dozen long streams would exhaust), and its events are handed to the event
loop. Streamed text is exactly the non-streamed text: a tail that could still become a stop
string is held back, and the finish event's text (stop string cut) settles the rest.
The service also counts requests in flight, for a graceful drain.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from softprompt.decode import Finish, SamplingParams, Token
from softprompt.decode.text import held_back
from softprompt.serve.engine import ContextTooLong, EngineStopped
from softprompt.serve.errors import QueueFull, Refused

log = logging.getLogger("softprompt.serve")


@dataclass
class _End:
    """The bridge thread saw no Finish (the engine's stream raised)."""

    error: str


class Run:
    """One generation request in flight."""

    def __init__(self, service: "Generations", adapter: str, entry, stream, stops: list[str], loop):
        self.service, self.adapter, self.entry, self.stream, self.stops = service, adapter, entry, stream, stops
        self.queue: asyncio.Queue = asyncio.Queue()
        self.finish: Finish | None = None
        self.text = ""  # what the engine has produced so far (token deltas)
        self.emitted = ""  # what has been handed out
        self.closed = False
        self.started = time.monotonic()
        self._ahead: list = []  # an event read by first() and not yet consumed
        service.executor.submit(self._bridge, loop)

    def _bridge(self, loop) -> None:
        try:
            for event in self.stream:
                self._hand(loop, event)
        except BaseException as err:  # never leave the reader waiting
            self._hand(loop, _End(f"{type(err).__name__}: {err}"))

    def _hand(self, loop, event) -> None:
        try:
            loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the event loop is gone
            pass

    async def first(self) -> object:
        """Wait for the first event (a token, or the finish of a request that failed or ended at once)."""
        if not self._ahead:
            self._ahead.append(await self._next())
        return self._ahead[0]

    async def _next(self):
        if self._ahead:
            return self._ahead.pop(0)
        event = await self.queue.get()
        if isinstance(event, _End):
            event = Finish("error", 0, 0, self.text, error=event.error)
        return event

    async def pieces(self):
        """Text pieces to send, in order; afterwards `self.finish` is set."""
        while self.finish is None:
            event = await self._next()
            if isinstance(event, Token):
                self.text += event.text
                safe = len(self.text) - held_back(self.text, self.stops)
                if safe > len(self.emitted):
                    piece = self.text[len(self.emitted):safe]
                    self.emitted += piece
                    yield piece
            elif isinstance(event, Finish):
                self.finish = event
                final = event.text
                if final.startswith(self.emitted):
                    rest = final[len(self.emitted):]
                    if rest:
                        self.emitted = final
                        yield rest
                else:  # the engine re-decoded earlier text differently; what was sent stays sent
                    log.warning("streamed text of adapter %s is not a prefix of the final text", self.adapter)

    async def collect(self) -> Finish:
        async for _ in self.pieces():
            pass
        return self.finish

    def close(self) -> None:
        """Done with the request; if unfinished (the client went away) cancel it: the engine frees its
        slot at its next step. The adapter is released and metrics recorded once the engine has let
        go of it. Idempotent; safe inside a cancelled task (it does not await)."""
        if self.closed:
            return
        self.closed = True
        if self.finish is not None:
            self._record()
            return
        self.stream.cancel()
        task = asyncio.get_running_loop().create_task(self._reap())
        self.service._reaping.add(task)
        task.add_done_callback(self.service._reaping.discard)

    async def _reap(self) -> None:
        try:
            while self.finish is None:
                event = await asyncio.wait_for(self._next(), timeout=60)
                if isinstance(event, Finish):
                    self.finish = event
        except asyncio.TimeoutError:
            log.warning("the engine did not end a cancelled request of adapter %s within 60 s", self.adapter)
        finally:
            self._record()

    def _record(self) -> None:
        f = self.finish
        try:
            if f is not None:
                self.service.metrics.observe_generation(self.adapter, f.reason, f.prompt_tokens, f.completion_tokens,
                                                        f.ttft_s, f.itl_s)
            else:
                self.service.metrics.observe_generation(self.adapter, "cancelled", 0, 0, None, [])
        finally:
            self.service._done(self)


class Generations:
    """Submits requests to the engine, counts them in flight, drains on shutdown."""

    def __init__(self, engine, store, metrics, settings):
        self.engine, self.store, self.metrics, self.settings = engine, store, metrics, settings
        self.executor = ThreadPoolExecutor(max_workers=engine.max_batch + engine.max_queue + 8,
                                           thread_name_prefix="softprompt-stream")
        self.active = 0
        self.draining = False
        self._reaping: set = set()
        self._lock = threading.Lock()

    def begin_drain(self) -> None:
        """Refuse new requests (503); those in flight go on."""
        self.draining = True

    def submit(self, adapter: str, entry, prompt_ids: list[int], params: SamplingParams,
               ignore_eos: bool = False) -> Run:
        """Start a request (must run on the event loop). `entry` is an acquired adapter (or None:
        the base); it is released when the run closes, or here if the engine refuses."""
        retry = self.settings.retry_after_s
        try:
            if self.draining:
                raise Refused(503, "the server is shutting down; retry on another instance", "server_error",
                              code="shutting_down", retry_after=retry)
            try:
                stream = self.engine.submit(None if entry is None else entry.model, prompt_ids, params,
                                            ignore_eos=ignore_eos)
            except QueueFull as err:
                self.metrics.count_overload()
                raise Refused(503, f"server overloaded: {err}; retry later", "server_error", code="overloaded",
                              retry_after=retry) from None
            except EngineStopped as err:
                raise Refused(503, str(err), "server_error", code="shutting_down", retry_after=retry) from None
            except ContextTooLong as err:
                raise Refused(400, str(err), param="max_tokens", code="context_length_exceeded") from None
            except ValueError as err:
                raise Refused(400, str(err), param="prompt") from None
        except Refused as err:
            self.metrics.count_refused(err.code or str(err.status))
            if entry is not None:
                self.store.release(entry)
            raise
        with self._lock:
            self.active += 1
        return Run(self, adapter, entry, stream, [s for s in params.stop if s], asyncio.get_running_loop())

    def _done(self, run: Run) -> None:
        if run.entry is not None:
            self.store.release(run.entry)
        with self._lock:
            self.active -= 1

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is in flight (or timeout); True if idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active == 0:
                return True
            time.sleep(0.05)
        return self.active == 0

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
