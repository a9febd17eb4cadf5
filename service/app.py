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
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        # ...but only a few of them work on pixels at once (see ``Settings.cpu_slots``): results
        # then go out one after another instead of all late together, which also brings the
        # next requests' windows to the model sooner.
        self.cpu_slots = threading.BoundedSemaphore(settings.cpu_slots)


async def _state(request: Request) -> State:  # async: FastAPI would run a sync one in a thread
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

    app.add_middleware(_Measure, state=state)

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
        wanted = format or {"image/png": "png", "image/tiff": "geotiff"}.get(
            request.headers.get("accept", ""), "json"
        )
        # Everything from decoding to the encoded answer runs in a request thread: the event
        # loop only moves bytes, and one request's numpy work never stalls the others.
        body, media_type = await asyncio.get_running_loop().run_in_executor(
            state.request_threads, _answer, state, data, wanted
        )
        return Response(body, media_type=media_type)

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


class _Measure:
    """Counts requests by route and status and times them (pure ASGI: no extra task or
    stream per request, unlike ``@app.middleware``); a declared body over the limit is
    answered 413 before any of it is read."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        limit = self.state.settings.max_body_bytes
        length = next((v for k, v in scope["headers"] if k == b"content-length"), b"").decode("latin-1")
        if length.isdigit() and int(length) > limit:
            response = JSONResponse({"detail": f"body of {length} bytes exceeds the {limit} byte limit"}, 413)
            status = 413
            await response(scope, receive, send)
        else:

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.app(scope, receive, send_status)
        path = getattr(scope.get("route"), "path", "unmatched")
        metrics = self.state.metrics
        metrics.requests[(scope["method"], path, status)] += 1
        metrics.latency.observe(time.perf_counter() - started)


def _answer(state: State, data: bytes, wanted: str) -> tuple[bytes, str]:
    """Decode an upload, predict it and encode the answer (in a request thread)."""
    with state.cpu_slots:
        tile = decode_tile(data, state.settings.max_tile_px)
        prob = _probabilities(state, tile)  # lets go of the slot while the model runs
        return _encode(state, tile, prob, wanted)


def _encode(state: State, tile: Tile, prob: np.ndarray, wanted: str) -> tuple[bytes, str]:
    """The answer in the wanted format from the blended probabilities of the padded tile."""
    threshold = _threshold(state)
    height, width = tile.image.shape
    if wanted == "png":
        return _png(prob[:height, :width] >= threshold), "image/png"
    if wanted == "geotiff":
        return _geotiff(prob[:height, :width] >= threshold, tile), "image/tiff"
    answer = {
        "model_version": state.bundle.version,
        "height": height,
        "width": width,
        "threshold": threshold,
        "detections": _detections(prob, height, width, threshold, state, tile),
    }
    # Plain Python values of the right types: serialized as ``PredictResponse`` would be,
    # without validating thousands of detections again.
    return to_json(answer), "application/json"


def _probabilities(state: State, tile: Tile) -> np.ndarray:
    """Blended probabilities of the tile padded up to the model's multiple (and one window).

    The same windows, batches, blending and float operations as
    ``training.inference.predict_scene`` (a test checks the maps are identical), but on the
    whole tile in memory at once: a tile is small, so nothing needs streaming. The model
    calls go through the micro-batching predictor; the caller holds a ``cpu_slots`` slot,
    given back while the model runs.
    """
    from training.inference import WindowPlan

    predictor = state.predictor
    assert predictor is not None
    s = state.settings
    height, width = tile.image.shape
    multiple = 2**state.bundle.config.model.depth
    window = max(s.window_px, multiple)
    padded_h = max(window, -(-height // multiple) * multiple)
    padded_w = max(window, -(-width // multiple) * multiple)
    image = np.zeros((padded_h, padded_w), dtype=np.float32)
    image[:height, :width] = tile.image / tile.scale
    overlap = min(s.overlap_px, window // 2)
    stride = window - overlap
    weights = _blend_weights(window, overlap)
    starts = [
        (r, c)
        for r in WindowPlan(padded_h, window, stride).starts()
        for c in WindowPlan(padded_w, window, stride).starts()
    ]
    total = np.zeros_like(image)
    weight = np.zeros_like(image)
    weighted = np.empty_like(weights)
    for first in range(0, len(starts), s.batch_max):
        chunk = starts[first : first + s.batch_max]
        batch = np.stack([image[r : r + window, c : c + window] for r, c in chunk])[..., None]
        state.cpu_slots.release()
        try:
            probs = predictor.predict_blocking(batch)
        finally:
            state.cpu_slots.acquire()
        for (r, c), p in zip(chunk, np.asarray(probs, dtype=np.float32)[..., 0], strict=True):
            total[r : r + window, c : c + window] += np.multiply(weights, p, out=weighted)
            weight[r : r + window, c : c + window] += weights
    # Every pixel is under at least one window and a window's weights are >= 0.01^2, so
    # this is predict_scene's ``where(weight > 0, total / max(weight, 1e-12), 0)``.
    return np.divide(total, weight, out=total)


@functools.lru_cache(maxsize=8)
def _blend_weights(window: int, overlap: int) -> np.ndarray:
    from training.inference import blend_weights

    weights = blend_weights(window, overlap)
    weights.flags.writeable = False
    return weights


_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _detections(
    prob: np.ndarray, height: int, width: int, threshold: float, state: State, tile: Tile
) -> list[dict[str, Any]]:
    """Connected impacts (8-connected) of the padded map, as ``ComponentTracker`` finds them,
    from whole-array numpy operations rather than a Python step per component (an untrained
    model yields thousands); those starting in the tile, clipped to it, highest score first."""
    from scipy import ndimage

    mask = prob >= threshold
    labels, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if n == 0:
        return []
    pixels = np.flatnonzero(mask)  # raster order
    lab = labels.ravel().take(pixels) - 1
    rr, cc = np.divmod(pixels, prob.shape[1])
    area = np.bincount(lab, minlength=n)
    row_min, col_min = np.full(n, prob.shape[0]), np.full(n, prob.shape[1])
    row_max, col_max = np.zeros(n, np.int64), np.zeros(n, np.int64)
    peak = np.zeros(n, np.float32)  # float32 like the map: a casting ufunc.at is 15x slower
    np.minimum.at(row_min, lab, rr)
    np.minimum.at(col_min, lab, cc)
    np.maximum.at(row_max, lab, rr)
    np.maximum.at(col_max, lab, cc)
    np.maximum.at(peak, lab, prob.ravel().take(pixels))
    centroid_row = np.bincount(lab, weights=rr, minlength=n) / area
    centroid_col = np.bincount(lab, weights=cc, minlength=n) / area
    peak = peak.astype(np.float64)
    keep = (area >= state.bundle.config.evaluation.min_area_px) & (row_min < height) & (col_min < width)
    # Highest peak first; ties in the tracker's order (first row, first column, label).
    index = np.flatnonzero(keep)
    index = index[np.lexsort((index, col_min[index], row_min[index], -peak[index]))]
    x = y = [None] * len(index)
    if tile.transform is not None:
        xs, ys = tile.transform @ (centroid_col[index] + 0.5, centroid_row[index] + 0.5)
        x, y = xs.tolist(), ys.tolist()
    # A peak is a float32 probability: times 1e4 it is exact in float64, so numpy's
    # multiply-rint-divide rounds it exactly as Python's round(peak, 4).
    columns = zip(
        centroid_row[index].tolist(),
        centroid_col[index].tolist(),
        x,
        y,
        row_min[index].tolist(),
        col_min[index].tolist(),
        np.minimum(row_max[index], height - 1).tolist(),
        np.minimum(col_max[index], width - 1).tolist(),
        area[index].tolist(),
        np.round(peak[index], 4).tolist(),
        strict=True,
    )
    return [
        {
            "id": k,
            "centroid_row": cr,
            "centroid_col": cc_,
            "centroid_x": cx,
            "centroid_y": cy,
            "row_min": r0,
            "col_min": c0,
            "row_max": r1,
            "col_max": c1,
            "area_px": a,
            "score": score,
        }
        for k, (cr, cc_, cx, cy, r0, c0, r1, c1, a, score) in enumerate(columns)
    ]


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
