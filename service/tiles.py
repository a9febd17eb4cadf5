"""Tile inference for the service: blended probabilities, detections, encoded masks.

Pure functions of arrays (the model is a callable), used by the routes in a request
thread. The windows, batches, blending and float operations are those of
``training.inference.predict_scene`` (a test checks that the maps and detections are
identical), but on the whole tile in memory at once: a tile is small, so nothing streams.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import Any

import numpy as np

from impacts.detections import Detection

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def tile_probabilities(
    image: np.ndarray,
    multiple: int,
    window_px: int,
    overlap_px: int,
    batch_max: int,
    model: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Blended probabilities of ``image`` (float, scaled to [0, 1]) padded with zeros up to
    a multiple of ``multiple`` and at least one window.

    Args:
        image: ``(H, W)`` tile.
        multiple: The model's size multiple (``2**depth``).
        window_px: Window side (raised to ``multiple`` when smaller).
        overlap_px: Overlap of neighbouring windows (at most half a window), blended away.
        batch_max: Windows per model call.
        model: ``(N, w, w, 1) -> (N, w, w, 1)`` probabilities.

    Returns:
        The ``(H', W')`` float32 map of the padded tile.
    """
    from training.inference import WindowPlan

    height, width = image.shape
    window = max(window_px, multiple)
    padded_h = max(window, -(-height // multiple) * multiple)
    padded_w = max(window, -(-width // multiple) * multiple)
    padded = np.zeros((padded_h, padded_w), dtype=np.float32)
    padded[:height, :width] = image
    overlap = min(overlap_px, window // 2)
    stride = window - overlap
    weights = _blend_weights(window, overlap)
    starts = [
        (r, c)
        for r in WindowPlan(padded_h, window, stride).starts()
        for c in WindowPlan(padded_w, window, stride).starts()
    ]
    total = np.zeros_like(padded)
    weight = np.zeros_like(padded)
    weighted = np.empty_like(weights)
    for first in range(0, len(starts), batch_max):
        chunk = starts[first : first + batch_max]
        batch = np.stack([padded[r : r + window, c : c + window] for r, c in chunk])[..., None]
        probs = model(batch)
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


def tile_detections(
    prob: np.ndarray,
    height: int,
    width: int,
    threshold: float,
    min_area_px: int,
    transform: Any = None,
    scene: str | None = None,
    model_version: str = "",
    merge_distance_px: int = 0,
) -> list[Detection]:
    """Connected impacts (8-connected) of the padded map, as ``ComponentTracker`` finds them,
    from whole-array numpy operations rather than a Python step per component (an untrained
    model yields thousands); fragments merged and the minimum area applied as in
    ``predict_scene`` (``merge_distance_px``, :mod:`tiling.fragments`); those starting in the
    ``height x width`` tile, clipped to it, highest score first, as detection records (ids
    ``SCENE-00000`` or ``tile-00000``, map fields when ``transform`` is given), exactly as
    ``impacts predict`` writes them."""
    from scipy import ndimage

    from tiling.components import ImpactColumns
    from tiling.fragments import merge_columns

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
    if merge_distance_px:
        # Over every component of the padded map, as predict_scene merges over the scene.
        merged = merge_columns(
            ImpactColumns(
                row_min=row_min,
                row_max=row_max,
                col_min=col_min,
                col_max=col_max,
                area=area,
                centroid_row=centroid_row,
                centroid_col=centroid_col,
                peak=peak,
            ),
            merge_distance_px,
        )
        row_min, row_max, col_min, col_max = merged.row_min, merged.row_max, merged.col_min, merged.col_max
        area, centroid_row, centroid_col, peak = (
            merged.area,
            merged.centroid_row,
            merged.centroid_col,
            merged.peak,
        )
    keep = (area >= min_area_px) & (row_min < height) & (col_min < width)
    # Highest peak first; ties in the tracker's order (first row, first column, label).
    index = np.flatnonzero(keep)
    index = index[np.lexsort((index, col_min[index], row_min[index], -peak[index]))]
    transform_values = tuple(transform)[:6] if transform is not None else None
    columns = zip(
        centroid_row[index].tolist(),
        centroid_col[index].tolist(),
        row_min[index].tolist(),
        col_min[index].tolist(),
        np.minimum(row_max[index], height - 1).tolist(),
        np.minimum(col_max[index], width - 1).tolist(),
        area[index].tolist(),
        peak[index].tolist(),
        strict=True,
    )
    return [
        Detection.locate(
            id=f"{scene or 'tile'}-{k:05d}",
            scene=scene,
            row_min=r0,
            col_min=c0,
            row_max=r1,
            col_max=c1,
            centroid_row=cr,
            centroid_col=cc_,
            area_px=a,
            score=score,
            model_version=model_version,
            transform=transform_values,
        )
        for k, (cr, cc_, r0, c0, r1, c1, a, score) in enumerate(columns)
    ]


def mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as an 8-bit PNG (0/255)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_geotiff(mask: np.ndarray, crs: Any, transform: Any) -> bytes:
    """A boolean mask as a 0/1 deflate GeoTIFF with the tile's CRS and transform (if any)."""
    from rasterio.io import MemoryFile

    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": mask.shape[0],
        "width": mask.shape[1],
        "count": 1,
        "dtype": "uint8",
        "crs": crs,
        "compress": "deflate",
    }
    if transform is not None:
        profile["transform"] = transform
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(mask.astype(np.uint8), 1)
        return bytes(memory.read())
