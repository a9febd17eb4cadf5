"""Connected components of an impact mask streamed stripe by stripe.

Each stripe is labelled with 8-connectivity; labels that touch across a stripe boundary
(directly or diagonally) are joined with a union-find, so an impact split by a stripe (or
window) boundary is still one impact. Memory: one stripe plus one row of labels.
"""

from __future__ import annotations

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


class ComponentTracker:
    """Accumulates components over consecutive stripes of a mask (top to bottom)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._parent: list[int] = []
        self._stats: list[list[float]] = []  # area, rmin, rmax, cmin, cmax, sum_r, sum_c, peak
        self._last_row = np.zeros(width, dtype=np.int64)  # global id + 1 of the last row seen
        self._next_row = 0
        self._emitted: set[int] = set()
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
            area = np.bincount(lab, minlength=n)
            sum_r = np.bincount(lab, weights=rr + (row0 + r_lo), minlength=n)
            sum_c = np.bincount(lab, weights=cc + c_lo, minlength=n)
            peak = np.zeros(n)
            if values is not None:
                np.maximum.at(peak, lab, values[rr + r_lo, cc + c_lo])
            for k, sl in enumerate(ndimage.find_objects(labels)):
                assert sl is not None
                self._stats.append(
                    [
                        float(area[k]),
                        sl[0].start + row0 + r_lo,
                        sl[0].stop - 1 + row0 + r_lo,
                        sl[1].start + c_lo,
                        sl[1].stop - 1 + c_lo,
                        float(sum_r[k]),
                        float(sum_c[k]),
                        float(peak[k]),
                    ]
                )
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

    def _merged(self) -> dict[int, list[float]]:
        """Stats of every component root (labels joined by the union-find)."""
        merged: dict[int, list[float]] = {}
        for k, s in enumerate(self._stats):
            root = self._find(k)
            if root not in merged:
                merged[root] = list(s)
                continue
            m = merged[root]
            m[0] += s[0]
            m[1], m[2] = min(m[1], s[1]), max(m[2], s[2])
            m[3], m[4] = min(m[3], s[3]), max(m[4], s[4])
            m[5] += s[5]
            m[6] += s[6]
            m[7] = max(m[7], s[7])
        return merged

    def _open_roots(self) -> set[int]:
        return {self._find(int(g) - 1) for g in np.unique(self._last_row) if g > 0}

    def open_top_row(self) -> int | None:
        """Top row of the highest component still open (touching the last row fed), if any."""
        roots = self._open_roots()
        if not roots:
            return None
        merged = self._merged()
        return int(min(merged[r][1] for r in roots))

    def pop_complete(self, final: bool = False) -> list[Impact]:
        """Components that can no longer grow (none of their pixels is in the last row fed,
        or ``final``), each returned once, ordered by first pixel.

        Ids count up in the order components are returned, so they do not depend on how
        the mask was cut into stripes as long as the same rows are fed.
        """
        open_roots = set() if final else self._open_roots()
        done = [
            (root, m)
            for root, m in self._merged().items()
            if root not in open_roots and root not in self._emitted
        ]
        done.sort(key=lambda item: (item[1][1], item[1][3]))
        out = []
        for root, m in done:
            self._emitted.add(root)
            out.append(
                Impact(
                    self._next_id,
                    Box(row_min=int(m[1]), row_max=int(m[2]), col_min=int(m[3]), col_max=int(m[4])),
                    int(m[0]),
                    m[5] / m[0],
                    m[6] / m[0],
                    m[7],
                )
            )
            self._next_id += 1
        return out

    def impacts(self) -> list[Impact]:
        """Every component of the rows fed so far, ordered by first pixel (row, then column)."""
        ordered = sorted(self._merged().values(), key=lambda m: (m[1], m[3]))
        return [
            Impact(
                i,
                Box(row_min=int(m[1]), row_max=int(m[2]), col_min=int(m[3]), col_max=int(m[4])),
                int(m[0]),
                m[5] / m[0],
                m[6] / m[0],
                m[7],
            )
            for i, m in enumerate(ordered)
        ]
