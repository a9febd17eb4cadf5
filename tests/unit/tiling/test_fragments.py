"""Fragment merging: near boxes become one detection, by single linkage on box gaps."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiling.components import Impact, ImpactColumns
from tiling.fragments import box_gap, fragment_groups, merge_fragments
from tiling.windows import Box


def _impact(
    k: int, row_min: int, row_max: int, col_min: int, col_max: int, area: int = 4, peak: float = 0.6
) -> Impact:
    return Impact(
        k,
        Box(row_min=row_min, row_max=row_max, col_min=col_min, col_max=col_max),
        area,
        (row_min + row_max) / 2,
        (col_min + col_max) / 2,
        peak,
    )


@pytest.mark.parametrize(
    ("a", "b", "gap"),
    [
        ((0, 2, 0, 2), (0, 2, 0, 2), 0),  # the same box
        ((0, 9, 0, 9), (3, 4, 3, 4), 0),  # one inside the other
        ((0, 2, 0, 2), (3, 5, 0, 2), 0),  # touching rows
        ((0, 2, 0, 2), (4, 5, 0, 2), 1),  # one empty row between
        ((0, 2, 0, 2), (0, 2, 7, 9), 4),  # four empty columns
        ((0, 2, 0, 2), (5, 6, 8, 9), 5),  # diagonal: the larger of 2 rows and 5 columns
        ((5, 6, 8, 9), (0, 2, 0, 2), 5),  # symmetric
    ],
)
def test_box_gap_counts_the_empty_pixels_between_boxes(
    a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int
) -> None:
    def box(v: tuple[int, int, int, int]) -> Box:
        return Box(row_min=v[0], row_max=v[1], col_min=v[2], col_max=v[3])

    assert box_gap(box(a), box(b)) == gap


def test_zero_keeps_every_component_even_with_overlapping_boxes() -> None:
    ring_and_spot = [_impact(0, 0, 20, 0, 20, area=60), _impact(1, 9, 11, 9, 11, area=9)]
    assert merge_fragments(ring_and_spot, 0) == ring_and_spot
    assert merge_fragments(ring_and_spot, 1) != ring_and_spot


def test_a_chain_merges_into_one_detection_with_union_box_summed_area_and_weighted_centroid() -> None:
    a = Impact(0, Box(row_min=10, row_max=12, col_min=10, col_max=12), 9, 11.0, 11.0, 0.7)
    b = Impact(1, Box(row_min=10, row_max=11, col_min=16, col_max=17), 4, 10.5, 16.5, 0.9)  # gap 3 from a
    c = Impact(2, Box(row_min=15, row_max=15, col_min=18, col_max=18), 1, 15.0, 18.0, 0.55)  # gap 3 from b
    far = Impact(3, Box(row_min=40, row_max=41, col_min=0, col_max=1), 4, 40.5, 0.5, 0.8)
    assert merge_fragments([a, b, c, far], 2) == [a, b, c, far], "gaps of 3 stay apart at 2"
    merged, alone = merge_fragments([a, b, c, far], 3)
    assert merged.box == Box(row_min=10, row_max=15, col_min=10, col_max=18)
    assert merged.area_px == 14 and merged.peak == 0.9
    assert merged.centroid_row == pytest.approx((9 * 11.0 + 4 * 10.5 + 15.0) / 14)
    assert merged.centroid_col == pytest.approx((9 * 11.0 + 4 * 16.5 + 18.0) / 14)
    assert (merged.id, alone.id) == (0, 1) and alone.box == far.box and alone.area_px == 4


def test_merged_detections_are_ordered_by_first_pixel() -> None:
    late_pair = [_impact(0, 50, 52, 0, 2), _impact(2, 50, 52, 5, 7)]
    early = _impact(1, 40, 41, 30, 31)
    merged = merge_fragments([late_pair[0], early, late_pair[1]], 3)
    assert [(d.box.row_min, d.box.col_min) for d in merged] == [(40, 30), (50, 0)]


def _brute_force_groups(boxes: list[Box], distance: int) -> list[frozenset[int]]:
    """Single linkage by repeated pairwise union (the definition, O(n^2))."""
    parent = list(range(len(boxes)))

    def find(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for i, j in itertools.combinations(range(len(boxes)), 2):
        if box_gap(boxes[i], boxes[j]) <= distance:
            parent[find(i)] = find(j)
    groups: dict[int, set[int]] = {}
    for k in range(len(boxes)):
        groups.setdefault(find(k), set()).add(k)
    return sorted((frozenset(g) for g in groups.values()), key=min)


@settings(max_examples=60, deadline=None)
@given(
    raw=st.lists(
        st.tuples(st.integers(0, 300), st.integers(0, 40), st.integers(0, 300), st.integers(0, 40)),
        min_size=0,
        max_size=40,
    ),
    distance=st.integers(1, 70),
)
def test_groups_are_single_linkage_on_box_gaps_whatever_the_order(
    raw: list[tuple[int, int, int, int]], distance: int
) -> None:
    boxes = [Box(row_min=r, row_max=r + h, col_min=c, col_max=c + w) for r, h, c, w in raw]
    impacts = [Impact(k, b, 1, float(b.row_min), float(b.col_min), 0.5) for k, b in enumerate(boxes)]
    labels = fragment_groups(ImpactColumns.of(impacts), distance)
    groups = sorted((frozenset(np.flatnonzero(labels == g).tolist()) for g in np.unique(labels)), key=min)
    assert groups == _brute_force_groups(boxes, distance)
    assert [min(g) for g in groups] == sorted(min(g) for g in groups), "groups numbered by first member"
    shuffled = impacts[:]
    random.Random(len(raw)).shuffle(shuffled)
    key = [(d.box, d.area_px) for d in merge_fragments(impacts, distance)]
    assert sorted(key, key=str) == sorted(
        ((d.box, d.area_px) for d in merge_fragments(shuffled, distance)), key=str
    )


def test_a_negative_distance_is_refused() -> None:
    with pytest.raises(ValueError, match="merge_distance_px"):
        merge_fragments([_impact(0, 0, 1, 0, 1), _impact(1, 5, 6, 5, 6)], -1)
