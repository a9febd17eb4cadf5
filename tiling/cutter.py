"""Single-pass patch cutting: one streaming read of a scene yields every patch.

The scene is fed top to bottom in stripes of whole blocks. A rolling buffer keeps only the
rows that a patch may still need:

- **positives**: when an impact's connected component is complete (no pixel in the last
  row fed), its random-offset crops are planned and cut as soon as their rows are buffered;
- **negatives and pool**: every window on the cell grid whose rows are complete, has no
  impact pixel and at most ``max_nodata_fraction`` no-data is offered to one of two
  reservoirs (touching the no-data border or not) that keep the candidates with the
  largest random keys: a uniform sample of the whole scene in bounded memory. At the end,
  the top keys become negatives (``border_share`` of them from the border reservoir) and
  the next ones the mining pool.

Keys are hashed from the window position and crop offsets are drawn per impact, so the
result does not depend on the stripe size. Memory: the buffer (a stripe plus a patch of
rows, more only for impacts taller than that), a few rows of cell counts, and the
reservoirs (at most ``max_negatives_per_scene + pool_max_per_scene`` patches each).
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tiling.components import ComponentTracker, Impact
from tiling.config import TileConfig
from tiling.hashing import hash_unit
from tiling.io import SceneInfo
from tiling.patchset import MINING_POOL, TRAIN_SPLIT
from tiling.sampling import select_negatives, sliding_sums
from tiling.windows import CellGrid, cell_sums, random_crop


@dataclass(eq=False)
class Cut:
    """A patch cut from the stream; ``key`` ranks reservoir entries (larger = kept)."""

    key: float
    row: int
    col: int
    kind: str  # one of tiling.patchset.KINDS once sampled ("" while in a reservoir)
    image: np.ndarray = field(repr=False)
    mask: np.ndarray | None = field(repr=False)  # None: no impact pixel (negatives, pool)
    nodata_fraction: float


class Reservoir:
    """Keeps the ``capacity`` offered items with the largest keys."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.seen = 0  # candidates counted, kept or not
        self._heap: list[tuple[float, int, Cut]] = []  # (key, tie-break, item): a min-heap on key

    def threshold(self) -> float:
        """Keys at or below this are not kept."""
        return self._heap[0][0] if len(self._heap) >= self.capacity else -1.0

    def offer(self, item: Cut) -> None:
        if self.capacity <= 0:
            return
        entry = (item.key, item.row * 1_000_003 + item.col, item)
        if len(self._heap) < self.capacity:
            heapq.heappush(self._heap, entry)
        elif item.key > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)

    def best_first(self) -> list[Cut]:
        return [entry[2] for entry in sorted(self._heap, key=lambda e: (-e[0], e[1]))]


def _rows_total(cells: dict[int, np.ndarray], first: int, count: int, zeros: np.ndarray) -> np.ndarray:
    """Column-wise total of cell rows ``first .. first + count - 1`` (missing rows are 0)."""
    total = zeros.copy()
    for i in range(first, first + count):
        if i in cells:
            total += cells[i]
    return total


def scene_salt(seed: int, scene: str) -> int:
    """Per-scene salt of all random draws (independent of process scheduling)."""
    return (seed * 1_000_003) ^ zlib.crc32(scene.encode())


