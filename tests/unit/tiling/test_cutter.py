"""SceneCutter: every patch of a scene from one streaming pass, checked against the arrays."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from tiling.config import TileConfig
from tiling.cutter import Cut, SceneCutter
from tiling.io import SceneInfo
from tiling.windows import Box, CellGrid

P, C = 64, 16


def _scene(
    height: int, width: int, boxes: list[Box], nodata_cols: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(1, 255, size=(height, width), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for b in boxes:
        mask[b.row_min : b.row_max + 1, b.col_min : b.col_max + 1] = 7  # any non-zero value is an impact
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    nodata = cols < nodata_cols + rows * nodata_cols // height  # a slanted black border
    image[nodata] = 0
    return image, mask, nodata


def _cfg(**changes: object) -> TileConfig:
    base = {
        "patch_px": P,
        "negative_stride_px": C,
        "positives_per_impact": 4,
        "eval_positives_per_impact": 2,
        "negatives_per_positive": 1.5,
        "border_share": 0.25,
        "max_nodata_fraction": 0.5,
        "pool_max_per_scene": 50,
    }
    return TileConfig.model_validate(base | changes)


def _run(
    image: np.ndarray,
    mask: np.ndarray,
    split: str,
    cfg: TileConfig,
    stripes: list[int],
    offset: tuple[int, int] = (5, 11),
    salt: int = 123,
) -> tuple[list[Cut], list[Cut]]:
    height, width = image.shape
    info = SceneInfo("s", height, width, "uint8", 0.0, None, Affine.identity(), (16, width))
    positives: list[Cut] = []
    cutter = SceneCutter(
        info, max(stripes), split, cfg, CellGrid(height, width, C, *offset), salt, positives.append
    )
    row = 0
    for rows in stripes:
        cutter.feed(image[row : row + rows], mask[row : row + rows])
        row += rows
    assert row == height
    return positives, cutter.finish()


def _window(a: np.ndarray, c: Cut) -> np.ndarray:
    return a[c.row : c.row + P, c.col : c.col + P]


BOXES = [
    Box(row_min=150 + 70 * k, row_max=155 + 70 * k, col_min=150 + 70 * k, col_max=155 + 70 * k)
    for k in range(6)
]


def test_train_scene_gets_balanced_positives_negatives_and_pool() -> None:
    image, mask, nodata = _scene(600, 700, BOXES, nodata_cols=60)
    positives, rest = _run(image, mask, "train", _cfg(), [37] * 16 + [8])
    negatives = [c for c in rest if c.kind == "negative"]
    pool = [c for c in rest if c.kind == "pool"]
    assert len(positives) == 24 and len(negatives) == 36 and len(pool) == 50
    for c in positives:
        assert np.array_equal(c.image, _window(image, c))
        assert np.array_equal(c.mask, _window(mask, c) != 0)
    for c in negatives + pool:
        assert np.array_equal(c.image, _window(image, c))
        assert not _window(mask, c).any(), f"{c.kind} at {c.row},{c.col} holds impact pixels"
        assert _window(nodata, c).mean() <= 0.5 and c.nodata_fraction == pytest.approx(
            _window(nodata, c).mean()
        )
    assert sum(bool(_window(nodata, c).any()) for c in negatives) == round(0.25 * 36)
    assert not {(c.row, c.col) for c in pool} & {(c.row, c.col) for c in negatives}
    for b in BOXES:
        whole = [
            c
            for c in positives
            if c.row <= b.row_min and b.row_max < c.row + P and c.col <= b.col_min and b.col_max < c.col + P
        ]
        assert len(whole) == 4, "each impact lies whole in its crops"


def test_val_and_test_scenes_get_eval_counts_and_no_pool() -> None:
    image, mask, _ = _scene(600, 700, BOXES, nodata_cols=60)
    positives, rest = _run(image, mask, "val", _cfg(), [600])
    assert len(positives) == 12
    # eval_negatives_per_positive (1.0), not the train ratio (1.5)
    assert sum(c.kind == "negative" for c in rest) == 12 and not any(c.kind == "pool" for c in rest)


def test_negatives_cover_the_whole_scene() -> None:
    height, width = 1024, 1536
    image, mask, _ = _scene(
        height,
        width,
        [
            Box(row_min=30, row_max=35, col_min=40, col_max=45),
            Box(row_min=100, row_max=104, col_min=120, col_max=126),
        ],
    )
    _, rest = _run(
        image,
        mask,
        "train",
        _cfg(positives_per_impact=8, negatives_per_positive=3.0, border_share=0.0),
        [64] * 16,
    )
    negatives = [c for c in rest if c.kind == "negative"]
    assert len(negatives) == 48
    rows = np.array([c.row + P / 2 for c in negatives])
    cols = np.array([c.col + P / 2 for c in negatives])
    for top in (rows < height / 2, rows >= height / 2):
        for left in (cols < width / 2, cols >= width / 2):
            assert (top & left).sum() >= 4, "a quadrant of the scene got (almost) no negatives"


def test_an_impact_taller_than_a_stripe_is_cut_whole() -> None:
    image, mask, _ = _scene(400, 400, [Box(row_min=100, row_max=300, col_min=200, col_max=205)])
    positives, _ = _run(image, mask, "train", _cfg(), [16] * 25)
    assert len(positives) == 4
    assert all(np.array_equal(c.mask, _window(mask, c) != 0) and c.mask.all(axis=0).any() for c in positives)


def test_impact_just_below_a_stripe_keeps_the_rows_its_crops_need() -> None:
    image = np.random.default_rng(0).integers(1, 255, size=(512, 256), dtype=np.uint8)
    mask = np.zeros((512, 256), np.uint8)
    mask[128:131, 100:103] = 1
    cfg = _cfg(positives_per_impact=16)
    positives, _ = _run(image, mask, "train", cfg, [128] * 4, offset=(15, 0))
    assert len(positives) == 16
    assert all(c.image.shape == (P, P) and np.array_equal(c.image, _window(image, c)) for c in positives)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 299), max_size=8))
def test_result_does_not_depend_on_stripe_boundaries(seed: int, cuts: list[int]) -> None:
    rng = np.random.default_rng(seed)
    image = rng.integers(1, 255, size=(300, 260), dtype=np.uint8)
    image[:, : int(rng.integers(0, 40))] = 0
    mask = (rng.random((300, 260)) < 0.002).astype(np.uint8)
    bounds = [0, *sorted(set(cuts)), 300]
    stripes = [b - a for a, b in itertools.pairwise(bounds)]
    whole = _run(image, mask, "train", _cfg(), [300])
    striped = _run(image, mask, "train", _cfg(), stripes)

    def key(cuts: list[Cut]) -> list[tuple[str, int, int, bytes]]:
        return sorted((c.kind, c.row, c.col, c.image.tobytes()) for c in cuts)

    assert key(whole[0]) == key(striped[0]) and key(whole[1]) == key(striped[1])
    for c in striped[0]:
        assert np.array_equal(c.image, _window(image, c)) and np.array_equal(c.mask, _window(mask, c) != 0)


def test_another_seed_draws_other_patches() -> None:
    image, mask, _ = _scene(600, 700, BOXES, nodata_cols=60)
    _, a = _run(image, mask, "train", _cfg(), [600], salt=1)
    _, b = _run(image, mask, "train", _cfg(), [600], salt=2)
    assert {(c.row, c.col) for c in a} != {(c.row, c.col) for c in b}
