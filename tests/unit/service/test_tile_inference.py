"""The service's in-memory tile path answers exactly what ``predict_scene`` (the streamed
scene path with its ``ComponentTracker``) gives on the same windows."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from impacts.detections import Detection
from service.app import create_app
from service.routes.predict import PredictResponse
from service.settings import Settings
from tests.conftest import tiny_bundle
from tiling.synth import MARS_EQC
from training.inference import predict_scene

WINDOW, OVERLAP, BATCH = 64, 16, 4
TRANSFORM = Affine(6.0, 0, 1000.0, 0, -6.0, 2000.0)


def _model(batch: np.ndarray) -> np.ndarray:
    """Deterministic, window-position dependent and blotchy: many components of all sizes,
    some crossing window and band boundaries."""
    rows = np.arange(batch.shape[1], dtype=np.float32)[None, :, None, None]
    cols = np.arange(batch.shape[2], dtype=np.float32)[None, None, :, None]
    return (0.5 + 0.5 * np.sin(batch * 23.0 + rows * 0.9) * np.cos(cols * 0.7 - batch * 5.0)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path = tiny_bundle(tmp_path_factory.mktemp("tile-inference") / "bundle", "tile-inference")
    settings = Settings(
        model_path=path, window_px=WINDOW, overlap_px=OVERLAP, batch_max=BATCH, max_tile_px=1024
    )
    with TestClient(create_app(settings)) as test_client:
        test_client.app.state.impacts.predictor.model_fn = _model  # type: ignore[attr-defined]
        yield test_client


def _expected(client: TestClient, tile: np.ndarray, transform: Affine | None) -> tuple[np.ndarray, list[Any]]:
    """The service's answer as it was computed before (``predict_scene`` on the padded tile)."""
    state = client.app.state.impacts  # type: ignore[attr-defined]
    height, width = tile.shape
    multiple = 2**state.bundle.config.model.depth
    padded_h = max(WINDOW, -(-height // multiple) * multiple)
    padded_w = max(WINDOW, -(-width // multiple) * multiple)
    image = np.zeros((padded_h, padded_w), dtype=np.float32)
    image[:height, :width] = tile / 255.0
    prob = np.zeros_like(image)
    threshold = state.bundle.config.evaluation.threshold

    def write(rows: np.ndarray, row0: int) -> None:
        prob[row0 : row0 + len(rows)] = rows

    result = predict_scene(
        lambda r, n: image[r : r + n],
        padded_h,
        padded_w,
        _model,
        write,
        window_px=WINDOW,
        overlap_px=OVERLAP,
        batch_size=BATCH,
        threshold=threshold,
        scale=1.0,
        nodata=-1.0,
        min_area_px=state.bundle.config.evaluation.min_area_px,
        merge_distance_px=state.bundle.config.evaluation.merge_distance_px,
    )
    kept = sorted(
        (d for d in result.detections if d.box.row_min < height and d.box.col_min < width),
        key=lambda d: -d.peak,
    )
    # The records impacts predict writes for the same detections (clipped to the tile).
    detections = [
        Detection.locate(
            id=f"tile-{k:05d}",
            scene=None,
            row_min=d.box.row_min,
            col_min=d.box.col_min,
            row_max=min(d.box.row_max, height - 1),
            col_max=min(d.box.col_max, width - 1),
            centroid_row=d.centroid_row,
            centroid_col=d.centroid_col,
            area_px=d.area_px,
            score=d.peak,
            model_version=state.bundle.version,
            transform=transform,
        ).properties()
        for k, d in enumerate(kept)
    ]
    return prob[:height, :width] >= threshold, detections


def _geotiff(array: np.ndarray) -> bytes:
    with MemoryFile() as memory:
        with memory.open(
            driver="GTiff",
            height=array.shape[0],
            width=array.shape[1],
            count=1,
            dtype=array.dtype,
            crs=MARS_EQC,
            transform=TRANSFORM,
        ) as ds:
            ds.write(array[None])
        return bytes(memory.read())


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("shape", [(64, 64), (30, 41), (200, 150), (257, 130), (190, 333)])
@pytest.mark.parametrize("geotiff", [False, True], ids=["npy", "geotiff"])
def test_detections_and_mask_are_exactly_those_of_predict_scene(
    client: TestClient, shape: tuple[int, int], geotiff: bool
) -> None:
    tile = np.random.default_rng(sum(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    data = _geotiff(tile) if geotiff else _npy(tile)
    mask, detections = _expected(client, tile, TRANSFORM if geotiff else None)
    assert len(detections) > 3  # the comparison means something
    body = client.post("/v1/predict", files={"tile": ("t", data)}).json()
    assert body["detections"] == detections
    assert PredictResponse.model_validate(body).model_dump(mode="json") == body
    png = client.post("/v1/predict", files={"tile": ("t", data)}, params={"format": "png"})
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))) > 0, mask)


@pytest.mark.parametrize("shape", [(64, 64), (200, 150), (190, 333)])
@pytest.mark.parametrize("merge_distance_px", [1, 4])
def test_merged_fragments_are_exactly_those_of_predict_scene(
    client: TestClient, shape: tuple[int, int], merge_distance_px: int
) -> None:
    evaluation = client.app.state.impacts.bundle.config.evaluation  # type: ignore[attr-defined]
    tile = np.random.default_rng(sum(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    separate = client.post("/v1/predict", files={"tile": ("t", _geotiff(tile))}).json()["detections"]
    evaluation.merge_distance_px = merge_distance_px
    try:
        _, detections = _expected(client, tile, TRANSFORM)
        body = client.post("/v1/predict", files={"tile": ("t", _geotiff(tile))}).json()
    finally:
        evaluation.merge_distance_px = 0
    assert body["detections"] == detections
    assert 0 < len(detections) < len(separate), "merging must join some fragments"
    assert sum(d["area_px"] for d in detections) >= sum(d["area_px"] for d in separate)


def test_a_tile_without_impacts_has_no_detections(client: TestClient) -> None:
    state = client.app.state.impacts  # type: ignore[attr-defined]
    state.predictor.model_fn = lambda batch: np.zeros_like(batch)
    try:
        body = client.post("/v1/predict", files={"tile": ("t", _npy(np.ones((100, 90), np.uint8)))}).json()
    finally:
        state.predictor.model_fn = _model
    assert body["detections"] == [] and (body["height"], body["width"]) == (100, 90)


def test_the_path_is_importable_without_a_bundle() -> None:
    assert create_app(Settings(model_path=Path("not-loaded"))).title == "mars-impacts"
