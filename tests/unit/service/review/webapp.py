"""Shared pieces of the review HTTP tests: analysts, detections, an app on a temporary
SQLite store, logging in."""

from __future__ import annotations

import io
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from service.review.http import CSRF_COOKIE
from service.review.routes import install_review
from service.review.schemas import DetectionIn
from service.review.settings import ReviewSettings

ADA, ADA_PASSWORD = "ada", "ada-password-1"
BOB, BOB_PASSWORD = "bob", "bob-password-1"
WKT = 'LOCAL_CS["mars test"]'


def _png(value: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), value).save(buffer, format="PNG")
    return buffer.getvalue()


def _detection(k: int, scene: str, score: float, model_version: str = "v1") -> DetectionIn:
    row, col = 10 * k, 20 + k
    return DetectionIn(
        key=f"{scene}-{k:05d}@{model_version}",
        scene=scene,
        row_min=row,
        col_min=col,
        row_max=row + 5,
        col_max=col + 3,
        centroid_row=row + 2.5,
        centroid_col=col + 1.5,
        centroid_x=1000.0 + 6 * (col + 2),
        centroid_y=2000.0 - 6 * (row + 3),
        area_px=24,
        score=score,
        model_version=model_version,
        crs_wkt=WKT,
        transform=(6.0, 0.0, 1000.0, 0.0, -6.0, 2000.0),
        window=(0, 0, 8, 8),
        crop_png=_png(10 * k),
        mask_png=_png(255),
        context_png=_png(128, 16),
    )


# Queue by score: S1-1 0.9, S2-4 0.8, S1-2 0.7, S1-3 0.5 (model v2).
DETECTIONS = [
    ("S1", 1, 0.9, "v1"),
    ("S1", 2, 0.7, "v1"),
    ("S1", 3, 0.5, "v2"),
    ("S2", 4, 0.8, "v1"),
]


def _app(url: str, **settings: Any) -> FastAPI:
    app = FastAPI()
    install_review(app, ReviewSettings(db_url=url, secure_cookies="false", **settings))
    return app


def _login(client: TestClient, name: str = ADA, password: str = ADA_PASSWORD) -> str:
    """Log in through the form; returns the CSRF token."""
    response = client.post("/login", data={"name": name, "password": password}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/review"
    return client.cookies[CSRF_COOKIE]


def _ids(client: TestClient, **query: Any) -> list[int]:
    response = client.get("/v1/review/queue", params={"status": "all", **query})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def _set_cookie(response: Any, name: str) -> str:
    return next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}="))
