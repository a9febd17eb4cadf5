"""The review JSON API through HTTP (FastAPI TestClient) on a temporary SQLite store:
decisions, queue, progress, images, export, app wiring."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from impacts.detections import Detection
from impacts.errors import SceneNameError
from service.review.http import CSRF_HEADER
from service.review.intake import tile_digest, tile_review_items
from service.review.routes import install_review
from service.review.settings import ReviewSettings
from service.review.store import ReviewStore
from tests.unit.service.review.webapp import (
    ADA,
    BOB,
    BOB_PASSWORD,
    WKT,
    _app,
    _ids,
    _login,
)


# ---------------------------------------------------------------------- decisions
@pytest.mark.parametrize("field", ["analyst", "analyst_id", "user"])
def test_a_body_naming_an_analyst_is_422_and_records_nothing(
    ada: tuple[TestClient, dict[str, str]], field: str
) -> None:
    client, csrf = ada
    body = {"detection_id": 1, "decision": "accept", field: BOB}
    response = client.post("/v1/review/decisions", json=body, headers=csrf)
    assert response.status_code == 422
    assert client.get("/v1/review/detections/1").json()["decisions"] == []


def test_decisions_are_the_sessions_analyst_and_conflicts_stay_visible(review_url: str) -> None:
    with TestClient(_app(review_url)) as ada, TestClient(_app(review_url)) as bob:
        ada_csrf = {CSRF_HEADER: _login(ada)}
        bob_csrf = {CSRF_HEADER: _login(bob, BOB, BOB_PASSWORD)}
        top = _ids(ada)[0]
        accepted = ada.post(
            "/v1/review/decisions",
            json={"detection_id": top, "decision": "accept", "note": "fresh"},
            headers=ada_csrf,
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["decision"]["analyst"] == ADA
        assert accepted.json()["detection"]["status"] == "accept"
        rejected = bob.post(
            "/v1/review/decisions",
            json={"detection_id": top, "decision": "reject", "reason": "shadow"},
            headers=bob_csrf,
        )
        assert rejected.json()["detection"]["status"] == "conflict"
        detection = ada.get(f"/v1/review/detections/{top}").json()
        assert {(d["analyst"], d["decision"], d["reason"]) for d in detection["decisions"]} == {
            (ADA, "accept", None),
            (BOB, "reject", "shadow"),
        }
        history = ada.get(f"/v1/review/history/{top}").json()
        assert [(h["action"], h["analyst"]) for h in history] == [
            ("add", None),
            ("decide", ADA),
            ("decide", BOB),
        ]

        # Undo withdraws only the session analyst's own latest decision.
        undone = bob.post("/v1/review/undo", headers=bob_csrf).json()
        assert (undone["decision"]["analyst"], undone["decision"]["decision"]) == (BOB, "reject")
        assert undone["detection"]["status"] == "accept"
        assert bob.post("/v1/review/undo", headers=bob_csrf).json() == {"decision": None, "detection": None}
        assert [h["action"] for h in ada.get(f"/v1/review/history/{top}").json()][-1] == "undo"


def test_invalid_decisions_are_4xx_and_the_service_stays_up(ada: tuple[TestClient, dict[str, str]]) -> None:
    client, csrf = ada
    post = client.post
    assert (
        post("/v1/review/decisions", json={"detection_id": 1, "decision": "reject"}, headers=csrf).status_code
        == 400
    )
    assert (
        post(
            "/v1/review/decisions",
            json={"detection_id": 1, "decision": "accept", "reason": "shadow"},
            headers=csrf,
        ).status_code
        == 400
    )
    assert (
        post(
            "/v1/review/decisions",
            json={"detection_id": 1, "decision": "reject", "reason": "aliens"},
            headers=csrf,
        ).status_code
        == 422
    )
    assert (
        post("/v1/review/decisions", json={"detection_id": 1, "decision": "maybe"}, headers=csrf).status_code
        == 422
    )
    assert (
        post(
            "/v1/review/decisions", json={"detection_id": 999, "decision": "accept"}, headers=csrf
        ).status_code
        == 404
    )
    assert post("/v1/review/decisions", content=b"{not json", headers=csrf).status_code == 422
    assert (
        post(
            "/v1/review/decisions",
            json={"detection_id": 1, "decision": "accept", "note": "x" * 2001},
            headers=csrf,
        ).status_code
        == 422
    )
    assert client.get("/v1/review/detections/999").status_code == 404
    assert client.get("/v1/review/detections/0").status_code == 422
    assert client.get("/v1/review/history/999").status_code == 404
    ok = post("/v1/review/decisions", json={"detection_id": 1, "decision": "unsure"}, headers=csrf)
    assert ok.status_code == 200 and ok.json()["detection"]["status"] == "unsure"


# ---------------------------------------------------------------------- queue and progress
def test_the_queue_filters_and_orders(ada: tuple[TestClient, dict[str, str]]) -> None:
    client, csrf = ada
    scores = {i: client.get(f"/v1/review/detections/{i}").json()["score"] for i in _ids(client)}
    by_score = _ids(client)
    assert [scores[i] for i in by_score] == [0.9, 0.8, 0.7, 0.5]
    by_scene = _ids(client, order="scene")
    assert [scores[i] for i in by_scene] == [0.9, 0.7, 0.5, 0.8]  # S1 by score, then S2
    assert [scores[i] for i in _ids(client, scene="S2")] == [0.8]
    assert [scores[i] for i in _ids(client, score_min=0.6, score_max=0.85)] == [0.8, 0.7]
    assert [scores[i] for i in _ids(client, model_version="v2")] == [0.5]
    page = client.get("/v1/review/queue", params={"status": "all", "limit": 2, "offset": 1}).json()
    assert ([scores[i["id"]] for i in page["items"]], page["total"]) == ([0.8, 0.7], 4)

    top = by_score[0]
    client.post("/v1/review/decisions", json={"detection_id": top, "decision": "accept"}, headers=csrf)
    assert top not in [i["id"] for i in client.get("/v1/review/queue").json()["items"]]  # default: pending
    assert _ids(client, status="accept") == [top]
    assert top not in _ids(client, undecided="true")
    assert top in _ids(client, undecided="false")


@pytest.mark.parametrize(
    "query",
    [
        {"scene": "../../etc/passwd"},
        {"scene": "a/b"},
        {"scene": "x" * 129},
        {"scene": ""},
        {"status": "done"},
        {"order": "random"},
        {"score_min": 2},
        {"limit": 500},
        {"offset": -1},
        {"analyst": BOB},
    ],
)
def test_bad_queue_parameters_are_422(ada: tuple[TestClient, dict[str, str]], query: dict[str, Any]) -> None:
    client, _ = ada
    response = client.get("/v1/review/queue", params=query)
    assert response.status_code == 422, response.text


def test_progress_counts_each_status_per_scene(ada: tuple[TestClient, dict[str, str]]) -> None:
    client, csrf = ada
    s1 = _ids(client, scene="S1")
    client.post("/v1/review/decisions", json={"detection_id": s1[0], "decision": "accept"}, headers=csrf)
    client.post(
        "/v1/review/decisions",
        json={"detection_id": s1[1], "decision": "reject", "reason": "artefact"},
        headers=csrf,
    )
    progress = {p["scene"]: p for p in client.get("/v1/review/progress").json()}
    assert progress["S1"] == {
        "scene": "S1",
        "total": 3,
        "accepted": 1,
        "rejected": 1,
        "unsure": 0,
        "conflict": 0,
        "pending": 1,
    }
    assert (progress["S2"]["total"], progress["S2"]["pending"]) == (1, 1)


def test_images_are_served_as_png(ada: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = ada
    for kind, size in (("crop", (8, 8)), ("mask", (8, 8)), ("context", (16, 16))):
        response = client.get(f"/v1/review/detections/1/{kind}.png")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert Image.open(io.BytesIO(response.content)).size == size
    assert client.get("/v1/review/detections/1/secret.png").status_code == 422
    assert client.get("/v1/review/detections/1/..%2F..%2Fetc.png").status_code in (404, 422)
    assert client.get("/v1/review/detections/999/crop.png").status_code == 404


# ---------------------------------------------------------------------- export
def test_export_gives_the_files_of_the_decisions(ada: tuple[TestClient, dict[str, str]]) -> None:
    client, csrf = ada
    first, second, third, _ = _ids(client)
    for body in (
        {"detection_id": first, "decision": "accept"},
        {"detection_id": second, "decision": "reject", "reason": "crater"},
        {"detection_id": third, "decision": "reject", "reason": "shadow"},
    ):
        assert client.post("/v1/review/decisions", json=body, headers=csrf).status_code == 200
    assert client.post("/v1/review/undo", headers=csrf).status_code == 200  # the shadow rejection

    geojson = client.get("/v1/review/export", params={"what": "accepted", "format": "geojson"})
    assert geojson.status_code == 200
    assert geojson.headers["content-disposition"] == 'attachment; filename="accepted.geojson"'
    collection = json.loads(geojson.text)
    assert collection["crs"]["properties"]["name"] == WKT
    assert [
        (f["properties"]["detection_id"], f["properties"]["analyst"]) for f in collection["features"]
    ] == [(first, ADA)]

    accepted_csv = client.get("/v1/review/export", params={"what": "accepted", "format": "csv"})
    assert accepted_csv.headers["content-disposition"] == 'attachment; filename="accepted.csv"'
    assert [int(r["detection_id"]) for r in csv.DictReader(io.StringIO(accepted_csv.text))] == [first]

    negatives = client.get("/v1/review/export", params={"what": "rejected", "format": "csv"})
    assert negatives.headers["content-disposition"] == 'attachment; filename="hard_negatives.csv"'
    assert negatives.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(negatives.text)))
    assert [(int(r["detection_id"]), r["reason"], r["analyst"]) for r in rows] == [(second, "crater", ADA)]
    detail = client.get(f"/v1/review/detections/{second}").json()
    assert {k: int(rows[0][k]) for k in ("row_min", "col_min", "row_max", "col_max")} == {
        k: detail[k] for k in ("row_min", "col_min", "row_max", "col_max")
    }
    assert client.get("/v1/review/export", params={"what": "everything"}).status_code == 422


# ---------------------------------------------------------------------- app wiring
def test_the_store_opens_on_first_use_and_closes_with_the_app(tmp_path: Path, review_url: str) -> None:
    lazy = tmp_path / "lazy.db"
    app = _app(f"sqlite:///{lazy}")
    with TestClient(app) as client:
        assert client.get("/login").status_code == 200
        assert client.get("/v1/review/queue").status_code == 401
        assert not lazy.exists()  # anonymous requests never touch the database
        assert client.post("/login", data={"name": ADA, "password": "whatever-1"}).status_code == 401
        assert lazy.exists()
        assert app.state.review._store is not None
    assert app.state.review._store is None


def test_an_unreachable_database_answers_503_and_recovers(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet" / "review.db"
    with TestClient(_app(f"sqlite:///{missing}")) as client:
        response = client.post("/login", data={"name": ADA, "password": "whatever-1"})
        assert response.status_code == 503
        assert "review database" in response.json()["detail"]
        missing.parent.mkdir()
        assert client.post("/login", data={"name": ADA, "password": "whatever-1"}).status_code == 401


def test_disabled_review_adds_no_routes(review_url: str) -> None:
    app = FastAPI()
    install_review(app, ReviewSettings(db_url=review_url, enabled=False))
    with TestClient(app) as client:
        assert client.get("/login").status_code == 404
        assert client.get("/v1/review/queue").status_code == 404


def test_settings_come_from_impacts_review_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMPACTS_REVIEW_DB_URL", "sqlite:///x.db")
    monkeypatch.setenv("IMPACTS_REVIEW_SECURE_COOKIES", "true")
    monkeypatch.setenv("IMPACTS_REVIEW_SCENES_DIR", str(tmp_path))
    monkeypatch.setenv("IMPACTS_REVIEW_ENABLED", "0")
    settings = ReviewSettings()
    assert (settings.db_url, settings.secure_cookies, settings.scenes_dir, settings.enabled) == (
        "sqlite:///x.db",
        "true",
        tmp_path,
        False,
    )


# ---------------------------------------------------------------------- tiles from POST /v1/predict?review=true
def test_tile_detections_become_review_items_that_the_queue_shows(review_url: str) -> None:
    image = np.zeros((200, 300), np.uint8)
    image[50:60, 100:112] = 200
    detection = Detection.locate(
        id="ESP_012345_1234-00000",
        scene="ESP_012345_1234",
        row_min=50,
        col_min=100,
        row_max=59,
        col_max=111,
        centroid_row=54.5,
        centroid_col=105.5,
        area_px=120,
        score=0.8765,
        model_version="v9",
    )
    digest = tile_digest(image.tobytes())
    items = tile_review_items(image, [detection], "ESP_012345_1234", "v9", digest)
    assert len(items) == 1
    item = items[0]
    assert item.key == f"ESP_012345_1234:{digest}-00000@v9"
    # The crop is the box's centred window (tiling.windows.Box.centred: columns 100-111 leave
    # 116 spare pixels, 58 on each side).
    assert (item.source, item.centroid_x, item.window) == ("service", 106.0, (0, 42, 128, 128))
    assert Image.open(io.BytesIO(item.crop_png)).size == (128, 128)
    store = ReviewStore.open(review_url)
    try:
        assert store.add_detections(items) == 1
        assert store.add_detections(items) == 0  # the same tile again adds nothing
    finally:
        store.close()
    with pytest.raises(SceneNameError, match="scene name"):
        tile_review_items(image, [detection], "../scenes/x", "v9", digest)
    assert SceneNameError("x").http_status == 422
