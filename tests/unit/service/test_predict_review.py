"""``POST /v1/predict?review=true``: a tile's detections go into the analysts' queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.review.schemas import QueueFilter
from service.review.settings import ReviewSettings
from service.review.store import ReviewStore
from service.settings import Settings
from tests.conftest import tiny_bundle
from tests.unit.service.test_tile_inference import BATCH, OVERLAP, TRANSFORM, WINDOW, _geotiff, _model


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """A client whose requests carry an API token (``Authorization: Bearer``)."""
    root = tmp_path_factory.mktemp("predict-review")
    tiny_bundle(root / "bundle", "review-flag")
    settings = Settings(model_path=root / "bundle", window_px=WINDOW, overlap_px=OVERLAP, batch_max=BATCH)
    db = f"sqlite:///{root / 'review.db'}"
    store = ReviewStore.open(db)
    token = store.add_token("pipeline")
    store.close()
    app = create_app(settings, ReviewSettings(db_url=db))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        client.app.state.impacts.predictor.model_fn = _model  # type: ignore[attr-defined]
        yield client, db


def test_review_flag_queues_the_detections_with_their_georeference(served: tuple[TestClient, str]) -> None:
    client, db = served
    tile = np.random.default_rng(3).integers(0, 256, size=(120, 100), dtype=np.uint8)
    data = _geotiff(tile)
    files = {"tile": ("t.tif", data)}
    body = client.post("/v1/predict", params={"review": "true"}, data={"scene": "TILE_A"}, files=files).json()
    assert body["queued_for_review"] == len(body["detections"]) > 0
    again = client.post(
        "/v1/predict", params={"review": "true"}, data={"scene": "TILE_A"}, files=files
    ).json()
    assert again["queued_for_review"] == 0  # the same upload adds nothing
    store = ReviewStore.open(db)
    try:
        queued = store.queue(QueueFilter(status=None, scene="TILE_A", limit=200)).items
        assert len(queued) == len(body["detections"])
        best = max(queued, key=lambda d: d.score)
        top = body["detections"][0]
        assert best.score == pytest.approx(top["score"]) and best.model_version == "review-flag"
        assert best.centroid_x == pytest.approx(top["centroid_x"]) and best.transform[0] == TRANSFORM.a
        assert store.crop_png(best.id, "crop")[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        store.close()


def test_without_the_flag_nothing_is_queued_and_bad_scene_names_are_refused(
    served: tuple[TestClient, str], tmp_path: Path
) -> None:
    client, _ = served
    files = {"tile": ("t.tif", _geotiff(np.full((64, 64), 80, np.uint8)))}
    assert client.post("/v1/predict", files=files).json()["queued_for_review"] is None
    for scene in ("../etc/passwd", "a/b", ""):
        answer = client.post("/v1/predict", params={"review": "true"}, data={"scene": scene}, files=files)
        assert answer.status_code == 422 and "scene" in answer.json()["detail"]
    missing = client.post("/v1/predict", params={"review": "true"}, files=files)
    assert missing.status_code == 422


def test_queueing_needs_a_token_or_an_analyst_session_with_its_csrf_header(
    served: tuple[TestClient, str],
) -> None:
    client, db = served
    files = {"tile": ("t.tif", _geotiff(np.random.default_rng(4).integers(0, 256, (96, 80), dtype=np.uint8)))}
    form = {"scene": "TILE_AUTH"}
    store = ReviewStore.open(db)
    try:
        store.add_analyst("ada", "ada-password-1")
        revoked = store.add_token("old-script")
        store.revoke_token("old-script")

        def queued() -> int:
            return store.queue(QueueFilter(status=None, scene="TILE_AUTH", limit=200)).total

        anonymous = TestClient(client.app)
        nobody = anonymous.post("/v1/predict", params={"review": "true"}, data=form, files=files)
        assert nobody.status_code == 401 and "token" in nobody.json()["detail"]
        assert anonymous.post("/v1/predict", files=files).status_code == 200  # predicting stays open
        for token in (revoked, "not-a-token", ""):
            refused = anonymous.post(
                "/v1/predict",
                params={"review": "true"},
                data=form,
                files=files,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert refused.status_code == 403
        assert queued() == 0

        login = anonymous.post(
            "/login", data={"name": "ada", "password": "ada-password-1"}, follow_redirects=False
        )
        assert login.status_code == 303
        no_csrf = anonymous.post("/v1/predict", params={"review": "true"}, data=form, files=files)
        assert no_csrf.status_code == 403 and queued() == 0
        csrf = {"X-CSRF-Token": anonymous.cookies["impacts_csrf"]}
        ok = anonymous.post("/v1/predict", params={"review": "true"}, data=form, files=files, headers=csrf)
        assert ok.status_code == 200 and ok.json()["queued_for_review"] == queued() > 0
        first = store.queue(QueueFilter(status=None, scene="TILE_AUTH", limit=1)).items[0]
        assert store.history(first.id)[0].analyst == "ada"
    finally:
        store.close()


def test_a_tokens_queueing_is_audited_under_its_name(served: tuple[TestClient, str]) -> None:
    client, db = served
    files = {"tile": ("t.tif", _geotiff(np.random.default_rng(8).integers(0, 256, (96, 80), dtype=np.uint8)))}
    body = client.post(
        "/v1/predict", params={"review": "true"}, data={"scene": "TILE_TOKEN"}, files=files
    ).json()
    assert body["queued_for_review"] > 0
    store = ReviewStore.open(db)
    try:
        item = store.queue(QueueFilter(status=None, scene="TILE_TOKEN", limit=1)).items[0]
        assert store.history(item.id)[0].analyst == "token:pipeline"
    finally:
        store.close()
