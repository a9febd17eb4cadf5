"""The FastAPI app: tile prediction with micro-batching, health, readiness, metrics.

``create_app(settings)`` builds the app; the model bundle is loaded in the lifespan, so
importing this module loads nothing. Errors of the project (``ImpactsError``) become JSON
4xx/5xx answers in one handler and the service stays up.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from impacts.errors import ImpactsError
from service.decode import Tile, TileError, decode_tile
from service.metrics import Metrics
from service.predictor import BatchingPredictor, SaturatedError
from service.settings import Settings

log = logging.getLogger(__name__)


class Detection(BaseModel):
    """One detected impact in tile pixels (and map units for a GeoTIFF tile)."""

    id: int
    centroid_row: float
    centroid_col: float
    centroid_x: float | None = None
    centroid_y: float | None = None
    row_min: int
    col_min: int
    row_max: int
    col_max: int
    area_px: int
    score: float


class PredictResponse(BaseModel):
    """Answer of ``POST /v1/predict`` in JSON."""

    model_version: str
    height: int
    width: int
    threshold: float
    detections: list[Detection]


class State:
    """What the lifespan sets up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.bundle: Any = None
        self.predictor: BatchingPredictor | None = None
        # Request handlers mostly wait for their windows; the default pool (cores + 4
        # threads) would cap how many requests can have windows queued, and so the batch size.
        self.request_threads = ThreadPoolExecutor(
            max_workers=max(8, 4 * settings.batch_max), thread_name_prefix="request"
        )


def _state(request: Request) -> State:
    state: State = request.app.state.impacts
    return state


StateDep = Annotated[State, Depends(_state)]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the bundle at ``settings.model_path`` loads when the app starts."""
    state = State(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from training.bundle import load_bundle
        from training.inference import keras_predictor

        state.bundle = await asyncio.to_thread(load_bundle, state.settings.model_path)
        s = state.settings
        state.predictor = BatchingPredictor(
            keras_predictor(state.bundle.model), s.batch_max, s.batch_wait_ms, s.queue_max, s.batching
        )
        state.predictor.stats.on_batch = state.metrics.batch.observe
        await state.predictor.start()
        log.info("model %s loaded from %s", state.bundle.version, s.model_path)
        yield
        await state.predictor.stop()
        state.request_threads.shutdown(wait=False)

    app = FastAPI(
        title="mars-impacts",
        version="0.1.0",
        lifespan=lifespan,
        description="Fresh impact detection on Mars orbital image tiles.",
    )
    app.state.impacts = state

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > state.settings.max_body_bytes:
            response: Response = JSONResponse(
                {"detail": f"body of {length} bytes exceeds the {state.settings.max_body_bytes} byte limit"},
                413,
            )
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        state.metrics.requests[(request.method, path, response.status_code)] += 1
        state.metrics.latency.observe(time.perf_counter() - started)
        return response

    @app.exception_handler(ImpactsError)
    async def impacts_error(request: Request, exc: ImpactsError) -> JSONResponse:
        if isinstance(exc, SaturatedError | NotReadyError):
            return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": "1"})
        status = exc.status if isinstance(exc, TileError) else 400
        return JSONResponse({"detail": str(exc)}, status)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded", responses={503: {"description": "Not ready"}})
    async def readyz(state: StateDep) -> JSONResponse:
        ready = state.predictor is not None
        return JSONResponse(
            {"ready": ready, "model_version": state.bundle.version if ready else None}, 200 if ready else 503
        )

    @app.get(
        "/v1/model",
        summary="Version, config and metrics of the loaded bundle",
        responses={503: {"description": "Not ready"}},
    )
    async def model_info(state: StateDep) -> dict[str, Any]:
        _require_ready(state)
        return {
            "version": state.bundle.version,
            "config": state.bundle.config.model_dump(mode="json"),
            "metrics": state.bundle.metrics,
        }

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics(state: StateDep) -> str:
        return state.metrics.render(state.predictor.waiting if state.predictor else 0)

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        summary="Detect impacts on a tile",
        description="Upload one tile (GeoTIFF, PNG or .npy) as the multipart field `tile`. "
        "`format=json` (default) answers the detections; `png` or `geotiff` (or an Accept header of "
        "image/png or image/tiff) answers the 0/1 impact mask, the GeoTIFF with the input's georeference.",
        responses={
            200: {
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/tiff": {"schema": {"type": "string", "format": "binary"}},
                }
            },
            400: {},
            413: {},
            415: {},
            422: {},
            503: {},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["tile"],
                            "properties": {
                                "tile": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "GeoTIFF, PNG or .npy tile",
                                }
                            },
                        }
                    }
                },
            }
        },
    )
    async def predict(
        request: Request,
        state: StateDep,
        format: Annotated[str | None, Query(pattern="^(json|png|geotiff)$")] = None,
    ) -> Any:
        _require_ready(state)
        s = state.settings
        try:
            form = await request.form(max_files=s.max_parts, max_fields=s.max_parts)
        except Exception as exc:  # starlette raises on too many parts or a broken body
            raise TileError(
                413 if "Too many" in str(exc) else 400, f"multipart body rejected: {exc}"
            ) from exc
        upload = form.get("tile")
        if upload is None or isinstance(upload, str):
            raise TileError(422, "send the tile as the multipart file field `tile`")
        data = await upload.read(s.max_body_bytes + 1)
        if len(data) > s.max_body_bytes:
            raise TileError(413, f"tile exceeds the {s.max_body_bytes} byte limit")
        tile = decode_tile(data, s.max_tile_px)
        prob, detections = await _predict_tile(state, tile)
        threshold = _threshold(state)
        wanted = format or {"image/png": "png", "image/tiff": "geotiff"}.get(
            request.headers.get("accept", ""), "json"
        )
        if wanted == "png":
            return Response(_png(prob >= threshold), media_type="image/png")
        if wanted == "geotiff":
            return Response(_geotiff(prob >= threshold, tile), media_type="image/tiff")
        return PredictResponse(
            model_version=state.bundle.version,
            height=tile.image.shape[0],
            width=tile.image.shape[1],
            threshold=threshold,
            detections=detections,
        )

    return app


class NotReadyError(ImpactsError, RuntimeError):
    """The model is not loaded yet."""


def _require_ready(state: State) -> None:
    if state.predictor is None or state.bundle is None:
        raise NotReadyError("the model is still loading; retry when /readyz answers 200")


def _threshold(state: State) -> float:
    """The detection threshold: the setting, else the bundle's evaluation threshold."""
    threshold: float = state.settings.threshold or state.bundle.config.evaluation.threshold
    return threshold


