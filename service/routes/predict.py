"""``POST /v1/predict``: detections (or the mask) of one uploaded tile, optionally queued
for review.

The route reads the multipart body (its size is counted as it arrives by
:class:`service.guard.Guard`), checks the credential of ``review=true`` before parsing it,
and hands decoding, prediction and encoding to a request thread: the event loop only moves
bytes.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from pydantic_core import to_json

from impacts.detections import Detection
from impacts.errors import SceneNameError
from impacts.scenes import SCENE_PATTERN, check_scene_name
from service.decode import Tile, TileError, decode_tile
from service.state import ServiceDep, State
from service.tiles import mask_geotiff, mask_png, tile_detections, tile_probabilities

router = APIRouter()


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


@router.post(
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
                                "pattern": SCENE_PATTERN,
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
    state: ServiceDep,
    format: Annotated[str | None, Query(pattern="^(json|png|geotiff)$")] = None,
    review: Annotated[
        bool,
        Query(description="Also queue the detections for review (form field `scene` names the scene)."),
    ] = False,
) -> Any:
    state.require_ready()
    s = state.settings
    principal = None
    if review:  # who queues is known before a byte of the body is parsed
        from service.review.http import queue_writer

        principal = queue_writer(request, state.review_state())
    try:
        form = await request.form(max_files=s.max_parts, max_fields=s.max_parts)
    except HTTPException:  # the body passed its limit while it arrived (service.guard)
        raise
    except Exception as exc:  # starlette raises on too many parts or a broken body
        raise TileError(413 if "Too many" in str(exc) else 400, f"multipart body rejected: {exc}") from exc
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
        try:
            checked = check_scene_name(raw if isinstance(raw, str) else None)
        except SceneNameError as exc:
            raise SceneNameError(f"form field `scene`: {exc}") from exc
        scene = checked if review else None
    # Everything from decoding to the encoded answer runs in a request thread: the event
    # loop only moves bytes, and one request's numpy work never stalls the others.
    body, media_type = await asyncio.get_running_loop().run_in_executor(
        state.request_threads, _answer, state, data, wanted, scene, principal
    )
    return Response(body, media_type=media_type)


def _answer(
    state: State, data: bytes, wanted: str, scene: str | None, principal: str | None
) -> tuple[bytes, str]:
    """Decode an upload, predict it and encode the answer (in a request thread); with a
    ``scene``, its detections also go into the review queue, recorded as ``principal``'s."""
    with state.cpu_slots:
        tile = decode_tile(data, state.settings.max_tile_px)
        prob = _probabilities(state, tile)  # lets go of the slot while the model runs
        height, width = tile.image.shape
        threshold = state.threshold()
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
            version = state.bundle.version
            answer["detections"] = tile_detections(
                prob,
                height,
                width,
                threshold,
                min_area,
                tile.transform,
                scene,
                version,
                merge_distance_px=state.bundle.config.evaluation.merge_distance_px,
            )
        if wanted == "png":
            body, media_type = mask_png(mask), "image/png"
        elif wanted == "geotiff":
            body, media_type = mask_geotiff(mask, tile.crs, tile.transform), "image/tiff"
    if scene is not None:
        from service.review.intake import queue_tile

        answer["queued_for_review"] = queue_tile(
            state.review_state().store(), tile, answer, scene, data, principal
        )
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
