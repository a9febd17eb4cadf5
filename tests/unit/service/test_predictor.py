"""The micro-batching predictor on its own: batches, backlog, saturation, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.predictor import BatchingPredictor, SaturatedError


def _windows(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 4, 4, 1), value, np.float32)


def _run(predictor: BatchingPredictor, calls: list[tuple[float, int]]) -> list[np.ndarray]:
    """Start the predictor, call predict_blocking from one thread per call, stop it."""

    async def main() -> list[np.ndarray]:
        await predictor.start()
        try:
            with ThreadPoolExecutor(len(calls)) as pool:
                futures = [pool.submit(predictor.predict_blocking, _windows(v, n)) for v, n in calls]
                return await asyncio.to_thread(lambda: [f.result(timeout=30) for f in futures])
        finally:
            await predictor.stop()

    return asyncio.run(main())


def test_concurrent_callers_share_calls_and_each_gets_its_own_windows() -> None:
    predictor = BatchingPredictor(lambda b: b * 2, batch_max=8, wait_ms=200, queue_max=64)
    results = _run(predictor, [(float(i), 1 + i % 2) for i in range(6)])
    for i, result in enumerate(results):
        assert result.shape == (1 + i % 2, 4, 4, 1) and np.all(result == 2 * i)
    assert max(predictor.stats.sizes) > 2 and max(predictor.stats.sizes) <= 8
    assert predictor.stats.windows == 9 and predictor.waiting == 0


def test_windows_queued_while_the_model_is_busy_go_at_once_without_the_wait() -> None:
    busy = threading.Event()

    def slow_first(batch: np.ndarray) -> np.ndarray:
        if not busy.is_set():
            busy.set()
            time.sleep(0.5)  # the next windows queue up meanwhile
        return batch

    # A batch that an idle model starts would wait a minute for company; a backlog must not.
    predictor = BatchingPredictor(slow_first, batch_max=4, wait_ms=60_000, queue_max=64)

    async def main() -> float:
        await predictor.start()
        try:
            full = asyncio.ensure_future(predictor.predict(_windows(0, 4)))  # full: goes at once
            await asyncio.to_thread(busy.wait, 10)
            begun = time.monotonic()
            rest = await asyncio.wait_for(
                asyncio.gather(*(predictor.predict(_windows(i)) for i in range(1, 4))), 10
            )
            assert [float(r[0, 0, 0, 0]) for r in rest] == [1, 2, 3]
            await full
            return time.monotonic() - begun
        finally:
            await predictor.stop()

    assert asyncio.run(main()) < 5
    assert predictor.stats.sizes == [4, 3]


def test_a_full_queue_refuses_new_windows_at_once() -> None:
    gate = threading.Event()

    def blocked(batch: np.ndarray) -> np.ndarray:
        gate.wait(10)
        return batch

    predictor = BatchingPredictor(blocked, batch_max=1, wait_ms=0, queue_max=2)

    async def main() -> None:
        await predictor.start()
        try:
            busy = asyncio.ensure_future(predictor.predict(_windows(0)))  # taken by the model
            await asyncio.sleep(0.2)
            queued = asyncio.ensure_future(predictor.predict(_windows(1, 2)))  # waits: 2 of 2
            await asyncio.sleep(0.05)
            with pytest.raises(SaturatedError):
                await predictor.predict(_windows(2))
            gate.set()
            await asyncio.wait_for(asyncio.gather(busy, queued), 10)
        finally:
            await predictor.stop()

    asyncio.run(main())
    assert predictor.waiting == 0


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "alone"])
def test_a_failing_model_fails_its_requests_and_the_next_ones_still_work(batching: bool) -> None:
    calls = []

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("model broke")
        return batch

    predictor = BatchingPredictor(flaky, batch_max=4, wait_ms=0, queue_max=8, batching=batching)

    async def main() -> None:
        await predictor.start()
        try:
            with pytest.raises(RuntimeError, match="model broke"):
                await predictor.predict(_windows(1))
            assert float((await predictor.predict(_windows(2)))[0, 0, 0, 0]) == 2
            result = await asyncio.to_thread(predictor.predict_blocking, _windows(3))
            assert float(result[0, 0, 0, 0]) == 3
        finally:
            await predictor.stop()

    asyncio.run(main())
    assert predictor.waiting == 0
