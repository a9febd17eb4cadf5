"""Connected components of an impact mask streamed stripe by stripe.

Each stripe is labelled with 8-connectivity; labels that touch across a stripe boundary
(directly or diagonally) are joined with a union-find, so an impact split by a stripe (or
window) boundary is still one impact. Memory: one stripe plus one row of labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tiling.windows import Box

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Impact:
    """One connected impact region of a mask."""

    id: int
    box: Box
    area_px: int
    centroid_row: float
    centroid_col: float
    peak: float = 0.0  # highest ``values`` pixel of the region (0 when none were given)


@dataclass(frozen=True)
class ImpactColumns:
    """Impacts as columns, one entry per impact: inclusive boxes, areas, centroids and
    peaks (what :class:`ComponentTracker` keeps, what fragment merging and the service's
    vectorised tile path work on; no Python object per impact)."""

    row_min: np.ndarray
    row_max: np.ndarray
    col_min: np.ndarray
    col_max: np.ndarray
    area: np.ndarray
    centroid_row: np.ndarray
    centroid_col: np.ndarray
    peak: np.ndarray

    def __len__(self) -> int:
        return len(self.row_min)

    @classmethod
    def of(cls, impacts: Sequence[Impact]) -> ImpactColumns:
        """The columns of a list of impacts."""
        return cls(
            row_min=np.array([d.box.row_min for d in impacts], dtype=np.int64),
            row_max=np.array([d.box.row_max for d in impacts], dtype=np.int64),
            col_min=np.array([d.box.col_min for d in impacts], dtype=np.int64),
            col_max=np.array([d.box.col_max for d in impacts], dtype=np.int64),
            area=np.array([d.area_px for d in impacts], dtype=np.int64),
            centroid_row=np.array([d.centroid_row for d in impacts], dtype=np.float64),
            centroid_col=np.array([d.centroid_col for d in impacts], dtype=np.float64),
            peak=np.array([d.peak for d in impacts], dtype=np.float64),
        )

    def impacts(self, first_id: int = 0) -> list[Impact]:
        """The columns as impacts, ids counting up from ``first_id`` in column order."""
        columns = zip(
            self.row_min.tolist(),
            self.row_max.tolist(),
            self.col_min.tolist(),
            self.col_max.tolist(),
            self.area.tolist(),
            self.centroid_row.tolist(),
            self.centroid_col.tolist(),
            self.peak.tolist(),
            strict=True,
        )
        return [
            Impact(first_id + k, Box(row_min=r0, row_max=r1, col_min=c0, col_max=c1), area, cr, cc, peak)
            for k, (r0, r1, c0, c1, area, cr, cc, peak) in enumerate(columns)
        ]

    def take(self, index: np.ndarray) -> ImpactColumns:
        """The impacts at ``index`` (an integer or boolean array), in that order."""
        return ImpactColumns(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})


# Columns of the tracker's per-label statistics.
_AREA, _RMIN, _RMAX, _CMIN, _CMAX, _SUM_R, _SUM_C, _PEAK = range(8)


class ComponentTracker:
    """Accumulates components over consecutive stripes of a mask (top to bottom).

    Each labelled run of rows adds one row of statistics per label (area, box, coordinate
    sums, peak) to numpy arrays; labels joined across stripe boundaries share a root in a
    union-find (the smallest label of the component). Components are summed from those
    arrays with whole-array operations, so a scene with hundreds of thousands of specks (a
    poor model at a low threshold) costs no Python step per speck. Sums run in label order,
    so the figures do not depend on how they are computed.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self._parent: list[int] = []
        self._chunks: list[np.ndarray] = []  # (n, 8) statistics of the labels, in label order
        self._stats = np.zeros((0, 8))
        self._last_row = np.zeros(width, dtype=np.int64)  # global id + 1 of the last row seen
        self._next_row = 0
        self._emitted = np.zeros(0, dtype=bool)  # per label: its component was returned
        self._next_id = 0

    def _find(self, a: int) -> int:
        root = a
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[a] != root:
            self._parent[a], a = root, self._parent[a]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def add_stripe(self, mask: np.ndarray, row0: int, values: np.ndarray | None = None) -> None:
        """Label one stripe (``mask`` non-zero = impact) starting at scene row ``row0``;
        ``values`` (same shape, e.g. probabilities) gives each region its peak.

        Raises:
            ValueError: Stripes are not consecutive or have the wrong width.
        """
        if row0 != self._next_row or mask.shape[1] != self.width:
            raise ValueError(
                f"stripe at row {row0} (width {mask.shape[1]}) does not follow row {self._next_row}"
            )
        self._next_row = row0 + mask.shape[0]
        fg = mask if mask.dtype == bool else mask != 0
        first_row = np.zeros(self.width, dtype=np.int64)
        last_row = np.zeros(self.width, dtype=np.int64)
        rows_any = fg.any(axis=1)
        # Label each run of rows that holds impact pixels, cropped to its columns: an empty
        # row separates components, and impacts are a tiny share of a scene.
        edges = np.flatnonzero(np.diff(np.concatenate([[False], rows_any, [False]]).astype(np.int8)))
        for r_lo, r_hi in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
            cols = np.flatnonzero(fg[r_lo:r_hi].any(axis=0))
            c_lo, c_hi = int(cols[0]), int(cols[-1]) + 1
            labels, n = ndimage.label(fg[r_lo:r_hi, c_lo:c_hi], structure=EIGHT_CONNECTED)
            base = len(self._parent)
            self._parent.extend(range(base, base + n))
            rr, cc = np.nonzero(labels)
            lab = labels[rr, cc] - 1
            stats = np.empty((n, 8))
            stats[:, _AREA] = np.bincount(lab, minlength=n)
            stats[:, _SUM_R] = np.bincount(lab, weights=rr + (row0 + r_lo), minlength=n)
            stats[:, _SUM_C] = np.bincount(lab, weights=cc + c_lo, minlength=n)
            # Pixels come in raster order: a label's first pixel holds its top row, its last
            # pixel its bottom row.
            first = np.full(n, len(lab))
            np.minimum.at(first, lab, np.arange(len(lab)))
            last = np.zeros(n, dtype=np.int64)
            np.maximum.at(last, lab, np.arange(len(lab)))
            stats[:, _RMIN] = rr[first] + row0 + r_lo
            stats[:, _RMAX] = rr[last] + row0 + r_lo
            col_min = np.full(n, c_hi - c_lo)
            col_max = np.zeros(n, dtype=np.int64)
            np.minimum.at(col_min, lab, cc)
            np.maximum.at(col_max, lab, cc)
            stats[:, _CMIN] = col_min + c_lo
            stats[:, _CMAX] = col_max + c_lo
            peak = np.zeros(n)
            if values is not None:
                # float64 values: a ufunc.at that casts is an order of magnitude slower.
                np.maximum.at(peak, lab, values[rr + r_lo, cc + c_lo].astype(np.float64))
            stats[:, _PEAK] = peak
            self._chunks.append(stats)
            if r_lo == 0:
                first_row[c_lo:c_hi] = np.where(labels[0] > 0, labels[0] + base, 0)
            if r_hi == mask.shape[0]:
                last_row[c_lo:c_hi] = np.where(labels[-1] > 0, labels[-1] + base, 0)
        self._join(self._last_row, first_row)
        self._last_row = last_row

    def _join(self, above: np.ndarray, below: np.ndarray) -> None:
        """Union labels (global id + 1) of two adjacent rows, diagonal neighbours included."""
        for shift in (-1, 0, 1):
            a = above[max(0, -shift) : self.width - max(0, shift)]
            b = below[max(0, shift) : self.width - max(0, -shift)]
            both = (a > 0) & (b > 0)
            for x, y in set(zip(a[both].tolist(), b[both].tolist(), strict=True)):
                self._union(x - 1, y - 1)

    def _roots(self) -> np.ndarray:
        """The root (smallest label of its component) of every label."""
        if self._chunks:
            self._stats = np.concatenate([self._stats, *self._chunks])
            self._chunks = []
            self._emitted = np.concatenate(
                [self._emitted, np.zeros(len(self._stats) - len(self._emitted), bool)]
            )
        parent = np.asarray(self._parent, dtype=np.int64)
        while True:  # pointer jumping: every label reaches its root in log(depth) steps
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand

    def _components(self, labels: np.ndarray | None = None) -> tuple[np.ndarray, ImpactColumns]:
        """The roots and columns of the components of ``labels`` (a sorted, root-closed set
        of labels; None = all), ordered by first pixel (row, then column), ties by root."""
        roots = self._roots()
        stats = self._stats
        if labels is not None:
            roots, stats = roots[labels], stats[labels]
        unique, group = np.unique(roots, return_inverse=True)
        g = len(unique)
        area = np.bincount(group, weights=stats[:, _AREA], minlength=g)
        sum_r = np.bincount(group, weights=stats[:, _SUM_R], minlength=g)
        sum_c = np.bincount(group, weights=stats[:, _SUM_C], minlength=g)
        extremes = []
        for column, ufunc, start in (
            (_RMIN, np.minimum, np.inf),
            (_RMAX, np.maximum, -np.inf),
            (_CMIN, np.minimum, np.inf),
            (_CMAX, np.maximum, -np.inf),
            (_PEAK, np.maximum, -np.inf),
        ):
            out = np.full(g, start)
            ufunc.at(out, group, stats[:, column])
            extremes.append(out)
        row_min, row_max, col_min, col_max, peak = extremes
        order = np.lexsort((unique, col_min, row_min))
        columns = ImpactColumns(
            row_min=row_min.astype(np.int64),
            row_max=row_max.astype(np.int64),
            col_min=col_min.astype(np.int64),
            col_max=col_max.astype(np.int64),
            area=area.astype(np.int64),
            centroid_row=sum_r / area,
            centroid_col=sum_c / area,
            peak=peak,
        )
        return unique[order], columns.take(order)

    def _open_roots(self) -> np.ndarray:
        labels = np.unique(self._last_row)
        return np.unique(self._roots()[labels[labels > 0] - 1])

    def open_top_row(self) -> int | None:
        """Top row of the highest component still open (touching the last row fed), if any."""
        open_roots = self._open_roots()
        if not len(open_roots):
            return None
        roots = self._roots()
        return int(self._stats[np.isin(roots, open_roots), _RMIN].min())

    def pop_complete_columns(self, final: bool = False) -> ImpactColumns:
        """Components that can no longer grow (none of their pixels is in the last row fed,
        or ``final``), each returned once, ordered by first pixel, as columns."""
        roots = self._roots()
        done = ~self._emitted
        if not final:
            done &= ~np.isin(roots, self._open_roots())
        labels = np.flatnonzero(done)
        if not len(labels):
            return ImpactColumns.of([])
        self._emitted[labels] = True
        return self._components(labels)[1]

    def pop_complete(self, final: bool = False) -> list[Impact]:
        """Components that can no longer grow (none of their pixels is in the last row fed,
        or ``final``), each returned once, ordered by first pixel.

        Ids count up in the order components are returned, so they do not depend on how
        the mask was cut into stripes as long as the same rows are fed.
        """
        columns = self.pop_complete_columns(final)
        impacts = columns.impacts(first_id=self._next_id)
        self._next_id += len(impacts)
        return impacts

    def impacts(self) -> list[Impact]:
        """Every component of the rows fed so far, ordered by first pixel (row, then column)."""
        return self._components()[1].impacts()
