"""Review-store fixtures: every test gets its own database, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.review.http import CSRF_HEADER
from service.review.schemas import DetectionIn
from service.review.store import ReviewStore
from tests.unit.service.review.dbs import BACKENDS, fresh_database
from tests.unit.service.review.webapp import (
    ADA,
    ADA_PASSWORD,
    BOB,
    BOB_PASSWORD,
    DETECTIONS,
    _app,
    _detection,
    _login,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty database (SQLite file or PostgreSQL schema)."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[ReviewStore]:
    """A migrated store with analysts alice and bob (passwords alice-pass, bob-pass1)."""
    s = ReviewStore.open(db_url, clock=clock, session_ttl_s=3600)
    s.add_analyst("alice", "alice-pass")
    s.add_analyst("bob", "bob-pass1")
    yield s
    s.close()


def make_detection(k: int, scene: str = "S1", score: float = 0.5, model_version: str = "v1") -> DetectionIn:
    """A small valid detection with key ``{scene}-{k:05d}@{model_version}``."""
    row, col = 10 + k, 20 + k
    return DetectionIn(
        key=f"{scene}-{k:05d}@{model_version}",
        scene=scene,
        row_min=row,
        col_min=col,
        row_max=row + 9,
        col_max=col + 7,
        centroid_row=row + 4.5,
        centroid_col=col + 3.5,
        centroid_x=1000.0 + col * 6,
        centroid_y=-2000.0 - row * 6,
        area_px=60,
        score=score,
        model_version=model_version,
        crs_wkt='LOCAL_CS["test"]',
        transform=(6.0, 0.0, 1000.0, 0.0, -6.0, -2000.0),
        window=(0, 0, 128, 128),
        crop_png=PNG + b"crop" + bytes([k % 256]),
        mask_png=PNG + b"mask",
        context_png=PNG + b"context",
    )


@pytest.fixture
def detections() -> Callable[..., DetectionIn]:
    return make_detection


# ---------------------------------------------------------------------- the review over HTTP
@pytest.fixture
def review_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite review store with analysts ada and bob and four detections in two scenes."""
    url = f"sqlite:///{tmp_path / 'review.db'}"
    store = ReviewStore.open(url)
    store.add_analyst(ADA, ADA_PASSWORD)
    store.add_analyst(BOB, BOB_PASSWORD)
    assert store.add_detections([_detection(k, scene, score, mv) for scene, k, score, mv in DETECTIONS]) == 4
    store.close()
    yield url


@pytest.fixture
def client(review_url: str) -> Iterator[TestClient]:
    with TestClient(_app(review_url)) as test_client:
        yield test_client


@pytest.fixture
def ada(client: TestClient) -> tuple[TestClient, dict[str, str]]:
    """The client logged in as ada, and the CSRF header to send with POSTs."""
    return client, {CSRF_HEADER: _login(client)}
