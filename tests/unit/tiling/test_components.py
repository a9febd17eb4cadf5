"""Streaming connected components: stripes give the same impacts as labelling the whole mask."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from tiling.components import ComponentTracker, Impact
from tiling.windows import Box

Summary = tuple[int, int, int, int, int, float, float]  # row_min, row_max, col_min, col_max, area, centroid


def _track(mask: np.ndarray, bounds: list[int]) -> list[Impact]:
    """Feed ``mask`` to a tracker in the stripes ``bounds[k]:bounds[k + 1]``."""
    tracker = ComponentTracker(mask.shape[1])
    for row0, row1 in itertools.pairwise(bounds):
        tracker.add_stripe(mask[row0:row1], row0)
    return tracker.impacts()


def _summaries(impacts: list[Impact]) -> list[Summary]:
    return sorted(
        (
            i.box.row_min,
            i.box.row_max,
            i.box.col_min,
            i.box.col_max,
            i.area_px,
            i.centroid_row,
            i.centroid_col,
        )
        for i in impacts
    )


def _scipy_summaries(mask: np.ndarray) -> list[Summary]:
    labels, n = ndimage.label(mask != 0, structure=np.ones((3, 3), dtype=bool))
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        assert sl is not None
        rows, cols = np.nonzero(labels == k)
        out.append(
            (
                sl[0].start,
                sl[0].stop - 1,
                sl[1].start,
                sl[1].stop - 1,
                len(rows),
                float(rows.mean()),
                float(cols.mean()),
            )
        )
    assert len(out) == n
    return sorted(out)


@st.composite
def striped_masks(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    """A random mask (densities around the 8-connected percolation threshold make long,
    winding components) and random stripe boundaries."""
    height = draw(st.integers(1, 48))
    width = draw(st.integers(1, 48))
    density = draw(st.sampled_from([0.05, 0.2, 0.35, 0.45, 0.6, 0.9]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mask = (rng.random((height, width)) < density).astype(np.uint8)
    mask[mask > 0] = rng.integers(1, 255, size=int(mask.sum()))  # any non-zero value is impact
    cuts = sorted(draw(st.sets(st.integers(1, height - 1), max_size=height - 1)) if height > 1 else set())
    return mask, [0, *cuts, height]


@settings(deadline=None, max_examples=100)
@given(striped_masks())
def test_stripes_give_the_same_components_as_labelling_the_whole_mask(
    case: tuple[np.ndarray, list[int]],
) -> None:
    mask, bounds = case
    impacts = _track(mask, bounds)
    got, expected = _summaries(impacts), _scipy_summaries(mask)

    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[:5] == e[:5]
        assert g[5:] == pytest.approx(e[5:], abs=1e-9)
    assert [i.id for i in impacts] == list(range(len(impacts)))
    assert [i.box.row_min for i in impacts] == sorted(i.box.row_min for i in impacts)


@pytest.mark.parametrize(
    ("upper", "lower"),
    [((1, 1), (2, 2)), ((1, 2), (2, 1)), ((1, 0), (2, 1)), ((1, 4), (2, 3))],
    ids=["down-right", "down-left", "left-edge", "right-edge"],
)
def test_diagonal_touch_across_stripe_boundary_is_one_impact(
    upper: tuple[int, int], lower: tuple[int, int]
) -> None:
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[upper] = 1
    mask[lower] = 1
    impacts = _track(mask, [0, 2, 4])  # rows 1 and 2 sit on either side of the boundary

    assert len(impacts) == 1
    impact = impacts[0]
    assert impact.area_px == 2
    assert impact.box == Box(
        row_min=1, row_max=2, col_min=min(upper[1], lower[1]), col_max=max(upper[1], lower[1])
    )
    assert (impact.centroid_row, impact.centroid_col) == pytest.approx((1.5, (upper[1] + lower[1]) / 2))


def test_pixels_two_columns_apart_across_boundary_stay_separate() -> None:
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[1, 1] = 1
    mask[2, 3] = 1
    impacts = _track(mask, [0, 2, 4])
    assert [i.area_px for i in impacts] == [1, 1]
    assert [i.box for i in impacts] == [
        Box(row_min=1, row_max=1, col_min=1, col_max=1),
        Box(row_min=2, row_max=2, col_min=3, col_max=3),
    ]


def test_u_shape_joined_only_in_a_later_stripe_is_one_impact() -> None:
    # Two arms run down rows 0-3 and meet in row 4, two stripes after they start.
    mask = np.zeros((6, 7), dtype=np.uint8)
    mask[0:4, 1] = 1
    mask[0:4, 5] = 1
    mask[4, 1:6] = 1
    impacts = _track(mask, [0, 2, 4, 6])

    assert len(impacts) == 1
    impact = impacts[0]
    assert impact.area_px == 4 + 4 + 5
    assert impact.box == Box(row_min=0, row_max=4, col_min=1, col_max=5)
    rows, cols = np.nonzero(mask)
    assert (impact.centroid_row, impact.centroid_col) == pytest.approx((rows.mean(), cols.mean()))


def test_comb_whose_arms_join_in_the_last_row_is_one_impact() -> None:
    # Four arms, each its own component until the last one-row stripe joins them all.
    mask = np.zeros((9, 9), dtype=np.uint8)
    mask[:8, ::2] = 1
    mask[8, :] = 1
    impacts = _track(mask, [0, 3, 5, 8, 9])
    assert len(impacts) == 1
    assert impacts[0].area_px == int(mask.sum())
    assert impacts[0].box == Box(row_min=0, row_max=8, col_min=0, col_max=8)


def test_arms_stay_separate_until_joined_after_an_empty_stripe() -> None:
    # An empty stripe between two parts must not join them.
    mask = np.zeros((6, 4), dtype=np.uint8)
    mask[0:2, 1] = 1
    mask[4:6, 1] = 1
    impacts = _track(mask, [0, 2, 4, 6])
    assert [i.box for i in impacts] == [
        Box(row_min=0, row_max=1, col_min=1, col_max=1),
        Box(row_min=4, row_max=5, col_min=1, col_max=1),
    ]


@pytest.mark.parametrize(
    ("first_rows", "next_row0"),
    [(4, 5), (4, 3), (4, 0)],
    ids=["gap", "overlap", "restart"],
)
def test_non_consecutive_stripes_raise(first_rows: int, next_row0: int) -> None:
    tracker = ComponentTracker(8)
    tracker.add_stripe(np.zeros((first_rows, 8), dtype=np.uint8), 0)
    with pytest.raises(ValueError, match="does not follow"):
        tracker.add_stripe(np.zeros((2, 8), dtype=np.uint8), next_row0)


def test_first_stripe_must_start_at_row_zero() -> None:
    with pytest.raises(ValueError, match="does not follow row 0"):
        ComponentTracker(8).add_stripe(np.zeros((2, 8), dtype=np.uint8), 2)


def test_stripe_of_wrong_width_raises() -> None:
    with pytest.raises(ValueError, match="width 7"):
        ComponentTracker(8).add_stripe(np.zeros((2, 7), dtype=np.uint8), 0)
