"""The service's outer layer: body limits on the bytes as they arrive (chunked bodies too),
request ids, and 5xx answers that show callers no internals."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.review.settings import ReviewSettings
from service.review.store import ReviewStore
from service.settings import Settings

CHUNK = 16 * 1024


def _app(tmp_path: Path, **review: Any) -> FastAPI:
    settings = Settings(
        model_path=tmp_path / "no-bundle", max_body_bytes=256 * 1024, max_request_bytes=64 * 1024
    )
    return create_app(settings, ReviewSettings(db_url=f"sqlite:///{tmp_path / 'review.db'}", **review))


def _send_endless_chunks(app: FastAPI, path: str, content_type: bytes, head: bytes = b"") -> tuple[int, int]:
    """Call the ASGI app with a body that never ends (no Content-Length, as a chunked upload);
    returns the status answered and how many body bytes the app pulled."""
    pulled = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled > 100 * 2**20:
            raise AssertionError("the app read 100 MB of a body without answering")
        body = head if pulled == 0 and head else bytes(CHUNK)
        pulled += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", content_type),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    assert any(k == b"x-request-id" for k, _ in start["headers"])
    return start["status"], pulled


@pytest.mark.parametrize(
    ("path", "content_type", "head"),
    [
        ("/v1/review/decisions", b"application/json", b'{"detection_id": 1, "note": "'),
        ("/login", b"application/x-www-form-urlencoded", b"name=ada&password="),
    ],
)
def test_an_endless_chunked_body_without_session_is_413_once_the_route_limit_arrived(
    tmp_path: Path, path: str, content_type: bytes, head: bytes
) -> None:
    status, pulled = _send_endless_chunks(_app(tmp_path), path, content_type, head)
    assert status == 413
    assert pulled <= 64 * 1024 + CHUNK  # read up to the limit and no further


def test_an_endless_chunked_tile_is_413_at_the_predict_limit(tmp_path: Path) -> None:
    app = _app(tmp_path)
    state = app.state.impacts
    state.predictor, state.bundle = object(), object()  # "ready": the route parses its body
    head = b'--b\r\nContent-Disposition: form-data; name="tile"; filename="t.npy"\r\n\r\n'
    status, pulled = _send_endless_chunks(app, "/v1/predict", b"multipart/form-data; boundary=b", head)
    assert status == 413
    assert 256 * 1024 <= pulled <= 256 * 1024 + CHUNK


def test_a_declared_length_over_the_limit_is_413_before_anything_is_read(tmp_path: Path) -> None:
    client = TestClient(_app(tmp_path))  # no lifespan: the model is not needed here
    response = client.post("/v1/review/decisions", content=bytes(65 * 1024))
    assert response.status_code == 413
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_every_answer_has_a_request_id_and_an_unexpected_error_shows_no_internals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(tmp_path)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail: /srv/data/internal.db")

    client = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR):
        health = client.get("/healthz")
        failed = client.get("/boom")
    assert len(health.headers["x-request-id"]) == 16
    assert failed.status_code == 500
    body = failed.json()
    assert "secret" not in failed.text and "internal.db" not in failed.text
    assert body["request_id"] == failed.headers["x-request-id"] != health.headers["x-request-id"]
    assert any(
        body["request_id"] in r.getMessage() and "internal.db" in r.getMessage() for r in caplog.records
    )


def test_a_locked_database_answers_503_with_a_request_id_and_logs_the_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "review.db"
    store = ReviewStore.open(f"sqlite:///{db}")
    store.add_analyst("ada", "ada-password-1")
    store.close()
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock; a login writes
    try:
        client = TestClient(_app(tmp_path, busy_timeout_s=0.2))
        with caplog.at_level(logging.ERROR):
            response = client.post(
                "/login", data={"name": "ada", "password": "ada-password-1"}, follow_redirects=False
            )
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert response.status_code == 503
    assert str(tmp_path) not in response.text and "sqlite" not in response.text
    body = response.json()
    assert "review database" in body["detail"] and body["request_id"] == response.headers["x-request-id"]
    assert any(body["request_id"] in r.getMessage() and str(db) in r.getMessage() for r in caplog.records)
