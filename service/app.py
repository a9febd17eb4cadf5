"""The FastAPI app: tile prediction with micro-batching, health, readiness, metrics.

``create_app(settings)`` builds the app; the model bundle is loaded in the lifespan, so
importing this module loads nothing. Errors of the project (``ImpactsError``) become JSON
4xx/5xx answers in one handler and the service stays up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from pydantic_core import to_json

from impacts.errors import ImpactsError, ReviewDatabaseError, ReviewError
from service.decode import Tile, TileError, decode_tile
from service.guard import Guard, error_answer
from service.metrics import Metrics
from service.predictor import BatchingPredictor, SaturatedError
from service.review.settings import ReviewSettings
from service.settings import Settings
from service.tiles import mask_geotiff, mask_png, tile_detections, tile_probabilities

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
    queued_for_review: int | None = Field(
        None, description="With review=true: how many detections were new to the review queue."
    )


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
        self.review: Any = None  # service.review.state.ReviewState, set by install_review

    def review_state(self) -> Any:
        """The review state (``service.review.state.ReviewState``) of ``POST /v1/predict?review=true``.

        Raises:
            ReviewError: The review is disabled (``IMPACTS_REVIEW_ENABLED=false``).
        """
        if self.review is None or not self.review.settings.enabled:
            raise ReviewError("review is disabled on this service (IMPACTS_REVIEW_ENABLED=false)")
        return self.review

    def review_store(self) -> Any:
        """The review store (``POST /v1/predict?review=true``).

        Raises:
            ReviewError: The review is disabled (``IMPACTS_REVIEW_ENABLED=false``).
        """
        return self.review_state().store()


async def _state(request: Request) -> State:  # async: FastAPI would run a sync one in a thread
    state: State = request.app.state.impacts
    return state


StateDep = Annotated[State, Depends(_state)]


def create_app(settings: Settings | None = None, review: ReviewSettings | None = None) -> FastAPI:
    """Build the app; the bundle at ``settings.model_path`` loads when the app starts.

    The review UI and its API (``service.review``) are part of it unless
    ``review.enabled`` is false; their store opens on first use."""
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
    from service.review.routes import install_review  # SQLAlchemy is imported only here

    state.review = install_review(app, review or ReviewSettings())

    app.add_middleware(Guard, metrics=state.metrics, body_limit=state.settings.body_limit)

    @app.exception_handler(ImpactsError)
    async def impacts_error(request: Request, exc: ImpactsError) -> JSONResponse:
        if isinstance(exc, SaturatedError | NotReadyError):  # our own words: no internals
            return error_answer(request, 503, str(exc), {"Retry-After": "1"}, public=str(exc))
        status = exc.status if isinstance(exc, TileError) else getattr(exc, "http_status", 400)
        retry = {"Retry-After": "5"} if isinstance(exc, ReviewDatabaseError) else None
        return error_answer(request, status, str(exc), retry, public=getattr(exc, "public_message", None))

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
        "image/png or image/tiff) answers the 0/1 impact mask, the GeoTIFF with the input's georeference. "
        "`review=true` also queues the detections for the analysts' review under the form field `scene`; "
        "it needs an analyst session (cookie and `X-CSRF-Token` header, as the review UI sends) or an API "
        "token (`Authorization: Bearer TOKEN`, made with `impacts review tokens add NAME`). Predicting "
        "alone needs no credential.",
        responses={
            200: {
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/tiff": {"schema": {"type": "string", "format": "binary"}},
                }
            },
            400: {},
            401: {"description": "review=true without a session or API token"},
            403: {"description": "review=true with a wrong CSRF token or API token"},
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
                                },
                                "scene": {
                                    "type": "string",
                                    "pattern": "^[A-Za-z0-9_.-]{1,128}$",
                                    "description": "Scene name, needed with review=true.",
                                },
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
        review: Annotated[
            bool,
            Query(description="Also queue the detections for review (form field `scene` names the scene)."),
        ] = False,
    ) -> Any:
        _require_ready(state)
        s = state.settings
        principal = None
        if review:  # who queues is known before a byte of the body is parsed
            from service.review.routes import queue_writer

            principal = queue_writer(request, state.review_state())
        try:
            form = await request.form(max_files=s.max_parts, max_fields=s.max_parts)
        except HTTPException:  # the body passed its limit while it arrived (service.guard)
            raise
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
        scene = None
        raw = form.get("scene")
        if review or raw is not None:  # a bad scene name is refused even when not reviewing
            from service.review.intake import check_scene_name

            checked = check_scene_name(raw if isinstance(raw, str) else None)
            scene = checked if review else None
        # Everything from decoding to the encoded answer runs in a request thread: the event
        # loop only moves bytes, and one request's numpy work never stalls the others.
        body, media_type = await asyncio.get_running_loop().run_in_executor(
            state.request_threads, _answer, state, data, wanted, scene, principal
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


def _answer(
    state: State, data: bytes, wanted: str, scene: str | None, principal: str | None
) -> tuple[bytes, str]:
    """Decode an upload, predict it and encode the answer (in a request thread); with a
    ``scene``, its detections also go into the review queue, recorded as ``principal``'s."""
    with state.cpu_slots:
        tile = decode_tile(data, state.settings.max_tile_px)
        prob = _probabilities(state, tile)  # lets go of the slot while the model runs
        height, width = tile.image.shape
        threshold = _threshold(state)
        mask = prob[:height, :width] >= threshold
        answer: dict[str, Any] = {
            "model_version": state.bundle.version,
            "height": height,
            "width": width,
            "threshold": threshold,
            "detections": [],
            "queued_for_review": None,
        }
        if wanted == "json" or scene is not None:
            min_area = state.bundle.config.evaluation.min_area_px
            answer["detections"] = tile_detections(prob, height, width, threshold, min_area, tile.transform)
        if wanted == "png":
            body, media_type = mask_png(mask), "image/png"
        elif wanted == "geotiff":
            body, media_type = mask_geotiff(mask, tile.crs, tile.transform), "image/tiff"
    if scene is not None:
        from service.review.intake import queue_tile

        answer["queued_for_review"] = queue_tile(state.review_store(), tile, answer, scene, data, principal)
    if wanted != "json":
        return body, media_type
    # Plain Python values of the right types: serialized as ``PredictResponse`` would be,
    # without validating thousands of detections again.
    return to_json(answer), "application/json"


def _probabilities(state: State, tile: Tile) -> np.ndarray:
    """Blended probabilities of the padded tile; the model calls go through the
    micro-batching predictor, and the caller's ``cpu_slots`` slot is given back while the
    model runs."""
    predictor = state.predictor
    assert predictor is not None

    def model(batch: np.ndarray) -> np.ndarray:
        state.cpu_slots.release()
        try:
            return predictor.predict_blocking(batch)
        finally:
            state.cpu_slots.acquire()

    s = state.settings
    return tile_probabilities(
        tile.image / tile.scale,
        2**state.bundle.config.model.depth,
        s.window_px,
        s.overlap_px,
        s.batch_max,
        model,
    )


def app_from_env() -> FastAPI:
    """App factory for uvicorn (``--factory``): settings from ``IMPACTS_*`` variables."""
    return create_app(Settings())
