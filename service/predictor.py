"""Micro-batching: windows of concurrent requests share model calls.

Requests put their windows on a bounded queue; one model thread takes up to ``batch_max``
windows and runs the model on them, handing each request its slice. A batch that an idle
model starts waits at most ``batch_wait_ms`` for more windows; when windows queued up while
the model was busy, the next batch takes what is there and goes at once (waiting then would
only leave the model idle). When more than ``queue_max`` windows wait, new requests are
refused at once (:class:`SaturatedError`, answered 503 with Retry-After) instead of letting
the queue grow without limit. With batching off, each request's windows go to the model
alone, one call at a time.

The model thread, the queue and the futures are plain threading objects: request threads
(:meth:`BatchingPredictor.predict_blocking`) hand windows to the model and get their
results back without a round trip through the event loop, which is busy with HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from impacts.errors import SaturatedError


@dataclass
class _Job:
    windows: np.ndarray
    future: Future[np.ndarray]


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


_STOP = None  # queued by stop(): the model thread ends


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
        self.waiting = 0  # windows queued, not yet taken by the model thread
        self._waiting_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._model_lock = threading.Lock()  # one model call at a time with batching off
        # With batching off, async callers run the model here, off the event loop.
        self._model_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def start(self) -> None:
        if self.batching and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-batcher", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None
            while True:  # whatever was still queued fails rather than waiting forever
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None and not job.future.done():
                    job.future.set_exception(RuntimeError("the predictor stopped"))
        self._model_executor.shutdown(wait=False)

    def _reserve(self, count: int) -> None:
        with self._waiting_lock:
            if self.waiting + count > self.queue_max:
                raise SaturatedError(
                    f"{self.waiting} windows are waiting (limit {self.queue_max}); retry shortly"
                )
            self.waiting += count

    def _release(self, count: int) -> None:
        with self._waiting_lock:
            self.waiting -= count

    def predict_blocking(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities for a stack of windows ``(N, H, W, 1)``, from a request thread
        (it blocks until the windows' batch is done; never call it on the event loop).

        Raises:
            SaturatedError: More than ``queue_max`` windows are already waiting.
        """
        self._reserve(len(windows))
        if not self.batching:
            try:
                with self._model_lock:
                    self.stats.record(len(windows))
                    return self.model_fn(windows)
            finally:
                self._release(len(windows))
        future: Future[np.ndarray] = Future()
        self._queue.put(_Job(windows, future))
        return future.result()

    async def predict(self, windows: np.ndarray) -> np.ndarray:
        """:meth:`predict_blocking` for coroutines: the event loop is not blocked.

        Raises:
            SaturatedError: More than ``queue_max`` windows are already waiting.
        """
        if not self.batching:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._model_executor, self.predict_blocking, windows)
        self._reserve(len(windows))
        future: Future[np.ndarray] = Future()
        self._queue.put(_Job(windows, future))
        return await asyncio.wrap_future(future)

    def _next_batch(self, pending: _Job | None) -> tuple[list[_Job], _Job | None, bool]:
        """Jobs of the next batch, the job that starts the one after, and whether to stop."""
        first: _Job | None = pending
        deadline = time.monotonic()  # a backlog: the batch goes with what is queued now
        if first is None:
            try:
                first = self._queue.get_nowait()  # queued while the model was busy
            except queue.Empty:
                first = self._queue.get()  # the model is idle: wait for work
                deadline = time.monotonic() + self.wait_s  # and a little for company
        if first is None:
            return [], None, True
        jobs, size = [first], len(first.windows)
        while size < self.batch_max:
            try:
                timeout = deadline - time.monotonic()
                job = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(_STOP)  # stop after this batch
                break
            if size + len(job.windows) > self.batch_max:
                return jobs, job, False  # starts the next batch
            jobs.append(job)
            size += len(job.windows)
        return jobs, None, False

    def _run(self) -> None:
        pending: _Job | None = None
        while True:
            jobs, pending, stop = self._next_batch(pending)
            if stop:
                return
            size = sum(len(j.windows) for j in jobs)
            self._release(size)
            batch = jobs[0].windows if len(jobs) == 1 else np.concatenate([j.windows for j in jobs])
            try:
                probs = self.model_fn(batch)
            except Exception as exc:  # the requests fail, the service stays up
                for j in jobs:
                    with contextlib.suppress(Exception):
                        j.future.set_exception(exc)
                continue
            self.stats.record(len(batch))
            start = 0
            for j in jobs:
                with contextlib.suppress(Exception):  # a future already cancelled
                    j.future.set_result(probs[start : start + len(j.windows)])
                start += len(j.windows)
