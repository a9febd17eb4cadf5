"""Detections of a tile uploaded to ``POST /v1/predict?review=true``, as review-queue items.

The uploaded tile is all the service has, so the crop, mask and context views are cut from
it (:func:`service.review.importer.render_views`, the same views as an import); the box is
in the tile's pixels and the georeference is the tile's (identity when it has none, so map
coordinates are then pixel coordinates). The key ``SCENE:DIGEST-KKKKK@VERSION`` makes a
second upload of the same tile add nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from impacts.errors import SceneNameError
from service.decode import Tile
from service.review.schemas import SCENE_PATTERN, DetectionIn
from service.review.store import ReviewStore
from tiling.windows import Box

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_SCENE = re.compile(SCENE_PATTERN)


def check_scene_name(scene: str | None) -> str:
    """Validate a scene name from a request.

    Args:
        scene: The name, e.g. the ``scene`` form field of a predict request.

    Returns:
        The name unchanged.

    Raises:
        SceneNameError: Missing, or not 1-128 letters, digits, ``_``, ``.`` or ``-``.
    """
    if scene is None or not _SCENE.fullmatch(scene):
        raise SceneNameError(
            f"scene name {scene!r} refused: send the form field `scene` with 1-128 letters, digits, "
            "'_', '.' or '-' (no paths)"
        )
    return scene


def tile_digest(data: bytes) -> str:
    """A short content digest of an uploaded tile (16 hex characters of SHA-256)."""
    return hashlib.sha256(data).hexdigest()[:16]


def tile_review_items(
    image: np.ndarray,
    detections: Sequence[dict[str, Any]],
    scene: str,
    model_version: str,
    digest: str,
    transform: Any = None,
    crs: Any = None,
) -> list[DetectionIn]:
    """Review items for the detections of one uploaded tile.

    Args:
        image: The tile's pixels (height, width), as decoded (uint8, uint16 or float).
        detections: The predict answer's detections (id, row_min, col_min, row_max, col_max,
            centroid_row, centroid_col, centroid_x, centroid_y, area_px, score) in tile pixels.
        scene: Scene name the analyst sees (validated).
        model_version: Version of the model that predicted.
        digest: :func:`tile_digest` of the upload.
        transform: The tile's affine (GeoTIFF upload) or None.
        crs: The tile's CRS (rasterio CRS) or None.

    Returns:
        One :class:`DetectionIn` per detection, with its crop, mask and context PNGs.

    Raises:
        SceneNameError: ``scene`` is not a plain scene name.
    """
    from service.review.importer import render_views

    check_scene_name(scene)
    height, width = image.shape[:2]
    affine = tuple(float(v) for v in tuple(transform)[:6]) if transform is not None else IDENTITY
    crs_wkt = crs.to_wkt() if crs is not None else None

    def read(row: int, col: int, h: int, w: int) -> np.ndarray:
        return np.asarray(image[row : row + h, col : col + w])

    items = []
    for d in detections:
        box = Box(d["row_min"], d["row_max"], d["col_min"], d["col_max"])
        crop, mask, context, window = render_views(read, height, width, box)
        x, y = d.get("centroid_x"), d.get("centroid_y")
        if x is None or y is None:  # no georeference: map coordinates are pixel centres
            x, y = d["centroid_col"] + 0.5, d["centroid_row"] + 0.5
        items.append(
            DetectionIn(
                key=f"{scene}:{digest}-{int(d['id']):05d}@{model_version}",
                scene=scene,
                row_min=box.row_min,
                col_min=box.col_min,
                row_max=box.row_max,
                col_max=box.col_max,
                centroid_row=d["centroid_row"],
                centroid_col=d["centroid_col"],
                centroid_x=x,
                centroid_y=y,
                area_px=d["area_px"],
                score=min(max(float(d["score"]), 0.0), 1.0),
                model_version=model_version,
                crs_wkt=crs_wkt,
                transform=affine,
                window=window,
                crop_png=crop,
                mask_png=mask,
                context_png=context,
                source="service",
            )
        )
    return items


def queue_tile(
    store: ReviewStore,
    tile: Tile,
    answer: dict[str, Any],
    scene: str,
    data: bytes,
    principal: str | None = None,
) -> int:
    """Put the detections of a predict answer into the review queue.

    Args:
        store: The review store (``app.state.review.store()``).
        tile: The decoded upload.
        answer: The JSON answer of ``POST /v1/predict`` (``model_version``, ``detections``).
        scene: Scene name from the request's form field ``scene``.
        data: The uploaded bytes (their digest keys the detections: a second upload adds nothing).
        principal: Who queues them (``token:NAME`` or an analyst), recorded in the audit.

    Returns:
        How many detections were new to the queue.

    Raises:
        SceneNameError: ``scene`` is not a plain scene name.
    """
    items = tile_review_items(
        tile.image,
        answer["detections"],
        scene,
        answer["model_version"],
        tile_digest(data),
        tile.transform,
        tile.crs,
    )
    return store.add_detections(items, analyst=principal)
