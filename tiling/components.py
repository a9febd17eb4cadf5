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


class ComponentTracker:
    """Accumulates components over consecutive stripes of a mask (top to bottom)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._parent: list[int] = []
        self._stats: list[list[float]] = []  # area, rmin, rmax, cmin, cmax, sum_r, sum_c
        self._last_row = np.zeros(width, dtype=np.int64)  # global id + 1 of the last row seen
        self._next_row = 0

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

    def add_stripe(self, mask: np.ndarray, row0: int) -> None:
        """Label one stripe (``mask`` non-zero = impact) starting at scene row ``row0``.

        Raises:
            ValueError: Stripes are not consecutive or have the wrong width.
        """
        if row0 != self._next_row or mask.shape[1] != self.width:
            raise ValueError(
                f"stripe at row {row0} (width {mask.shape[1]}) does not follow row {self._next_row}"
            )
        self._next_row = row0 + mask.shape[0]
        fg = mask != 0
        rows_any = np.flatnonzero(fg.any(axis=1))
        first_row = np.zeros(self.width, dtype=np.int64)
        if rows_any.size == 0:
            self._last_row = first_row
            return
        r_lo, r_hi = rows_any[0], rows_any[-1] + 1  # label only the rows that hold impacts
        labels, n = ndimage.label(fg[r_lo:r_hi], structure=EIGHT_CONNECTED)
        base = len(self._parent)
        self._parent.extend(range(base, base + n))
        rr, cc = np.nonzero(labels)
        lab = labels[rr, cc] - 1
        rr = rr + row0 + r_lo
        area = np.bincount(lab, minlength=n)
        sum_r = np.bincount(lab, weights=rr, minlength=n)
        sum_c = np.bincount(lab, weights=cc, minlength=n)
        for k, sl in enumerate(ndimage.find_objects(labels)):
            assert sl is not None
            self._stats.append(
                [
                    float(area[k]),
                    sl[0].start + row0 + r_lo,
                    sl[0].stop - 1 + row0 + r_lo,
                    sl[1].start,
                    sl[1].stop - 1,
                    float(sum_r[k]),
                    float(sum_c[k]),
                ]
            )
        if r_lo == 0:
            first_row = np.where(labels[0] > 0, labels[0] + base, 0)
        self._join(self._last_row, first_row)
        last = labels[-1] if r_hi == mask.shape[0] else np.zeros(self.width, dtype=labels.dtype)
        self._last_row = np.where(last > 0, last + base, 0).astype(np.int64)

    def _join(self, above: np.ndarray, below: np.ndarray) -> None:
        """Union labels (global id + 1) of two adjacent rows, diagonal neighbours included."""
        for shift in (-1, 0, 1):
            a = above[max(0, -shift) : self.width - max(0, shift)]
            b = below[max(0, shift) : self.width - max(0, -shift)]
            both = (a > 0) & (b > 0)
            for x, y in set(zip(a[both].tolist(), b[both].tolist(), strict=True)):
                self._union(x - 1, y - 1)

    def impacts(self) -> list[Impact]:
        """The merged components, ordered by their first pixel (row, then column)."""
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
        ordered = sorted(merged.values(), key=lambda m: (m[1], m[3]))
        return [
            Impact(i, Box(int(m[1]), int(m[2]), int(m[3]), int(m[4])), int(m[0]), m[5] / m[0], m[6] / m[0])
            for i, m in enumerate(ordered)
        ]
