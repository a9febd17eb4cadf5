"""One streaming pass over a scene: impacts, and per-cell impact and no-data counts.

Reads the image and the mask in full-width stripes of whole blocks (block-aligned reads are
the cheapest GDAL can do), keeping only one stripe, one row of labels and the coarse cell
grid in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiling.components import ComponentTracker, Impact
from tiling.io import SceneInfo, read_window
from tiling.windows import CellGrid, cell_sums, stripe_rows


@dataclass
class ScanResult:
    """What the scan learnt: impacts and per-cell pixel counts on ``grid``."""

    grid: CellGrid
    impacts: list[Impact]
    impact_px: np.ndarray
    nodata_px: np.ndarray
    nodata_total_px: int


def scan_scene(
    image: Any,
    mask: Any,
    info: SceneInfo,
    grid: CellGrid,
    target_px: int,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """Stream the scene once.

    Args:
        image: Open image dataset.
        mask: Open mask dataset on the same grid.
        info: The scene's grid and format.
        grid: Cell grid to count impact and no-data pixels on.
        target_px: About how many pixels one stripe holds.
        progress: Called with the number of rows done after each stripe.

    Returns:
        The scan result.
    """
    tracker = ComponentTracker(info.width)
    impact_px = np.zeros(grid.shape, dtype=np.int64)
    nodata_px = np.zeros(grid.shape, dtype=np.int64)
    nodata_total = 0
    rows = stripe_rows(info.width, info.block_shape[0], target_px, min_rows=1)
    nodata_value = np.array(info.nodata).astype(info.dtype)
    for row0 in range(0, info.height, rows):
        height = min(rows, info.height - row0)
        stripe = read_window(image, row0, 0, height, info.width)
        labels = read_window(mask, row0, 0, height, info.width)
        tracker.add_stripe(labels, row0)
        is_impact = labels != 0
        if is_impact.any():
            idx, sums = cell_sums(is_impact, row0, grid)
            np.add.at(impact_px, idx, sums)
        is_nodata = stripe == nodata_value
        count = int(np.count_nonzero(is_nodata))
        if count:
            nodata_total += count
            idx, sums = cell_sums(is_nodata, row0, grid)
            np.add.at(nodata_px, idx, sums)
        if progress:
            progress(height)
    return ScanResult(grid, tracker.impacts(), impact_px, nodata_px, nodata_total)
