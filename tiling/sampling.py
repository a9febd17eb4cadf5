"""Which patches to cut from a scene: positives around impacts, balanced negatives, pool.

Pure logic on the scan's results (impacts and per-cell counts); reading pixels is the
pipeline's job. Negative and pool windows start on the cell grid (a ``negative_stride_px``
step from a random offset) and may overlap, so a scene offers many more of them than it
has disjoint patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiling.components import Impact
from tiling.config import TileConfig
from tiling.windows import CellGrid, random_crop


@dataclass(frozen=True)
class PlannedPatch:
    """A window to cut: top-left pixel, kind and split."""

    row: int
    col: int
    kind: str
    split: str


def positive_patches(
    impacts: list[Impact],
    patch_px: int,
    height: int,
    width: int,
    split: str,
    per_impact: int,
    rng: np.random.Generator,
) -> list[PlannedPatch]:
    """``per_impact`` random-offset crops around every impact (see :func:`random_crop`)."""
    out = []
    for impact in impacts:
        for _ in range(per_impact):
            row, col = random_crop(impact.box, patch_px, height, width, rng)
            out.append(PlannedPatch(row, col, "positive", split))
    return out


def window_totals(cells: np.ndarray, k: int) -> np.ndarray:
    """Sum of every ``k x k`` block of cells (summed-area table): entry ``(i, j)`` is the
    total of cells ``i..i+k-1, j..j+k-1``, i.e. of the window starting at cell ``(i, j)``."""
    n_rows, n_cols = cells.shape
    if n_rows < k or n_cols < k:
        return np.zeros((0, 0), dtype=np.int64)
    table = np.zeros((n_rows + 1, n_cols + 1), dtype=np.int64)
    table[1:, 1:] = cells.cumsum(axis=0).cumsum(axis=1)
    return table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]


def negative_candidates(
    impact_px: np.ndarray,
    nodata_px: np.ndarray,
    cell_px: int,
    cells_per_patch: int,
    max_nodata_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``cells_per_patch`` cells a side without impact pixels and with at most
    ``max_nodata_fraction`` no-data.

    Returns:
        ``(interior, border)`` arrays of ``(i, j)`` start cells: windows without any
        no-data, and windows that touch the no-data border.
    """
    impact = window_totals(impact_px, cells_per_patch)
    nodata = window_totals(nodata_px, cells_per_patch)
    nodata_fraction = nodata / float((cell_px * cells_per_patch) ** 2)
    ok = (impact == 0) & (nodata_fraction <= max_nodata_fraction)
    return np.argwhere(ok & (nodata == 0)), np.argwhere(ok & (nodata > 0))


def _pick(cells: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` rows without replacement; return (picked, left)."""
    order = rng.permutation(len(cells))
    return cells[order[:count]], cells[order[count:]]


def plan_patches(
    impacts: list[Impact],
    grid: CellGrid,
    impact_px: np.ndarray,
    nodata_px: np.ndarray,
    split: str,
    cfg: TileConfig,
    rng: np.random.Generator,
) -> list[PlannedPatch]:
    """Plan every patch of one scene.

    Train scenes get ``positives_per_impact`` crops per impact and
    ``negatives_per_positive`` times as many negatives, of which ``border_share`` touch the
    no-data border (as many as exist); the train negatives left over (up to
    ``pool_max_per_scene``) become the unused ``pool`` that hard negatives are mined from.
    Val and test scenes get the ``eval_*`` counts and no pool. Negatives are drawn
    uniformly over all admissible windows of the scene.

    Args:
        impacts: The scene's impacts.
        grid: Cell grid of ``cfg.negative_stride_px`` cells on which the counts were taken.
        impact_px: Impact pixels per cell.
        nodata_px: No-data pixels per cell.
        split: The scene's split.
        cfg: Tiling settings.
        rng: The scene's random generator.

    Returns:
        Planned patches sorted by (row, col), the order the file is best read in.
    """
    train = split == "train"
    per_impact = cfg.positives_per_impact if train else cfg.eval_positives_per_impact
    positives = positive_patches(impacts, cfg.patch_px, grid.height, grid.width, split, per_impact, rng)
    ratio = cfg.negatives_per_positive if train else cfg.eval_negatives_per_positive
    n_neg = round(ratio * len(positives))
    cells_per_patch = cfg.patch_px // grid.cell_px
    interior, border = negative_candidates(
        impact_px, nodata_px, grid.cell_px, cells_per_patch, cfg.max_nodata_fraction
    )
    n_border = min(round(cfg.border_share * n_neg), len(border))
    border_neg, border = _pick(border, n_border, rng)
    interior_neg, interior = _pick(interior, n_neg - n_border, rng)
    extra_neg, border = _pick(border, n_neg - n_border - len(interior_neg), rng)  # too few interior windows
    chosen = np.vstack([border_neg, interior_neg, extra_neg])
    negatives = [PlannedPatch(*grid.origin(int(i), int(j)), "negative", split) for i, j in chosen]
    pool: list[PlannedPatch] = []
    if train and cfg.pool_max_per_scene:
        picked, _ = _pick(np.vstack([interior, border]), cfg.pool_max_per_scene, rng)
        pool = [PlannedPatch(*grid.origin(int(i), int(j)), "pool", split) for i, j in picked]
    return sorted([*positives, *negatives, *pool], key=lambda p: (p.row, p.col, p.kind))
