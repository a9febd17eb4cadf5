"""The failed-login limit holds per address and per account, also under concurrency."""

from __future__ import annotations

import threading
import time

from service.review.state import LoginLimiter


def _parallel(limiter: LoginLimiter, attempts: list[tuple[str, str]]) -> list[float]:
    barrier = threading.Barrier(len(attempts))
    waits: list[float] = [0.0] * len(attempts)

    def one(i: int) -> None:
        barrier.wait()
        waits[i] = limiter.begin(*attempts[i]).wait_s
        time.sleep(0.01)  # the slow password check, still running when the others begin

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(attempts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return waits


def test_forty_parallel_attempts_from_one_address_let_exactly_the_limit_through() -> None:
    limiter = LoginLimiter(10, 60)
    waits = _parallel(limiter, [("10.0.0.1", f"user{i}") for i in range(40)])
    assert sum(w == 0 for w in waits) == 10
    assert all(w > 0 for w in waits if w)


def test_one_account_is_limited_across_addresses() -> None:
    limiter = LoginLimiter(10, 60)
    waits = _parallel(limiter, [(f"10.0.0.{i}", "ada") for i in range(25)])
    assert sum(w == 0 for w in waits) == 10
    assert limiter.begin("10.1.1.1", "bob").wait_s == 0  # another account from a new address


def test_a_successful_attempt_is_forgiven_and_failures_leave_the_window() -> None:
    limiter = LoginLimiter(2, 0.3)
    ok = limiter.begin("a", "ada")
    limiter.forgive(ok)  # the password was right
    limiter.begin("a", "ada")
    limiter.begin("a", "ada")
    blocked = limiter.begin("a", "ada")
    assert 0 < blocked.wait_s <= 0.3
    time.sleep(0.35)
    assert limiter.begin("a", "ada").wait_s == 0


def test_a_flood_of_names_keeps_memory_bounded() -> None:
    limiter = LoginLimiter(5, 60, max_keys=100)
    for i in range(1000):
        limiter.begin(f"10.0.{i // 250}.{i % 250}", f"name{i}")
    assert len(limiter._failures) <= 100
