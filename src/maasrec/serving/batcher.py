"""Dynamic micro-batching of ``recommend`` requests.

Concurrent requests for the **same model snapshot and the same options** (``k``,
``exclude_seen``, and whether users are known users or cold-user histories) are merged
into one ``model.recommend`` call, which runs in a worker thread; the result rows are
split back to the requests. Because ``recommend`` scores and ranks each row
independently, each request gets exactly what an unbatched call would have returned.

When a batch is dispatched
--------------------------
A batch (one per option key) stays open and collects requests until it is dispatched.
It becomes *ready* when it holds ``max_batch`` users, or ``max_wait_ms`` after its first
request (immediately when ``max_wait_ms`` is 0). A ready batch is dispatched as soon as a
model thread is free (at most ``max_inflight`` calls run at once). So:

* at low load a request waits at most ``max_wait_ms`` (0: not at all);
* under load, requests that arrive while the model threads are busy accumulate and are
  served together in the next call, which is where the throughput comes from.

If a merged call fails (it should not: ids are checked per request before batching), the
requests of that batch are retried one by one so that each gets its own answer or error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BatcherClosedError", "MicroBatcher"]

logger = logging.getLogger(__name__)

#: ``run(model, rows, k, exclude_seen, mode) -> (ids [n, k], scores [n, k])``
RunFn = Callable[[Any, list, int, bool, str], tuple[np.ndarray, np.ndarray]]


class BatcherClosedError(RuntimeError):
    """The batcher is shutting down and accepts no new requests."""


@dataclass
class _Entry:
    rows: list
    future: asyncio.Future


@dataclass
class _Batch:
    key: Hashable
    model: Any
    k: int
    exclude_seen: bool
    mode: str
    entries: list[_Entry] = field(default_factory=list)
    n_rows: int = 0
    ready: bool = False
    timer: asyncio.TimerHandle | None = None


class MicroBatcher:
    """Merge concurrent ``recommend`` requests into batched model calls.

    Parameters
    ----------
    run : callable
        ``run(model, rows, k, exclude_seen, mode)`` returning ``(ids, scores)`` with one
        row per entry of ``rows``; ``mode`` is ``"users"`` (rows are user ids) or
        ``"history"`` (rows are lists of item ids). Called in ``executor``.
    executor : concurrent.futures.Executor
        Where model calls run (never on the event loop).
    max_batch : int, default 64
        Users per model call at most (a single larger request is still served whole).
    max_wait_ms : float, default 0.0
        How long the first request of a batch may wait for companions when a model
        thread is free (0: dispatch at once; batches still form while threads are busy).
    max_inflight : int, default 1
        Model calls running at once.
    on_batch : callable, optional
        ``on_batch(n_requests, n_rows, seconds)`` after every merged call (metrics).
    """

    def __init__(self, run: RunFn, executor: Executor, *, max_batch: int = 64,
                 max_wait_ms: float = 0.0, max_inflight: int = 1,
                 on_batch: Callable[[int, int, float], None] | None = None):
        if max_batch < 1 or max_inflight < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_inflight must be >= 1 and max_wait_ms >= 0")
        self._run = run
        self._executor = executor
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_inflight = int(max_inflight)
        self._on_batch = on_batch
        self._open: dict[Hashable, _Batch] = {}
        self._queue: list[_Batch] = []  # open or full batches, oldest first
        self._inflight = 0
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self._pump_scheduled = False
        self._idle: asyncio.Event | None = None

    # -- public -------------------------------------------------------------
    @property
    def pending(self) -> int:
        """int: requests waiting for a model call."""
        return sum(len(b.entries) for b in self._queue)

    async def submit(self, model: Any, rows: list, k: int, exclude_seen: bool,
                     mode: str = "users", model_key: Hashable = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Queue one request and wait for its rows of a merged call.

        Parameters
        ----------
        model : Recommender
            The model snapshot of this request.
        rows : list
            User ids (``mode="users"``) or histories (``mode="history"``), already
            validated against the model.
        k : int
        exclude_seen : bool
        mode : {"users", "history"}
        model_key : hashable, optional
            Identifies the model snapshot (e.g. its version); default ``id(model)``.

        Returns
        -------
        ids, scores : np.ndarray, shape (len(rows), k)

        Raises
        ------
        BatcherClosedError
            After :meth:`close` started.
        """
        if self._closing:
            raise BatcherClosedError("the server is shutting down")
        loop = asyncio.get_running_loop()
        key = (model_key if model_key is not None else id(model), k, bool(exclude_seen), mode)
        batch = self._open.get(key)
        if batch is None:
            batch = _Batch(key, model, k, bool(exclude_seen), mode)
            self._open[key] = batch
            self._queue.append(batch)
            if self.max_wait <= 0:
                batch.ready = True
            else:
                batch.timer = loop.call_later(self.max_wait, self._mark_ready, batch)
        fut = loop.create_future()
        batch.entries.append(_Entry(rows, fut))
        batch.n_rows += len(rows)
        if batch.n_rows >= self.max_batch:
            self._close_batch(batch)
        self._schedule_pump(loop)
        return await fut

    async def close(self, timeout: float | None = None) -> None:
        """Stop accepting requests and wait until every queued request is answered.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most.
        """
        self._closing = True
        for b in list(self._queue):
            self._close_batch(b)
        self._pump()
        if self._queue or self._inflight:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                logger.warning("batcher: %d requests still pending at shutdown", self.pending)

    # -- internals ----------------------------------------------------------
    def _close_batch(self, batch: _Batch) -> None:
        batch.ready = True
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]

    def _mark_ready(self, batch: _Batch) -> None:
        batch.timer = None
        batch.ready = True
        self._pump()

    def _schedule_pump(self, loop: asyncio.AbstractEventLoop) -> None:
        # let requests already parsed in this loop iteration join before dispatching
        if not self._pump_scheduled:
            self._pump_scheduled = True
            loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        while self._inflight < self.max_inflight:
            batch = next((b for b in self._queue if b.ready), None)
            if batch is None:
                break
            self._queue.remove(batch)
            self._close_batch(batch)
            batch.entries = [e for e in batch.entries if not e.future.done()]  # cancelled
            if not batch.entries:
                continue
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._idle is not None and not self._queue and not self._inflight:
            self._idle.set()

    async def _call(self, batch: _Batch, rows: list) -> tuple[np.ndarray, np.ndarray, float]:
        def timed():
            t0 = time.perf_counter()
            out = self._run(batch.model, rows, batch.k, batch.exclude_seen, batch.mode)
            return out[0], out[1], time.perf_counter() - t0

        return await asyncio.get_running_loop().run_in_executor(self._executor, timed)

    async def _execute(self, batch: _Batch) -> None:
        try:
            rows = [r for e in batch.entries for r in e.rows]
            try:
                ids, scores, seconds = await self._call(batch, rows)
            except Exception as exc:
                if len(batch.entries) == 1:
                    _set_exception(batch.entries[0].future, exc)
                    return
                # the message may name a raw user id: only its type at WARNING
                logger.warning("batched call of %d requests failed (%s); retrying them "
                               "one by one", len(batch.entries), type(exc).__name__)
                logger.debug("batched call failed: %s: %s", type(exc).__name__, exc)
                for e in batch.entries:
                    try:
                        _set_result(e.future, (await self._call(batch, e.rows))[:2])
                    except Exception as exc_one:
                        _set_exception(e.future, exc_one)
                return
            if self._on_batch is not None:
                self._on_batch(len(batch.entries), len(rows), seconds)
            start = 0
            for e in batch.entries:
                stop = start + len(e.rows)
                _set_result(e.future, (ids[start:stop], scores[start:stop]))
                start = stop
        except BaseException as exc:  # cancellation at shutdown: never leave a request hanging
            for e in batch.entries:
                _set_exception(e.future, exc if isinstance(exc, Exception)
                               else BatcherClosedError("the server is shutting down"))
            raise
        finally:
            self._inflight -= 1
            self._pump()


def _set_result(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