class RowBuffer:
    """Consecutive scene rows ``[row0, row_end)`` in a preallocated array.

    New stripes are written into it (:meth:`next_rows`); dropping rows is free and only the
    kept rows are moved to the front when a stripe would not fit.
    """

    def __init__(self, width: int, dtype: str, capacity_rows: int) -> None:
        self.data = np.zeros((capacity_rows, width), dtype=dtype)
        self.start = 0  # index of row0 in data
        self.row0 = 0
        self.row_end = 0

    def next_rows(self, count: int) -> np.ndarray:
        """A writable view for the next ``count`` rows (call :meth:`commit` once filled)."""
        kept = self.row_end - self.row0
        if self.start + kept + count > len(self.data):
            if kept + count > len(self.data):  # a tall open impact: grow
                grown = np.zeros((2 * (kept + count), self.data.shape[1]), dtype=self.data.dtype)
                grown[:kept] = self.data[self.start : self.start + kept]
                self.data = grown
            else:
                self.data[:kept] = self.data[self.start : self.start + kept]
            self.start = 0
        return self.data[self.start + kept : self.start + kept + count]

    def commit(self, count: int) -> None:
        self.row_end += count

    def drop_before(self, row: int) -> None:
        if row > self.row0:
            self.start += row - self.row0
            self.row0 = row

    def window(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """View of a window; its rows must be buffered (reading a dropped row is a bug)."""
        if row < self.row0 or row + height > self.row_end:
            raise IndexError(
                f"rows {row}..{row + height - 1} are not buffered ({self.row0}..{self.row_end - 1})"
            )
        r = self.start + row - self.row0
        return self.data[r : r + height, col : col + width]


class SceneCutter:
    """Feed a scene's stripes in order (:meth:`feed`), then :meth:`finish`.

    Positives go to ``emit`` as soon as they are cut; :meth:`finish` returns the
    negatives and pool patches.
    """

    def __init__(
        self,
        info: SceneInfo,
        stripe_rows: int,
        split: str,
        cfg: TileConfig,
        grid: CellGrid,
        salt: int,
        emit: Callable[[Cut], object],
    ) -> None:
        self.info, self.split, self.cfg, self.grid, self.salt, self.emit = info, split, cfg, grid, salt, emit
        self.patch = cfg.patch_px
        self.cells_per_patch = cfg.patch_px // grid.cell_px
        self.nodata = np.array(info.nodata).astype(info.dtype)
        self.tracker = ComponentTracker(info.width)
        capacity = stripe_rows + 2 * cfg.patch_px
        self.image_rows = RowBuffer(info.width, info.dtype, capacity)
        self.mask_rows = RowBuffer(info.width, "uint8", capacity)
        self.row_end = 0
        self.cell_impact: dict[int, np.ndarray] = {}
        self.cell_nodata: dict[int, np.ndarray] = {}
        self.next_window_row = 0
        self.pending: list[tuple[int, int]] = []
        self.n_positive = 0
        self.n_impacts = 0
        pool = cfg.pool_max_per_scene if split == TRAIN_SPLIT else 0
        self.interior = Reservoir(cfg.max_negatives_per_scene + pool)
        self.border = Reservoir(cfg.max_negatives_per_scene + pool)

    def feed(self, image: np.ndarray, mask: np.ndarray) -> None:
        """Take the next stripe: ``image`` and ``mask`` rows that follow the rows fed so far."""
        rows, row0 = len(image), self.row_end
        self.image_rows.next_rows(rows)[:] = image
        is_impact = self.mask_rows.next_rows(rows).view(bool)
        np.not_equal(mask, 0, out=is_impact)  # any non-zero mask value is an impact: store 0/1
        self.image_rows.commit(rows)
        self.mask_rows.commit(rows)
        self.tracker.add_stripe(is_impact, row0)
        self._count(is_impact, row0, self.cell_impact)
        self._count(image == self.nodata, row0, self.cell_nodata)
        self.row_end = row0 + rows
        self._plan_positives(self.tracker.pop_complete())
        self._cut_positives()
        self._offer_windows()
        self._trim()

    def finish(self) -> list[Cut]:
        """Cut what is left and choose the negatives and pool.

        Returns:
            Negatives then pool patches, each group in scene order (row, column).
        """
        self._plan_positives(self.tracker.pop_complete(final=True))
        self._cut_positives()
        self._offer_windows()
        n_negative = round(
            (
                self.cfg.negatives_per_positive
                if self.split == TRAIN_SPLIT
                else self.cfg.eval_negatives_per_positive
            )
            * self.n_positive
        )
        negatives, pool = select_negatives(
            self.border.best_first(),
            self.interior.best_first(),
            (self.border.seen, self.interior.seen),
            min(n_negative, self.cfg.max_negatives_per_scene),
            self.cfg.border_share,
            self.cfg.pool_max_per_scene if self.split == TRAIN_SPLIT else 0,
            np.random.default_rng([self.salt & 0xFFFFFFFF, 1]),
        )
        for cut in negatives:
            cut.kind = "negative"
        for cut in pool:
            cut.kind = MINING_POOL
        order = lambda c: (c.row, c.col)  # noqa: E731
        return sorted(negatives, key=order) + sorted(pool, key=order)

    def _count(self, values: np.ndarray, row0: int, into: dict[int, np.ndarray]) -> None:
        if not values.any():
            return
        rows, sums = cell_sums(values, row0, self.grid)
        for i, row_sums in zip(rows.tolist(), sums, strict=True):
            into[i] = into[i] + row_sums if i in into else row_sums

    def _plan_positives(self, impacts: list[Impact]) -> None:
        per_impact = (
            self.cfg.positives_per_impact if self.split == TRAIN_SPLIT else self.cfg.eval_positives_per_impact
        )
        for impact in impacts:
            self.n_impacts += 1
            rng = np.random.default_rng([self.salt & 0xFFFFFFFF, impact.box.row_min, impact.box.col_min])
            for _ in range(per_impact):
                self.pending.append(
                    random_crop(impact.box, self.patch, self.info.height, self.info.width, rng)
                )
        self.pending.sort()

    def _cut_positives(self) -> None:
        ready = [p for p in self.pending if p[0] + self.patch <= self.row_end]
        self.pending = [p for p in self.pending if p[0] + self.patch > self.row_end]
        for row, col in ready:
            image, mask = self._window(row, col, with_mask=True)
            self.n_positive += 1
            self.emit(Cut(0.0, row, col, "positive", image, mask, float(np.mean(image == self.nodata))))

    def _window(self, row: int, col: int, with_mask: bool) -> tuple[np.ndarray, np.ndarray | None]:
        image = self.image_rows.window(row, col, self.patch, self.patch).copy()
        mask = self.mask_rows.window(row, col, self.patch, self.patch).copy() if with_mask else None
        return image, mask

    def _offer_windows(self) -> None:
        """Offer every window whose rows are all read to the reservoirs."""
        n_rows, n_cols = self.grid.shape
        k = self.cells_per_patch
        zeros = np.zeros(n_cols, dtype=np.int64)
        area = float(self.patch * self.patch)
        while self.next_window_row + k <= n_rows:
            i = self.next_window_row
            row = self.grid.origin(i, 0)[0]
            if row + self.patch > self.row_end:
                break
            impact = sliding_sums(_rows_total(self.cell_impact, i, k, zeros), k)
            nodata = sliding_sums(_rows_total(self.cell_nodata, i, k, zeros), k)
            ok = (impact == 0) & (nodata <= self.cfg.max_nodata_fraction * area)
            keys = hash_unit(np.full(n_cols - k + 1, i), np.arange(n_cols - k + 1), self.salt)
            for reservoir, group in ((self.border, ok & (nodata > 0)), (self.interior, ok & (nodata == 0))):
                reservoir.seen += int(np.count_nonzero(group))
                # Thresholds only rise, so the one at the start of the row pre-filters it.
                for j in np.flatnonzero(group & (keys > reservoir.threshold())).tolist():
                    if keys[j] > reservoir.threshold():
                        col = self.grid.origin(i, j)[1]
                        image, mask = self._window(row, col, with_mask=False)
                        reservoir.offer(Cut(float(keys[j]), row, col, "", image, mask, nodata[j] / area))
            self.cell_impact.pop(i, None)
            self.cell_nodata.pop(i, None)
            self.next_window_row += 1

    def _trim(self) -> None:
        """Drop buffered rows that no pending crop, open impact or window can need."""
        # An impact first seen in the next stripe may get a crop starting patch_px - 1 rows
        # above it; windows not yet offered start at the next window row.
        keep = [self.row_end - self.patch + 1, self.grid.origin(self.next_window_row, 0)[0]]
        if self.pending:
            keep.append(self.pending[0][0])
        top = self.tracker.open_top_row()
        if top is not None:
            keep.append(top - self.patch + 1)
        keep_from = max(0, min(keep))
        self.image_rows.drop_before(keep_from)
        self.mask_rows.drop_before(keep_from)
