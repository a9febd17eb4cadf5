"""Negative sampling maths: window sums, and ranked candidates split into negatives and pool."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiling.sampling import select_negatives, sliding_sums


class Candidate(NamedTuple):
    """A candidate window: its random ranking key, an id, and whether it touches no-data."""

    key: float
    id: int
    border: bool


def ranked(n_border: int, n_interior: int, seed: int) -> tuple[list[Candidate], list[Candidate]]:
    """Border and interior candidates with uniform random keys, each list best (largest key) first."""
    keys = np.random.default_rng(seed).random(n_border + n_interior)
    cands = [Candidate(float(k), i, i < n_border) for i, k in enumerate(keys)]
    border = sorted(cands[:n_border], key=lambda c: -c.key)
    interior = sorted(cands[n_border:], key=lambda c: -c.key)
    return border, interior


def select(
    border: list[Candidate],
    interior: list[Candidate],
    n: int,
    share: float,
    pool_max: int,
    totals: tuple[int, int] | None = None,
    seed: int = 0,
) -> tuple[list[Candidate], list[Candidate]]:
    """Select with every candidate kept (``totals`` = list lengths) unless told otherwise."""
    totals = (len(border), len(interior)) if totals is None else totals
    return select_negatives(border, interior, totals, n, share, pool_max, np.random.default_rng(seed))


# --- sliding_sums ----------------------------------------------------------------------------


@settings(deadline=None, max_examples=100)
@given(length=st.integers(0, 40), k=st.integers(1, 10), seed=st.integers(0, 2**32 - 1))
def test_sliding_sums_equal_brute_force(length: int, k: int, seed: int) -> None:
    values = np.random.default_rng(seed).integers(0, 1000, size=length)
    expected = [int(values[j : j + k].sum()) for j in range(length - k + 1)]
    assert sliding_sums(values, k).tolist() == expected


def test_sliding_sums_do_not_overflow_small_integer_types() -> None:
    # Cell counts of a whole patch exceed uint8/int16 ranges.
    values = np.full(8, 255, dtype=np.uint8)
    assert sliding_sums(values, 4).tolist() == [1020] * 5


# --- select_negatives: counts --------------------------------------------------------------


@st.composite
def selections(draw: st.DrawFn) -> tuple[int, int, int, float, int, int]:
    return (
        draw(st.integers(0, 60)),  # border candidates
        draw(st.integers(0, 60)),  # interior candidates
        draw(st.integers(0, 80)),  # negatives wanted
        draw(st.sampled_from([0.0, 0.1, 0.15, 0.5, 0.9, 1.0])),
        draw(st.integers(0, 50)),  # pool cap
        draw(st.integers(0, 2**32 - 1)),
    )


@settings(deadline=None, max_examples=100)
@given(selections())
def test_selection_counts_and_border_share(case: tuple[int, int, int, float, int, int]) -> None:
    n_border, n_interior, n, share, pool_max, seed = case
    border, interior = ranked(n_border, n_interior, seed)
    negatives, pool = select(border, interior, n, share, pool_max)

    available = n_border + n_interior
    assert len(negatives) == min(n, available), "fewer negatives only when candidates run out"
    want_border = min(round(share * n), n_border)
    got_border = sum(c.border for c in negatives)
    if n_interior >= n - want_border:
        assert got_border == want_border
    else:  # interior ran out: every interior one is used and the border tops up
        assert len(negatives) - got_border == n_interior
        assert got_border == min(n - n_interior, n_border)
    assert len(pool) == min(pool_max, available - len(negatives))


@settings(deadline=None, max_examples=100)
@given(selections())
def test_negatives_are_the_best_ranked_and_pool_holds_other_candidates(
    case: tuple[int, int, int, float, int, int],
) -> None:
    n_border, n_interior, n, share, pool_max, seed = case
    border, interior = ranked(n_border, n_interior, seed)
    negatives, pool = select(border, interior, n, share, pool_max)

    neg_ids = {c.id for c in negatives}
    assert len(neg_ids) == len(negatives)
    for group in (border, interior):  # within each group the negatives are its top-ranked
        taken = [c.id in neg_ids for c in group]
        assert taken == sorted(taken, reverse=True)

    pool_ids = [c.id for c in pool]
    assert len(set(pool_ids)) == len(pool_ids)
    assert neg_ids.isdisjoint(pool_ids)
    assert set(pool) <= {*border, *interior}


def test_border_share_is_taken_from_the_border() -> None:
    border, interior = ranked(100, 400, seed=0)
    negatives, _ = select(border, interior, 200, 0.15, 0)
    assert len(negatives) == 200
    assert sum(c.border for c in negatives) == 30


def test_few_border_candidates_are_all_used() -> None:
    border, interior = ranked(3, 400, seed=1)
    negatives, _ = select(border, interior, 100, 0.5, 0)
    assert len(negatives) == 100
    assert sum(c.border for c in negatives) == 3


def test_few_interior_candidates_are_topped_up_from_the_border() -> None:
    border, interior = ranked(400, 10, seed=2)
    negatives, _ = select(border, interior, 100, 0.15, 0)
    assert len(negatives) == 100
    assert sum(not c.border for c in negatives) == 10


def test_too_few_candidates_give_all_of_them_and_no_pool() -> None:
    border, interior = ranked(4, 6, seed=3)
    negatives, pool = select(border, interior, 50, 0.15, 100)
    assert sorted(c.id for c in negatives) == list(range(10))
    assert pool == []


def test_zero_negatives_leave_everything_to_the_pool_up_to_its_cap() -> None:
    border, interior = ranked(20, 30, seed=4)
    negatives, pool = select(border, interior, 0, 0.15, 12)
    assert negatives == []
    assert len(pool) == 12
    assert len(set(pool)) == 12


@pytest.mark.parametrize("pool_max", [0, 5])
def test_pool_is_capped(pool_max: int) -> None:
    border, interior = ranked(50, 50, seed=5)
    _, pool = select(border, interior, 10, 0.15, pool_max)
    assert len(pool) == pool_max


def test_pool_is_a_uniform_sample_of_the_leftovers() -> None:
    # All 100 negatives come from the border (share 1.0): 400 border and 500 interior are left,
    # so about 4/9 of a uniform pool should touch the border.
    border, interior = ranked(500, 500, seed=6)
    negatives, pool = select(border, interior, 100, 1.0, 100)
    assert all(c.border for c in negatives)
    share = sum(c.border for c in pool) / len(pool)
    assert abs(share - 400 / 900) < 0.15, f"{share:.0%} of the pool touches no-data, expected about 44%"


def test_pool_follows_the_group_sizes_not_the_kept_lists() -> None:
    # Reservoirs keep only the best of each group; the pool must still sample all leftovers,
    # so a huge border group dominates it even when both kept lists are equally long.
    border, interior = ranked(60, 60, seed=8)
    negatives, pool = select(border, interior, 0, 0.15, 40, totals=(100_000, 60))
    assert negatives == []
    assert len(pool) == 40
    assert sum(c.border for c in pool) >= 36


def test_same_candidates_and_seed_give_the_same_selection() -> None:
    border, interior = ranked(40, 80, seed=7)
    assert select(border, interior, 30, 0.2, 25, seed=1) == select(border, interior, 30, 0.2, 25, seed=1)
