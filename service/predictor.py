"""Micro-batching: windows of concurrent requests share model calls.

Requests put their windows on a bounded queue; one worker takes up to ``batch_max``
windows (waiting at most ``batch_wait_ms`` for a batch to fill), runs the model in a
thread and hands each request its slice. When more than ``queue_max`` windows wait, new
requests are refused at once (:class:`SaturatedError`, answered 503 with Retry-After) instead
of letting the queue grow without limit. With batching off, each request's windows go to
the model alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from impacts.errors import ImpactsError


class SaturatedError(ImpactsError, RuntimeError):
    """Too many windows are waiting; try again later."""


@dataclass
class _Job:
    windows: np.ndarray
    future: asyncio.Future[np.ndarray]


@dataclass
class BatchStats:
    """Model calls and their sizes (for /metrics)."""

    calls: int = 0
    windows: int = 0
    sizes: list[int] = field(default_factory=list)
    on_batch: Callable[[int], object] | None = None

    def record(self, size: int) -> None:
        if self.on_batch is not None:
            self.on_batch(size)
        self.calls += 1
        self.windows += size
        self.sizes.append(size)
        del self.sizes[:-1000]  # keep the recent ones only


class BatchingPredictor:
    """Runs ``model_fn`` on batches gathered from concurrent :meth:`predict` calls."""

    def __init__(
        self,
        model_fn: Callable[[np.ndarray], np.ndarray],
        batch_max: int,
        wait_ms: float,
        queue_max: int,
        batching: bool = True,
    ) -> None:
        self.model_fn, self.batch_max, self.wait_s = model_fn, batch_max, wait_ms / 1000
        self.queue_max, self.batching = queue_max, batching
        self.stats = BatchStats()
        self.waiting = 0  # windows queued, not yet taken by the worker
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        # The model gets a thread of its own: request handlers wait for their windows in the
        # default pool, and a full pool must never keep the model from running (deadlock).
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._worker: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self.batching and self._worker is None:
            self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._model_thread.shutdown(wait=False)

    async def _call_model(self, batch: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, self.model_fn, batch)

    async def predict(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities for a stack of windows ``(N, H, W, 1)``.

        Raises:
            SaturatedError: More than ``queue_max`` windows are already waiting.
        """
        if self.waiting + len(windows) > self.queue_max:
            raise SaturatedError(
                f"{self.waiting} windows are waiting (limit {self.queue_max}); retry shortly"
            )
        if not self.batching:
            self.waiting += len(windows)
            try:
                async with self._lock:  # one model call at a time, like the batching worker
                    self.stats.record(len(windows))
                    return await self._call_model(windows)
            finally:
                self.waiting -= len(windows)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.waiting += len(windows)
        await self._queue.put(_Job(windows, future))
        return await future

    async def _run(self) -> None:
        pending: _Job | None = None
        while True:
            jobs = [pending or await self._queue.get()]
            pending = None
            size = len(jobs[0].windows)
            deadline = time.monotonic() + self.wait_s
            while size < self.batch_max:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                if size + len(job.windows) > self.batch_max:
                    pending = job  # starts the next batch
                    break
                jobs.append(job)
                size += len(job.windows)
            self.waiting -= size
            batch = np.concatenate([j.windows for j in jobs])
            try:
                probs = await self._call_model(batch)
            except Exception as exc:  # the requests fail, the service stays up
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            self.stats.record(len(batch))
            start = 0
            for j in jobs:
                if not j.future.done():
                    j.future.set_result(probs[start : start + len(j.windows)])
                start += len(j.windows)
