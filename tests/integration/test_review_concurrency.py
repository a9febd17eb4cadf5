"""Two analysts and two importers writing at once, each through its own store (engine and
connections, as separate service processes would): nothing is lost, conflicts are visible."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.review.schemas import QueueFilter
from service.review.store import ReviewStore
from tests.unit.service.review.conftest import make_detection
from tests.unit.service.review.dbs import BACKENDS, fresh_database

FIRST = 30
IMPORTED = 150
#: A pause between one writer's transactions, so that the writers interleave (without it one
#: thread may finish before the busy wait of another ends).
THINK_S = 0.003


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def _run_at_once(jobs: list[Callable[[ReviewStore], None]], url: str) -> list[BaseException]:
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: Callable[[ReviewStore], None]) -> None:
        store = ReviewStore(url, busy_timeout_s=60)
        try:
            barrier.wait()
            job(store)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


def test_two_analysts_and_the_importer_lose_nothing(db_url: str) -> None:
    setup = ReviewStore.open(db_url)
    setup.add_analyst("alice", "alice-pass")
    setup.add_analyst("bob", "bob-pass1")
    setup.add_detections([make_detection(k, "S1", score=0.9) for k in range(FIRST)])
    ids = sorted(d.id for d in setup.queue(QueueFilter(limit=200)).items)
    setup.close()

    def alice(store: ReviewStore) -> None:
        for i in ids:
            store.decide(i, "alice", "accept", None, None)
            time.sleep(THINK_S)
        for i in ids[:5]:  # change her mind, then take it back
            store.decide(i, "alice", "reject", "crater", None)
            store.undo("alice")

    def bob(store: ReviewStore) -> None:
        for n, i in enumerate(reversed(ids)):
            if n % 2:
                store.decide(i, "bob", "reject", "shadow", f"bob {i}")
            else:
                store.decide(i, "bob", "accept", None, None)
            time.sleep(THINK_S)

    new = [make_detection(k, "S2", score=0.5) for k in range(IMPORTED)]

    def importer(store: ReviewStore) -> None:
        for start in range(0, IMPORTED, 10):
            store.add_detections(new[start : start + 10])
            time.sleep(THINK_S)

    assert _run_at_once([alice, bob, importer, importer], db_url) == []

    store = ReviewStore(db_url)
    try:
        everything = store.queue(QueueFilter(status=None, limit=200))
        assert everything.total == FIRST + IMPORTED, "every detection is there, each once"
        bob_rejects = {i for n, i in enumerate(reversed(ids)) if n % 2}
        for i in ids:
            d = store.detection(i)
            live = {(x.analyst, x.decision) for x in d.decisions}
            if i in bob_rejects:
                assert live == {("alice", "accept"), ("bob", "reject")}
                assert d.status == "conflict"
            else:
                assert live == {("alice", "accept"), ("bob", "accept")}
                assert d.status == "accept"
        actions: Counter[tuple[str | None, str]] = Counter()
        for d in everything.items:
            actions.update((a.analyst, a.action) for a in store.history(d.id))
        assert actions == {
            (None, "add"): FIRST + IMPORTED,
            ("alice", "decide"): FIRST,
            ("alice", "replace"): 5,
            ("alice", "undo"): 5,
            ("bob", "decide"): FIRST,
        }
        progress = {p.scene: p for p in store.progress()}
        assert (progress["S1"].accepted, progress["S1"].conflict) == (
            FIRST - len(bob_rejects),
            len(bob_rejects),
        )
        assert progress["S2"].pending == IMPORTED
    finally:
        store.close()
