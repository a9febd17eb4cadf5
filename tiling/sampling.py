"""Choosing negatives and the mining pool: pure logic on counts and ranked candidates.

The cutter (:mod:`tiling.cutter`) streams a scene and ranks candidate windows by random
keys; these functions turn per-cell counts into per-window counts and ranked candidates
into the final negatives and pool.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

T = TypeVar("T")


def sliding_sums(values: np.ndarray, k: int) -> np.ndarray:
    """Sums of every run of ``k`` consecutive values: entry ``j`` is ``values[j:j+k].sum()``.

    Returns:
        Array of length ``len(values) - k + 1`` (empty when ``k`` exceeds the length).
    """
    if len(values) < k:
        return np.zeros(0, dtype=np.int64)
    total = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return total[k:] - total[:-k]


def select_negatives(
    border: list[T],
    interior: list[T],
    totals: tuple[int, int],
    n_negative: int,
    border_share: float,
    pool_max: int,
    rng: np.random.Generator,
) -> tuple[list[T], list[T]]:
    """Split ranked candidates into negatives and pool.

    Both lists hold the best-keyed candidates of their group (a uniform random key, so each
    list is a uniform sample of its group), best first; ``totals`` counts all candidates of
    each group, kept or not. ``round(border_share * n_negative)`` negatives come from the
    candidates that touch the no-data border (as many as exist), the rest from interior
    ones (topped up from the border when interior ones run out). The pool is a uniform
    sample of all leftover candidates: how many come from each group is drawn
    hypergeometrically from the groups' leftover counts, then each group gives its best.

    Args:
        border: Ranked kept candidates touching the no-data border.
        interior: Ranked kept candidates without no-data.
        totals: Numbers of border and interior candidates seen in all.
        n_negative: Negatives wanted.
        border_share: Share of negatives to take from ``border``.
        pool_max: Most pool entries.
        rng: Draws the pool's split between the groups.

    Returns:
        ``(negatives, pool)``; fewer negatives than asked only if candidates run out.
    """
    n_border = min(round(border_share * n_negative), len(border))
    n_interior = min(n_negative - n_border, len(interior))
    n_border = min(n_negative - n_interior, len(border))
    negatives = border[:n_border] + interior[:n_interior]
    left = np.array([max(0, totals[0] - n_border), max(0, totals[1] - n_interior)], dtype=np.int64)
    size = int(min(pool_max, left.sum()))
    from_border, from_interior = rng.multivariate_hypergeometric(left, size) if size else (0, 0)
    pool = border[n_border : n_border + from_border] + interior[n_interior : n_interior + from_interior]
    return negatives, pool
