"""Sliding-window scene inference: seamless blending, streaming, detections."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.inference import WindowPlan, blend_weights, predict_scene


def _run(image: np.ndarray, predict, window: int, overlap: int, **kw: object) -> tuple[np.ndarray, object]:  # type: ignore[no-untyped-def]
    height, width = image.shape
    out = np.full((height, width), -1.0, dtype=np.float32)
    written: list[int] = []

    def write(rows: np.ndarray, row0: int) -> None:
        assert row0 == sum(written), "rows must arrive in order, once"
        out[row0 : row0 + len(rows)] = rows
        written.append(len(rows))

    options = {"batch_size": 3, "threshold": 0.5, "scale": 255.0, "nodata": 0.0, "min_area_px": 1} | kw
    result = predict_scene(
        lambda r, n: image[r : r + n],
        height,
        width,
        predict,
        write,
        window_px=window,
        overlap_px=overlap,
        **options,
    )  # type: ignore[arg-type]
    assert sum(written) == height
    return out, result


@settings(max_examples=25, deadline=None)
@given(height=st.integers(64, 300), width=st.integers(64, 300), overlap=st.sampled_from([0, 8, 16, 31]))
def test_a_model_that_agrees_everywhere_gives_its_answer_without_seams(
    height: int, width: int, overlap: int
) -> None:
    image = np.random.default_rng(height * width).integers(1, 256, size=(height, width), dtype=np.uint8)
    identity, _ = _run(image, lambda batch: batch, 64, overlap)  # prob = image / 255 in every window
    np.testing.assert_allclose(identity, image / 255.0, atol=1e-5)
    constant, _ = _run(image, lambda batch: np.full_like(batch, 0.7), 64, overlap)
    np.testing.assert_allclose(constant, 0.7, atol=1e-5)


def test_no_data_gets_probability_zero_and_all_no_data_windows_are_skipped() -> None:
    image = np.full((200, 300), 120, dtype=np.uint8)
    image[:, :130] = 0  # a black border wider than two windows
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return np.ones_like(batch)

    prob, result = _run(image, predict, 64, 16)
    assert np.all(prob[:, :130] == 0) and np.all(prob[:, 130:] == 1)
    assert result.skipped_windows > 0 and sum(calls) == result.windows


def test_detections_are_the_blobs_with_their_peak_score() -> None:
    image = np.full((300, 260), 200, dtype=np.uint8)
    rr, cc = np.ogrid[:300, :260]
    image[(rr - 150) ** 2 + (cc - 60) ** 2 <= 100] = 20  # a dark disk of radius 10 at (150, 60)
    image[(rr - 40) ** 2 + (cc - 200) ** 2 <= 9] = 40  # a small one at (40, 200)

    def dark(batch: np.ndarray) -> np.ndarray:
        return np.where(batch < 0.5, 0.9, 0.05).astype(np.float32)

    _, result = _run(image, dark, 64, 16, min_area_px=5)
    found = sorted((round(d.centroid_row), round(d.centroid_col), d.area_px) for d in result.detections)
    assert found == [(40, 200, 29), (150, 60, 317)]
    assert all(d.peak == pytest.approx(0.9) for d in result.detections)
    _, result = _run(image, dark, 64, 16, min_area_px=50)
    assert len(result.detections) == 1


def test_a_cluster_sharing_a_halo_is_one_detection_with_merging_across_bands() -> None:
    image = np.full((256, 256), 200, dtype=np.uint8)
    rr, cc = np.ogrid[:256, :256]
    image[(rr - 96) ** 2 + (cc - 100) ** 2 <= 14**2] = 150  # the shared halo, too faint to detect
    # Five dark spots of radius 2 in the halo, across the band boundary at row 96 (the
    # windows of 64 px with 16 px overlap start every 48 rows), and one spot far away.
    spots = [(90, 95), (91, 105), (100, 94), (102, 104), (96, 100), (200, 200)]
    for row, col in spots:
        image[(rr - row) ** 2 + (cc - col) ** 2 <= 4] = 30
    dark = image < 100

    def model(batch: np.ndarray) -> np.ndarray:
        return np.where(batch < 0.5, 0.9, 0.05).astype(np.float32)

    _, apart = _run(image, model, 64, 16, min_area_px=5)
    assert sorted((round(d.centroid_row), round(d.centroid_col)) for d in apart.detections) == sorted(spots)
    _, merged = _run(image, model, 64, 16, min_area_px=5, merge_distance_px=6)
    cluster, alone = sorted(merged.detections, key=lambda d: d.box.row_min)
    rows, cols = np.nonzero(dark[:150])
    assert cluster.area_px == len(rows) == 5 * 13
    assert (cluster.centroid_row, cluster.centroid_col) == pytest.approx((rows.mean(), cols.mean()))
    assert (cluster.box.row_min, cluster.box.row_max) == (rows.min(), rows.max())
    assert (cluster.box.col_min, cluster.box.col_max) == (cols.min(), cols.max())
    assert cluster.peak == pytest.approx(0.9)
    assert (round(alone.centroid_row), round(alone.centroid_col), alone.area_px) == (200, 200, 13)


def test_the_minimum_area_applies_to_merged_detections() -> None:
    image = np.full((128, 128), 200, dtype=np.uint8)
    image[40:42, 40:42] = 30  # two 4 px specks 3 px apart: each below a minimum of 6 px
    image[40:42, 45:47] = 30

    def model(batch: np.ndarray) -> np.ndarray:
        return np.where(batch < 0.5, 0.9, 0.05).astype(np.float32)

    assert _run(image, model, 64, 16, min_area_px=6)[1].detections == []
    (merged,) = _run(image, model, 64, 16, min_area_px=6, merge_distance_px=3)[1].detections
    assert merged.area_px == 8 and (merged.box.col_min, merged.box.col_max) == (40, 46)


def test_window_plan_covers_the_axis_and_ends_flush() -> None:
    assert WindowPlan(300, 64, 48).starts() == [0, 48, 96, 144, 192, 236]
    assert WindowPlan(64, 64, 48).starts() == [0]
    weights = blend_weights(64, 16)
    assert weights.min() > 0 and weights[32, 32] == 1.0 and weights[0, 0] < 0.05
