"""Detections of a tile uploaded to ``POST /v1/predict?review=true``, as review-queue items.

The uploaded tile is all the service has, so the crop, mask and context views are cut from
it (:func:`service.review.importer.render_views`, the same views as an import); the box is
in the tile's pixels and the georeference is the tile's (identity when it has none, so map
coordinates are then pixel coordinates). The key ``SCENE:DIGEST-KKKKK@VERSION`` makes a
second upload of the same tile add nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from impacts.detections import Detection
from impacts.scenes import check_scene_name
from service.decode import Tile
from service.review.schemas import DetectionIn
from service.review.store import ReviewStore
from tiling.windows import Box

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def tile_digest(data: bytes) -> str:
    """A short content digest of an uploaded tile (16 hex characters of SHA-256)."""
    return hashlib.sha256(data).hexdigest()[:16]


def tile_review_items(
    image: np.ndarray,
    detections: Sequence[Detection],
    scene: str,
    model_version: str,
    digest: str,
    transform: Any = None,
    crs: Any = None,
) -> list[DetectionIn]:
    """Review items for the detections of one uploaded tile.

    Args:
        image: The tile's pixels (height, width), as decoded (uint8, uint16 or float).
        detections: The predict answer's detection records, in tile pixels (the key of the
            k-th is ``SCENE:DIGEST-k@VERSION``).
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
    for k, d in enumerate(detections):
        views = render_views(read, height, width, Box.of(d.properties()))
        key = f"{scene}:{digest}-{k:05d}@{model_version}"
        items.append(
            DetectionIn.of(
                d, key=key, scene=scene, crs_wkt=crs_wkt, transform=affine, views=views, source="service"
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
