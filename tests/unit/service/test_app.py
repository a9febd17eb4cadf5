"""The prediction service with a real (tiny, untrained) bundle, in-process."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from service.app import create_app
from service.settings import Settings
from tests.conftest import tiny_bundle
from tiling.synth import MARS_EQC


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("service") / "bundle"
    return tiny_bundle(path, "service-test", metrics={"test": {"object": {"f1": 0.5}}})


@pytest.fixture(scope="module")
def client(bundle: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_path=bundle, window_px=128, overlap_px=16, max_tile_px=1024, max_body_bytes=4 * 2**20
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _png(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


DEFAULT_TRANSFORM = Affine(6.0, 0, 1000.0, 0, -6.0, 2000.0)


def _geotiff(array: np.ndarray, transform: Affine = DEFAULT_TRANSFORM) -> bytes:
    with MemoryFile() as memory:
        with memory.open(
            driver="GTiff",
            height=array.shape[-2],
            width=array.shape[-1],
            count=1 if array.ndim == 2 else array.shape[0],
            dtype=array.dtype,
            crs=MARS_EQC,
            transform=transform,
        ) as ds:
            ds.write(array if array.ndim == 3 else array[None])
        return bytes(memory.read())


def _post(client: TestClient, data: bytes, **params: str) -> object:
    return client.post("/v1/predict", files={"tile": ("tile.bin", data)}, params=params)


TILE = np.random.default_rng(0).integers(1, 255, size=(200, 150), dtype=np.uint8)


def test_health_readiness_model_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == "service-test"
    model = client.get("/v1/model").json()
    assert model["version"] == "service-test" and model["config"]["model"]["depth"] == 2
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("encode", [_npy, _png, _geotiff], ids=["npy", "png", "geotiff"])
def test_predict_answers_detections_for_every_format(client: TestClient, encode) -> None:  # type: ignore[no-untyped-def]
    response = _post(client, encode(TILE))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["height"], body["width"], body["model_version"]) == (200, 150, "service-test")
    assert isinstance(body["detections"], list)


def test_mask_as_png_and_as_georeferenced_geotiff(client: TestClient) -> None:
    png = _post(client, _npy(TILE), format="png")
    assert png.headers["content-type"] == "image/png"
    assert np.asarray(Image.open(io.BytesIO(png.content))).shape == (200, 150)
    transform = Affine(6.0, 0, 123_000.0, 0, -6.0, 456_000.0)
    tiff = client.post(
        "/v1/predict", files={"tile": ("t.tif", _geotiff(TILE, transform))}, headers={"accept": "image/tiff"}
    )
    assert tiff.headers["content-type"] == "image/tiff"
    with MemoryFile(tiff.content) as memory, memory.open() as ds:
        assert ds.transform == transform and ds.crs == MARS_EQC and (ds.height, ds.width) == (200, 150)


def test_a_model_that_sees_impacts_reports_them_where_they_are(bundle: Path) -> None:
    settings = Settings(model_path=bundle, window_px=128, overlap_px=16)
    with TestClient(create_app(settings)) as client:
        state = client.app.state.impacts  # type: ignore[attr-defined]
        state.predictor.model_fn = lambda batch: (batch < 0.2).astype(np.float32)  # dark = impact
        tile = np.full((300, 260), 200, np.uint8)
        rr, cc = np.ogrid[:300, :260]
        tile[(rr - 210) ** 2 + (cc - 70) ** 2 <= 49] = 10
        body = _post(client, _geotiff(tile)).json()
    (detection,) = body["detections"]
    assert (round(detection["centroid_row"]), round(detection["centroid_col"])) == (210, 70)
    assert detection["centroid_x"] == pytest.approx(1000 + 70.5 * 6) and detection[
        "centroid_y"
    ] == pytest.approx(2000 - 210.5 * 6)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"GIF89a not an image we take", 415, "not a supported image"),
        (b"%PDF-1.7 something", 415, "not a supported image"),
        (_png(TILE)[:60], 400, "truncated"),
        (_npy(TILE)[:200], 400, "truncated"),
        (_png(np.dstack([TILE] * 3), "RGB"), 422, "several bands"),
        (_geotiff(np.stack([TILE, TILE])), 422, "2 bands"),
        (_npy(TILE.astype(np.int32)), 422, "int32"),
        (_npy(np.where(TILE > 100, np.nan, 0.5).astype(np.float32)), 422, "NaN"),
        (_npy(np.zeros((2000, 10), np.uint8)), 413, "2000x10"),
    ],
    ids=[
        "zero-bytes",
        "gif",
        "pdf",
        "truncated-png",
        "truncated-npy",
        "rgb-png",
        "two-band-tiff",
        "int32",
        "nan",
        "too-large",
    ],
)
def test_bad_tiles_get_a_clear_4xx_and_the_service_stays_up(
    client: TestClient, data: bytes, status: int, words: str
) -> None:
    response = _post(client, data)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert client.get("/healthz").status_code == 200 and _post(client, _npy(TILE)).status_code == 200


def test_a_tiff_declaring_an_enormous_size_is_refused_before_decoding(
    client: TestClient, tmp_path: Path
) -> None:
    path = tmp_path / "huge.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=200_000,
        width=200_000,
        count=1,
        dtype="uint8",
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        SPARSE_OK="TRUE",
        compress="deflate",
    ) as ds:
        ds.write(np.ones((1, 16, 16), np.uint8), window=rasterio.windows.Window(0, 0, 16, 16))
    assert path.stat().st_size < 4 * 2**20
    response = _post(client, path.read_bytes())
    assert response.status_code == 413 and "200000x200000" in response.json()["detail"]


def test_body_and_part_limits(client: TestClient) -> None:
    big = client.post("/v1/predict", files={"tile": ("big.npy", b"\x93NUMPY" + bytes(5 * 2**20))})
    assert big.status_code == 413
    many = client.post("/v1/predict", files=[("tile", (f"t{i}.npy", _npy(TILE))) for i in range(6)])
    assert many.status_code == 413 and "Too many" in many.json()["detail"]
    missing = client.post("/v1/predict", data={"other": "x"})
    assert missing.status_code == 422


def test_concurrent_requests_share_model_calls_and_metrics_show_it(bundle: Path) -> None:
    settings = Settings(model_path=bundle, window_px=128, overlap_px=0, batch_max=16, batch_wait_ms=50)
    app = create_app(settings)
    with TestClient(app) as client:
        state = app.state.impacts

        async def burst() -> list[int]:
            import httpx

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                tiles = [_npy(np.full((128, 128), 100 + i, np.uint8)) for i in range(8)]
                responses = await asyncio.gather(
                    *(http.post("/v1/predict", files={"tile": ("t.npy", t)}) for t in tiles)
                )
            return [r.status_code for r in responses]

        statuses = client.portal.call(burst)  # type: ignore[union-attr]
        assert statuses == [200] * 8
        assert max(state.predictor.stats.sizes) > 1, "concurrent windows never shared a model call"
        text = client.get("/metrics").text
    assert 'impacts_requests_total{method="POST",route="/v1/predict",status="200"} 8' in text
    assert "impacts_batch_windows_bucket" in text and "impacts_queue_windows 0" in text


def test_a_saturated_queue_answers_503_with_retry_after(bundle: Path) -> None:
    settings = Settings(model_path=bundle, window_px=128, overlap_px=0, queue_max=1)
    with TestClient(create_app(settings)) as client:
        response = _post(client, _npy(np.full((256, 256), 90, np.uint8)))  # 4 windows > queue of 1
    assert response.status_code == 503 and response.headers["retry-after"] == "1"


def test_before_the_model_is_loaded_routes_answer_503_not_500(bundle: Path) -> None:
    client = TestClient(create_app(Settings(model_path=bundle)))  # no `with`: the lifespan never runs
    assert client.get("/healthz").status_code == 200
    for response in (client.get("/readyz"), client.get("/v1/model"), _post(client, _npy(TILE))):
        assert response.status_code == 503
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["tile"] and body["properties"]["tile"]["format"] == "binary"
