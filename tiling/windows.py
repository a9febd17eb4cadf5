"""Window geometry: pure functions on pixel rows and columns, no file access.

Conventions: ``row``/``col`` are the top-left pixel of a window, extents are inclusive
pixel ranges ``[lo, hi]``, and a patch is ``patch_px`` square.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Window:
    """A window of a scene: top-left pixel ``(row, col)`` and its size in pixels."""

    row: int
    col: int
    height: int
    width: int

    def contains(self, box: Box) -> bool:
        """Whether ``box`` lies whole inside the window."""
        return (
            box.row_min >= self.row
            and box.col_min >= self.col
            and box.row_max < self.row + self.height
            and box.col_max < self.col + self.width
        )

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(row, col, height, width)``, as the review store keeps it."""
        return self.row, self.col, self.height, self.width


@dataclass(frozen=True, kw_only=True)
class Box:
    """Inclusive pixel bounding box ``[row_min, row_max] x [col_min, col_max]``; built with
    keywords (file formats order the four fields differently)."""

    row_min: int
    row_max: int
    col_min: int
    col_max: int

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Box:
        """The box of a record (a detection, a CSV row) with ``row_min``, ``col_min``,
        ``row_max``, ``col_max`` fields (ints or strings of ints)."""
        return cls(
            row_min=int(record["row_min"]),
            row_max=int(record["row_max"]),
            col_min=int(record["col_min"]),
            col_max=int(record["col_max"]),
        )

    @property
    def height(self) -> int:
        return self.row_max - self.row_min + 1

    @property
    def width(self) -> int:
        return self.col_max - self.col_min + 1

    def centred(self, size_px: int, height: int, width: int) -> Window:
        """The ``size_px`` square centred on the box, moved to lie inside a ``height x width``
        scene (an axis shorter than ``size_px`` gives the whole axis).

        Along each axis the window starts at ``(lo + hi + 1 - size_px) // 2`` (the box centred,
        the spare pixels split evenly, one more before the box when odd), clamped to
        ``[0, size - extent]`` with ``extent = min(size_px, size)``. A box that fits is then
        always inside the window (clamping only moves the window towards the box); a larger
        one is cut around its centre. The review's crops and the patches cut from reviewed
        detections use this one rule, so an analyst's crop is the patch that is trained on.
        """

        def axis(lo: int, hi: int, size: int) -> tuple[int, int]:
            extent = min(size_px, size)
            return max(0, min((lo + hi + 1 - size_px) // 2, size - extent)), extent

        row, window_h = axis(self.row_min, self.row_max, height)
        col, window_w = axis(self.col_min, self.col_max, width)
        return Window(row=row, col=col, height=window_h, width=window_w)


def crop_start_range(lo: int, hi: int, patch_px: int, size: int) -> tuple[int, int]:
    """Feasible start positions (inclusive) of a crop of ``patch_px`` along one axis.

    When the extent ``[lo, hi]`` fits (``hi - lo + 1 <= patch_px``), every start in
    ``[hi - patch_px + 1, lo]`` contains it whole; otherwise the crop stays inside the
    extent, ``[lo, hi - patch_px + 1]``. Both are intersected with the scene,
    ``[0, size - patch_px]``; the result is never empty when ``0 <= lo <= hi < size`` and
    ``patch_px <= size``.

    Raises:
        ValueError: The axis is shorter than the patch or the extent leaves it.
    """
    if patch_px > size:
        raise ValueError(f"axis of {size} px is shorter than a {patch_px} px patch")
    if not 0 <= lo <= hi < size:
        raise ValueError(f"extent [{lo}, {hi}] is outside [0, {size})")
    first, last = (hi - patch_px + 1, lo) if hi - lo + 1 <= patch_px else (lo, hi - patch_px + 1)
    return max(first, 0), min(last, size - patch_px)


def random_crop(
    box: Box, patch_px: int, height: int, width: int, rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left ``(row, col)`` of a random-offset crop around ``box``.

    The offset is uniform over all crops that contain the box whole (or, for a box larger
    than the patch, that lie inside it), so an impact's position inside its patch is uniform
    rather than stuck at a border.
    """
    r_first, r_last = crop_start_range(box.row_min, box.row_max, patch_px, height)
    c_first, c_last = crop_start_range(box.col_min, box.col_max, patch_px, width)
    return int(rng.integers(r_first, r_last + 1)), int(rng.integers(c_first, c_last + 1))


@dataclass(frozen=True)
class CellGrid:
    """Non-overlapping ``cell_px`` cells starting at ``(row_offset, col_offset)``; only
    cells wholly inside the scene count. Cell ``(i, j)`` covers rows
    ``row_offset + i * cell_px`` to ``row_offset + (i + 1) * cell_px - 1``."""

    height: int
    width: int
    cell_px: int
    row_offset: int
    col_offset: int

    @property
    def shape(self) -> tuple[int, int]:
        return (
            max(0, (self.height - self.row_offset) // self.cell_px),
            max(0, (self.width - self.col_offset) // self.cell_px),
        )

    def origin(self, i: int, j: int) -> tuple[int, int]:
        """Top-left pixel of cell ``(i, j)``."""
        return self.row_offset + i * self.cell_px, self.col_offset + j * self.cell_px


def random_grid(height: int, width: int, cell_px: int, rng: np.random.Generator) -> CellGrid:
    """A cell grid with a random offset, so cell borders fall anywhere in the scene."""
    return CellGrid(height, width, cell_px, int(rng.integers(0, cell_px)), int(rng.integers(0, cell_px)))


def cell_sums(values: np.ndarray, row0: int, grid: CellGrid) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell sums of a stripe of a scene-wide quantity (e.g. no-data indicator).

    Rows are summed first, by cell row (vectorised over the whole width), then columns, by
    cell column, on the ``cell_px`` times smaller result.

    Args:
        values: 0/1 indicator stripe (bool or uint8) of shape ``(rows, grid.width)``
            starting at scene row ``row0``.
        row0: Scene row of the stripe's first row.
        grid: The cell grid.

    Returns:
        ``(cell_rows, sums)``: the cell-row indices the stripe touches and an int64 array of
        shape ``(len(cell_rows), n_cell_cols)`` with the stripe's contribution to each, to be
        added to running totals (a cell row split by a stripe boundary gets two parts).
    """
    n_rows, n_cols = grid.shape
    lo_row = max(row0, grid.row_offset)
    hi_row = min(row0 + values.shape[0], grid.row_offset + n_rows * grid.cell_px)
    if n_cols == 0 or lo_row >= hi_row:
        return np.zeros(0, dtype=np.int64), np.zeros((0, n_cols), dtype=np.int64)
    first = (lo_row - grid.row_offset) // grid.cell_px
    last = (hi_row - 1 - grid.row_offset) // grid.cell_px
    cell_rows = np.arange(first, last + 1)
    bounds = np.clip(grid.row_offset + np.arange(first, last + 2) * grid.cell_px, lo_row, hi_row) - row0
    indicator = values.view(np.uint8) if values.dtype == bool else values
    # Sum each cell row's rows along axis 0 (contiguous, vectorised over the width); a
    # uint16 accumulator holds up to 65,535 rows of 0/1 values.
    by_row = np.empty((len(cell_rows), values.shape[1]), dtype=np.uint16)
    for k in range(len(cell_rows)):
        np.sum(indicator[bounds[k] : bounds[k + 1]], axis=0, dtype=np.uint16, out=by_row[k])
    c0 = grid.col_offset
    sums = (
        by_row[:, c0 : c0 + n_cols * grid.cell_px]
        .reshape(len(cell_rows), n_cols, grid.cell_px)
        .sum(axis=2, dtype=np.int64)
    )
    return cell_rows, sums


def stripe_rows(width: int, block_rows: int, target_px: int, min_rows: int) -> int:
    """Rows per read stripe: about ``target_px`` pixels, a multiple of the file's block
    height, and at least ``min_rows``."""
    rows = max(min_rows, target_px // max(width, 1))
    return max(block_rows, math.ceil(rows / block_rows) * block_rows)
