"""Fragment merging: the pieces of one blast zone become one detection.

A thresholded probability map often breaks one impact into several components: the dark
spots of a cluster that share one halo, or a faint blast zone whose middle dips below the
threshold. An analyst should see one candidate per impact, so after component finding,
detections whose boxes lie close together are merged.

Two detections are *near* when the gap between their inclusive boxes is at most
``merge_distance_px``, the gap counting the pixels strictly between the boxes along rows
or columns, whichever is more (Chebyshev, like the 8-connectivity of the components)::

    gap_rows = max(0, b.row_min - a.row_max - 1, a.row_min - b.row_max - 1)
    gap_cols = max(0, b.col_min - a.col_max - 1, a.col_min - b.col_max - 1)
    gap      = max(gap_rows, gap_cols)          # 0 when the boxes touch or overlap

Groups are the connected sets of the "near" relation over the fragments' own boxes (single
linkage: A near B and B near C merges all three, and the result does not depend on the
order of the list). A group becomes one detection: the union of the boxes, the sum of the
areas, the area-weighted mean of the centroids (the centroid of all its pixels) and the
highest peak. ``merge_distance_px = 0`` turns merging off: every component stays a
detection, as before merging existed (even two whose boxes overlap).

Merged detections are ordered by the first pixel of their union box (row, then column),
ties by their first fragment's place in the input, which is the order
:class:`tiling.components.ComponentTracker` returns components in; their ids count up in
that order.

Streaming: a scene's components are finished band by band, but a merge may join fragments
of different bands, so merging runs once over the scene's finished detections (a list of a
few hundred, rarely thousands; nothing of the raster). Pairs are found on a grid of cells
(each box, grown by half the merge distance, is entered in the cells it covers; only boxes
sharing a cell are compared), so the cost grows with the number of detections and not
with the scene's size or shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tiling.components import Impact, ImpactColumns
from tiling.windows import Box

#: Smallest side of a pair-finding cell in px.
_MIN_CELL_PX = 8


def box_gap(a: Box, b: Box) -> int:
    """Pixels strictly between two boxes along rows or columns, whichever is more; 0 when
    they touch or overlap (see the module for the formula)."""
    gap_rows = max(0, b.row_min - a.row_max - 1, a.row_min - b.row_max - 1)
    gap_cols = max(0, b.col_min - a.col_max - 1, a.col_min - b.col_max - 1)
    return max(gap_rows, gap_cols)


def _candidate_pairs(columns: ImpactColumns, merge_distance_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``i < j`` of detections whose grown boxes share a grid cell, each pair
    once: every near pair is among them (boxes grown by ``h = ceil((d + 1) / 2)`` px on each
    side overlap when their gap is at most ``d``).

    Cells are about as large as a typical grown box, so a box enters a few cells and a cell
    holds a few boxes even where a poor model leaves thousands of specks; a pair is kept
    only in the cell holding the top-left corner of the two grown boxes' overlap.
    """
    grow = (merge_distance_px + 2) // 2
    sides = np.maximum(columns.row_max - columns.row_min, columns.col_max - columns.col_min) + 1 + 2 * grow
    cell = max(_MIN_CELL_PX, int(np.median(sides)))
    r0 = (columns.row_min - grow) // cell
    r1 = (columns.row_max + grow) // cell
    c0 = (columns.col_min - grow) // cell
    c1 = (columns.col_max + grow) // cell
    n_cols = c1 - c0 + 1
    counts = (r1 - r0 + 1) * n_cols
    det = np.repeat(np.arange(len(columns)), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    cell_row = np.repeat(r0, counts) + k // np.repeat(n_cols, counts)
    cell_col = np.repeat(c0, counts) + k % np.repeat(n_cols, counts)
    order = np.lexsort((det, cell_col, cell_row))
    det, cell_row, cell_col = det[order], cell_row[order], cell_col[order]
    new_cell = np.ones(len(det), dtype=bool)
    new_cell[1:] = (cell_row[1:] != cell_row[:-1]) | (cell_col[1:] != cell_col[:-1])
    starts = np.flatnonzero(new_cell)
    sizes = np.diff(np.append(starts, len(det)))
    # Entry p of a cell of size m starting at s pairs with the entries p+1 .. s+m-1.
    partners = np.repeat(starts + sizes, sizes) - np.arange(len(det)) - 1
    first = np.repeat(np.arange(len(det)), partners)
    offsets = np.arange(int(partners.sum())) - np.repeat(np.cumsum(partners) - partners, partners)
    second = first + 1 + offsets
    i, j = det[first], det[second]
    own = (cell_row[first] == np.maximum(r0[i], r0[j])) & (cell_col[first] == np.maximum(c0[i], c0[j]))
    return i[own], j[own]


def fragment_groups(columns: ImpactColumns, merge_distance_px: int) -> np.ndarray:
    """The group of each detection (see the module for the rule).

    Args:
        columns: The detections.
        merge_distance_px: Largest box gap that merges; 0 = no merging.

    Returns:
        An int array: group ``0, 1, ...`` of each detection, groups numbered by their first
        member in input order (``arange(n)`` when nothing merges).

    Raises:
        ValueError: ``merge_distance_px`` is negative.
    """
    if merge_distance_px < 0:
        raise ValueError(f"merge_distance_px must be >= 0, got {merge_distance_px}")
    n = len(columns)
    if merge_distance_px == 0 or n < 2:
        return np.arange(n)
    i, j = _candidate_pairs(columns, merge_distance_px)
    gap_rows = np.maximum.reduce(
        [
            np.zeros(len(i), np.int64),
            columns.row_min[j] - columns.row_max[i] - 1,
            columns.row_min[i] - columns.row_max[j] - 1,
        ]
    )
    gap_cols = np.maximum.reduce(
        [
            np.zeros(len(i), np.int64),
            columns.col_min[j] - columns.col_max[i] - 1,
            columns.col_min[i] - columns.col_max[j] - 1,
        ]
    )
    near = np.maximum(gap_rows, gap_cols) <= merge_distance_px
    graph = coo_matrix((np.ones(int(near.sum()), dtype=np.int8), (i[near], j[near])), shape=(n, n))
    # Labels are handed out in node order, so group g's first member comes before group g+1's.
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def merge_columns(columns: ImpactColumns, merge_distance_px: int) -> ImpactColumns:
    """Merge near detections (see the module): union box, summed area, area-weighted
    centroid, highest peak; ordered by first pixel, ties by first member.

    Args:
        columns: The detections, in component order (first pixel, row then column).
        merge_distance_px: Largest box gap that merges; 0 returns ``columns`` unchanged.

    Returns:
        The merged detections.

    Raises:
        ValueError: ``merge_distance_px`` is negative.
    """
    groups = fragment_groups(columns, merge_distance_px)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups == len(columns):
        return columns
    area = np.bincount(groups, weights=columns.area, minlength=n_groups)
    row_min = np.full(n_groups, np.iinfo(np.int64).max, dtype=np.int64)
    col_min = np.full(n_groups, np.iinfo(np.int64).max, dtype=np.int64)
    row_max = np.full(n_groups, np.iinfo(np.int64).min, dtype=np.int64)
    col_max = np.full(n_groups, np.iinfo(np.int64).min, dtype=np.int64)
    peak = np.full(n_groups, -np.inf)
    np.minimum.at(row_min, groups, columns.row_min)
    np.minimum.at(col_min, groups, columns.col_min)
    np.maximum.at(row_max, groups, columns.row_max)
    np.maximum.at(col_max, groups, columns.col_max)
    np.maximum.at(peak, groups, columns.peak)
    merged = ImpactColumns(
        row_min=row_min,
        row_max=row_max,
        col_min=col_min,
        col_max=col_max,
        area=area.astype(np.int64),
        centroid_row=np.bincount(groups, weights=columns.area * columns.centroid_row, minlength=n_groups)
        / area,
        centroid_col=np.bincount(groups, weights=columns.area * columns.centroid_col, minlength=n_groups)
        / area,
        peak=peak,
    )
    return merged.take(np.lexsort((np.arange(n_groups), col_min, row_min)))


def merge_fragments(impacts: Sequence[Impact], merge_distance_px: int) -> list[Impact]:
    """Merge near detections of a list (see :func:`merge_columns`).

    Args:
        impacts: The components, in the order a :class:`~tiling.components.ComponentTracker`
            returns them.
        merge_distance_px: Largest box gap that merges; 0 returns the list unchanged.

    Returns:
        The detections after merging.

    Raises:
        ValueError: ``merge_distance_px`` is negative.
    """
    if merge_distance_px < 0:
        raise ValueError(f"merge_distance_px must be >= 0, got {merge_distance_px}")
    if merge_distance_px == 0 or len(impacts) < 2:
        return list(impacts)
    columns = ImpactColumns.of(impacts)
    merged = merge_columns(columns, merge_distance_px)
    return list(impacts) if merged is columns else merged.impacts()
