"""Window maths: crops stay in the scene and hold their impact, cell sums add up over stripes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiling.windows import Box, CellGrid, Window, cell_sums, crop_start_range, random_crop, stripe_rows


@st.composite
def axis_cases(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """``(lo, hi, patch_px, size)`` with ``0 <= lo <= hi < size`` and ``patch_px <= size``."""
    size = draw(st.integers(1, 300))
    patch_px = draw(st.integers(1, size))
    lo = draw(st.integers(0, size - 1))
    hi = draw(st.integers(lo, size - 1))
    return lo, hi, patch_px, size


@st.composite
def crop_cases(draw: st.DrawFn) -> tuple[Box, int, int, int]:
    """``(box, patch_px, height, width)`` with the box inside a scene at least a patch big."""
    patch_px = draw(st.integers(1, 128))
    height = draw(st.integers(patch_px, 400))
    width = draw(st.integers(patch_px, 400))
    row_min = draw(st.integers(0, height - 1))
    col_min = draw(st.integers(0, width - 1))
    row_max = draw(st.integers(row_min, height - 1))
    col_max = draw(st.integers(col_min, width - 1))
    return Box(row_min=row_min, row_max=row_max, col_min=col_min, col_max=col_max), patch_px, height, width


@settings(deadline=None, max_examples=200)
@given(axis_cases())
def test_crop_start_range_is_exactly_the_feasible_starts(case: tuple[int, int, int, int]) -> None:
    lo, hi, patch_px, size = case
    first, last = crop_start_range(lo, hi, patch_px, size)

    fits = hi - lo + 1 <= patch_px
    feasible = [
        start
        for start in range(size - patch_px + 1)
        if (
            start <= lo and start + patch_px - 1 >= hi if fits else lo <= start and start + patch_px - 1 <= hi
        )
    ]
    assert feasible, "a non-empty range is promised for every valid extent"
    assert (first, last) == (feasible[0], feasible[-1])
    assert feasible == list(range(first, last + 1))


@settings(deadline=None, max_examples=100)
@given(crop_cases(), st.integers(0, 2**32 - 1))
def test_random_crop_stays_in_scene_and_holds_the_box(case: tuple[Box, int, int, int], seed: int) -> None:
    box, patch_px, height, width = case
    rng = np.random.default_rng(seed)
    for _ in range(5):
        row, col = random_crop(box, patch_px, height, width, rng)
        assert 0 <= row <= height - patch_px
        assert 0 <= col <= width - patch_px
        row_end, col_end = row + patch_px - 1, col + patch_px - 1
        if box.height <= patch_px:
            assert row <= box.row_min and box.row_max <= row_end
        else:  # a box larger than the patch: the crop lies inside it
            assert box.row_min <= row and row_end <= box.row_max
        if box.width <= patch_px:
            assert col <= box.col_min and box.col_max <= col_end
        else:
            assert box.col_min <= col and col_end <= box.col_max


@pytest.mark.parametrize(
    "box",
    [
        Box(row_min=500, row_max=504, col_min=700, col_max=706),  # in the middle of the scene
        Box(row_min=60, row_max=62, col_min=0, col_max=3),  # near the top, on the left border
    ],
)
def test_random_crop_spreads_the_impact_over_the_patch(box: Box) -> None:
    patch_px, height, width = 128, 1000, 1200
    rng = np.random.default_rng(0)
    crops = np.array([random_crop(box, patch_px, height, width, rng) for _ in range(400)])
    for axis, lo, hi, size in [
        (0, box.row_min, box.row_max, height),
        (1, box.col_min, box.col_max, width),
    ]:
        first, last = crop_start_range(lo, hi, patch_px, size)
        span = last - first
        if span == 0:  # the scene border pins the crop on this axis
            assert (crops[:, axis] == first).all()
            continue
        relative = (crops[:, axis] - first) / span
        assert (relative < 0.25).any(), f"axis {axis}: no crop in the first quarter of the range"
        assert (relative > 0.75).any(), f"axis {axis}: no crop in the last quarter of the range"
        assert 0.35 < relative.mean() < 0.65, f"axis {axis}: offsets are skewed"


def test_random_crop_spread_covers_both_borders_of_the_patch() -> None:
    # The impact's offset inside the patch runs from 0 (top/left) to patch - box (bottom/right).
    box, patch_px = Box(row_min=400, row_max=409, col_min=300, col_max=309), 64
    rng = np.random.default_rng(1)
    crops = np.array([random_crop(box, patch_px, 800, 800, rng) for _ in range(500)])
    offset_row = box.row_min - crops[:, 0]
    offset_col = box.col_min - crops[:, 1]
    for offset in (offset_row, offset_col):
        assert offset.min() == 0
        assert offset.max() == patch_px - 10


@pytest.mark.parametrize(("lo", "hi", "patch_px", "size"), [(0, 5, 64, 32), (0, 0, 2, 1), (10, 20, 100, 99)])
def test_crop_start_range_rejects_scene_smaller_than_patch(
    lo: int, hi: int, patch_px: int, size: int
) -> None:
    with pytest.raises(ValueError, match="shorter than"):
        crop_start_range(lo, hi, patch_px, size)


def test_random_crop_rejects_scene_smaller_than_patch() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="shorter than"):
        random_crop(Box(row_min=0, row_max=3, col_min=0, col_max=3), 128, 100, 500, rng)
    with pytest.raises(ValueError, match="shorter than"):
        random_crop(Box(row_min=0, row_max=3, col_min=0, col_max=3), 128, 500, 100, rng)


@pytest.mark.parametrize(("lo", "hi"), [(-1, 3), (5, 4), (10, 100)])
def test_crop_start_range_rejects_extent_outside_scene(lo: int, hi: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        crop_start_range(lo, hi, 16, 100)


@st.composite
def striped_scenes(draw: st.DrawFn) -> tuple[np.ndarray, CellGrid, list[int]]:
    """A random 0/1 indicator scene (bool or uint8), a cell grid with any offset, and
    stripe boundaries."""
    height = draw(st.integers(1, 60))
    width = draw(st.integers(1, 60))
    cell_px = draw(st.integers(1, 12))
    row_offset = draw(st.integers(0, 2 * cell_px))
    col_offset = draw(st.integers(0, 2 * cell_px))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    dtype = draw(st.sampled_from([np.bool_, np.uint8]))
    seed = draw(st.integers(0, 2**32 - 1))
    values: np.ndarray = (np.random.default_rng(seed).random((height, width)) < density).astype(dtype)
    cuts = sorted(draw(st.sets(st.integers(1, height - 1), max_size=6)) if height > 1 else set())
    return values, CellGrid(height, width, cell_px, row_offset, col_offset), [0, *cuts, height]


@settings(deadline=None, max_examples=100)
@given(striped_scenes())
def test_cell_sums_over_stripes_equal_direct_per_cell_sums(
    case: tuple[np.ndarray, CellGrid, list[int]],
) -> None:
    values, grid, bounds = case
    totals = np.zeros(grid.shape, dtype=np.int64)
    for row0, row1 in itertools.pairwise(bounds):
        idx, sums = cell_sums(values[row0:row1], row0, grid)
        np.add.at(totals, idx, sums)

    expected = np.zeros(grid.shape, dtype=np.int64)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            r, c = grid.origin(i, j)
            cell = values[r : r + grid.cell_px, c : c + grid.cell_px]
            assert cell.shape == (grid.cell_px, grid.cell_px), "grid counts a cell that leaves the scene"
            expected[i, j] = cell.sum(dtype=np.int64)
    np.testing.assert_array_equal(totals, expected)


def test_cell_sums_counts_boolean_masks() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:4, 7:10] = True  # 4-px cells from (1, 1): cols 7-8 fall in cell (0, 1), col 9 in no cell
    grid = CellGrid(10, 10, 4, 1, 1)
    idx, sums = cell_sums(mask, 0, grid)
    totals = np.zeros(grid.shape, dtype=np.int64)
    np.add.at(totals, idx, sums)
    assert grid.shape == (2, 2)
    np.testing.assert_array_equal(totals, [[0, 4], [0, 0]])


def test_cell_sums_do_not_overflow_on_large_cells() -> None:
    # A 64 px cell of all no-data holds 4096 pixels: more than a uint8 or a 255-row sum holds.
    grid = CellGrid(300, 128, 64, 0, 0)
    idx, sums = cell_sums(np.ones((300, 128), dtype=np.uint8), 0, grid)
    assert idx.tolist() == [0, 1, 2, 3]
    assert sums.dtype == np.int64
    assert (sums == 64 * 64).all()


@settings(deadline=None, max_examples=200)
@given(
    width=st.integers(0, 100_000),
    block_rows=st.integers(1, 1024),
    target_px=st.integers(0, 50_000_000),
    min_rows=st.integers(0, 4096),
)
def test_stripe_rows_is_a_whole_number_of_blocks_near_the_target(
    width: int, block_rows: int, target_px: int, min_rows: int
) -> None:
    rows = stripe_rows(width, block_rows, target_px, min_rows)
    wanted = max(min_rows, target_px // max(width, 1))
    assert rows % block_rows == 0
    assert rows >= block_rows
    assert rows >= wanted
    assert rows < max(wanted, 1) + block_rows  # rounded up to the next block, no further


def test_a_centred_window_stays_inside_the_scene() -> None:
    assert Box(row_min=100, row_max=110, col_min=200, col_max=220).centred(128, 900, 700).as_tuple() == (
        41,
        146,
        128,
        128,
    )
    assert Box(row_min=0, row_max=3, col_min=0, col_max=3).centred(128, 900, 700).as_tuple() == (
        0,
        0,
        128,
        128,
    )
    assert Box(row_min=895, row_max=899, col_min=690, col_max=699).centred(128, 900, 700).as_tuple() == (
        772,
        572,
        128,
        128,
    )
    assert Box(row_min=10, row_max=20, col_min=10, col_max=20).centred(512, 300, 700).as_tuple() == (
        0,
        0,
        300,
        512,
    )
    # A box that fits is inside its centred window wherever it lies (and the spare pixels
    # split evenly, one more before the box when odd).
    assert Box(row_min=100, row_max=109, col_min=200, col_max=219).centred(128, 900, 700) == Window(
        row=41, col=146, height=128, width=128
    )


@st.composite
def boxes_in_scenes(draw: st.DrawFn) -> tuple[Box, int, int, int]:
    """``(box, size_px, height, width)``: a box inside a scene of any size, a window of any size."""
    size_px, height, width = draw(st.integers(1, 200)), draw(st.integers(1, 300)), draw(st.integers(1, 300))
    row_min, col_min = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
    row_max, col_max = draw(st.integers(row_min, height - 1)), draw(st.integers(col_min, width - 1))
    return Box(row_min=row_min, row_max=row_max, col_min=col_min, col_max=col_max), size_px, height, width


@given(boxes_in_scenes())
def test_a_box_that_fits_is_inside_its_centred_window(case: tuple[Box, int, int, int]) -> None:
    box, patch_px, height, width = case
    window = box.centred(patch_px, height, width)
    assert 0 <= window.row <= height - window.height and 0 <= window.col <= width - window.width
    assert (window.height, window.width) == (min(patch_px, height), min(patch_px, width))
    if box.height <= window.height and box.width <= window.width:
        assert window.contains(box)


def test_a_box_is_built_from_any_record_with_its_four_fields() -> None:
    record = {"col_max": "9", "row_min": 1, "scene": "S", "row_max": 3, "col_min": "2"}
    assert Box.of(record) == Box(row_min=1, row_max=3, col_min=2, col_max=9)