async def _predict_tile(state: State, tile: Tile) -> tuple[np.ndarray, list[Detection]]:
    """Slide windows over the tile (padded with no-data up to one window), the model
    calls going through the micro-batching predictor."""
    from training.inference import predict_scene

    assert state.predictor is not None
    s = state.settings
    loop = asyncio.get_running_loop()
    height, width = tile.image.shape
    multiple = 2**state.bundle.config.model.depth
    window = max(s.window_px, multiple)
    padded_h = max(window, -(-height // multiple) * multiple)
    padded_w = max(window, -(-width // multiple) * multiple)
    image = np.zeros((padded_h, padded_w), dtype=np.float32)
    image[:height, :width] = tile.image / tile.scale
    prob = np.zeros_like(image)
    threshold = _threshold(state)

    def model(batch: np.ndarray) -> np.ndarray:
        return asyncio.run_coroutine_threadsafe(state.predictor.predict(batch), loop).result()  # type: ignore[union-attr]

    def write(rows: np.ndarray, row0: int) -> None:
        prob[row0 : row0 + len(rows)] = rows

    result = await loop.run_in_executor(
        state.request_threads,
        functools.partial(
            predict_scene,
            lambda r, n: image[r : r + n],
            padded_h,
            padded_w,
            model,
            write,
            window_px=window,
            overlap_px=min(s.overlap_px, window // 2),
            batch_size=s.batch_max,
            threshold=threshold,
            scale=1.0,
            nodata=-1.0,
            min_area_px=state.bundle.config.evaluation.min_area_px,
        ),
    )
    prob = prob[:height, :width]
    detections = []
    for k, d in enumerate(
        sorted(
            (d for d in result.detections if d.box.row_min < height and d.box.col_min < width),
            key=lambda d: -d.peak,
        )
    ):
        x = y = None
        if tile.transform is not None:
            x, y = tile.transform @ (d.centroid_col + 0.5, d.centroid_row + 0.5)
        detections.append(
            Detection(
                id=k,
                centroid_row=d.centroid_row,
                centroid_col=d.centroid_col,
                centroid_x=x,
                centroid_y=y,
                row_min=d.box.row_min,
                col_min=d.box.col_min,
                row_max=min(d.box.row_max, height - 1),
                col_max=min(d.box.col_max, width - 1),
                area_px=d.area_px,
                score=round(d.peak, 4),
            )
        )
    return prob, detections


def _png(mask: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def _geotiff(mask: np.ndarray, tile: Tile) -> bytes:
    from rasterio.io import MemoryFile

    profile = {
        "driver": "GTiff",
        "height": mask.shape[0],
        "width": mask.shape[1],
        "count": 1,
        "dtype": "uint8",
        "crs": tile.crs,
        "transform": tile.transform,
        "compress": "deflate",
    }
    if tile.transform is None:
        profile.pop("transform")
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(mask.astype(np.uint8), 1)
        return bytes(memory.read())


def app_from_env() -> FastAPI:
    """App factory for uvicorn (``--factory``): settings from ``IMPACTS_*`` variables."""
    return create_app(Settings())
