"""Pixel and object metrics on tiny hand-built arrays whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from impacts.errors import SceneError
from tiling.config import SynthConfig
from tiling.synth import KnownObject, load_objects, synth_scenes
from training.metrics import (
    PATCH_KINDS_FP,
    ObjectAccumulator,
    PatchObjects,
    PixelAccumulator,
    object_pr_curve,
    patch_objects,
    pixel_metrics,
)


def _blob(shape: tuple[int, int], row: int, col: int, half: int = 2) -> np.ndarray:
    """Float array with a ``(2 * half + 1)``-square of ones centred on ``(row, col)``."""
    out = np.zeros(shape, dtype=np.float32)
    out[row - half : row + half + 1, col - half : col + half + 1] = 1.0
    return out


# --- pixel metrics ---------------------------------------------------------------------


def test_perfect_prediction_scores_one_and_zero_mse() -> None:
    y = np.zeros((2, 8, 8), dtype=np.uint8)
    y[0, 2:5, 2:5] = 1
    m = pixel_metrics(y, y.astype(np.float32))
    assert m == {"mse": 0.0, "iou": 1.0, "dice": 1.0, "precision": 1.0, "recall": 1.0}


def test_all_zero_prediction_of_nonempty_truth_has_zero_recall() -> None:
    y = np.zeros((4, 4), dtype=np.uint8)
    y[0, :2] = 1  # 2 of 16 pixels
    m = pixel_metrics(y, np.zeros((4, 4)))
    assert m["recall"] == 0.0
    assert m["iou"] == 0.0 and m["dice"] == 0.0
    assert m["precision"] == 0.0  # 0/0 with a non-empty truth is 0, not 1
    assert m["mse"] == pytest.approx(100 * 2 / 16)


def test_both_empty_scores_one() -> None:
    m = pixel_metrics(np.zeros((3, 3)), np.full((3, 3), 0.2))
    assert m["iou"] == m["dice"] == m["precision"] == m["recall"] == 1.0
    assert m["mse"] == pytest.approx(100 * 0.04)


def test_known_confusion_gives_known_ratios() -> None:
    y_true = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    y_prob = np.array([0.9, 0.6, 0.1, 0.7, 0.5, 0.0, 0.0, 0.49])  # TP 2, FN 1, FP 2 (0.5 counts)
    m = pixel_metrics(y_true, y_prob)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["iou"] == pytest.approx(2 / 5)
    assert m["dice"] == pytest.approx(4 / 7)
    expected_mse = np.mean((y_prob - y_true) ** 2) * 100
    assert m["mse"] == pytest.approx(expected_mse)
    assert pixel_metrics(y_true, y_prob, threshold=0.8)["precision"] == 1.0


def test_accumulator_over_split_batches_equals_whole() -> None:
    rng = np.random.default_rng(0)
    y_true = (rng.random((6, 16, 16)) < 0.1).astype(np.uint8)
    y_prob = np.clip(y_true * 0.7 + rng.random((6, 16, 16)) * 0.4, 0, 1).astype(np.float32)
    acc = PixelAccumulator(threshold=0.6)
    for lo, hi in [(0, 1), (1, 4), (4, 6)]:
        acc.update(y_true[lo:hi], y_prob[lo:hi])
    whole = pixel_metrics(y_true, y_prob, threshold=0.6)
    split = acc.result()
    assert split.keys() == whole.keys()
    for key in whole:
        assert split[key] == pytest.approx(whole[key], rel=1e-12), key


def test_pixel_metrics_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        pixel_metrics(np.zeros((2, 4, 4)), np.zeros((2, 4, 4, 1)))


# --- object matching -------------------------------------------------------------------


def test_prediction_overlapping_blob_is_true_positive_and_blob_detected() -> None:
    truth = _blob((32, 32), 10, 10)
    prob = _blob((32, 32), 12, 12) * 0.9  # overlaps the 5x5 blob by a 3x3 corner
    out = patch_objects(truth, prob, 0.5)
    assert (out.n_true, out.n_detected_true, out.n_pred, out.n_true_positive_pred) == (1, 1, 1, 1)
    assert out.false_positives == []
    assert out.valid_px == 32 * 32


def test_two_predictions_on_one_blob_are_both_true_positives() -> None:
    truth = np.zeros((32, 32))
    truth[10:20, 10:20] = 1
    prob = np.zeros((32, 32))
    prob[10:13, 10:13] = 0.9
    prob[17:20, 17:20] = 0.9
    out = patch_objects(truth, prob, 0.5)
    assert out.n_true == 1 and out.n_detected_true == 1
    assert out.n_pred == 2 and out.n_true_positive_pred == 2


def test_diagonal_pixels_are_one_component() -> None:
    truth = np.zeros((8, 8))
    truth[2, 2] = truth[3, 3] = 1
    prob = np.zeros((8, 8))
    prob[[4, 5, 6, 7], [4, 5, 6, 7]] = 1  # one diagonal 4-pixel component
    out = patch_objects(truth, prob, 0.5)
    assert out.n_true == 1 and out.n_pred == 1


def test_speck_below_min_area_is_ignored() -> None:
    truth = _blob((32, 32), 10, 10)
    prob = np.zeros((32, 32))
    prob[10, 10:13] = 0.9  # 3 px on the blob: too small to detect it
    prob[25, 25] = 0.9  # 1 px elsewhere: too small to be a false positive
    out = patch_objects(truth, prob, 0.5, min_area_px=4)
    assert (out.n_pred, out.n_true_positive_pred, out.n_detected_true) == (0, 0, 0)
    assert out.false_positives == []
    assert patch_objects(truth, prob, 0.5, min_area_px=3).n_detected_true == 1


def test_false_positive_near_planted_crater_is_crater_in_scene_coordinates() -> None:
    prob = _blob((32, 32), 20, 6)
    crater = KnownObject("crater", row=1000 + 21.0, col=500 + 7.0, radius_px=4.0)
    far_shadow = KnownObject("shadow", row=1000 + 20.0, col=500 + 20.0, radius_px=4.0)
    out = patch_objects(np.zeros((32, 32)), prob, 0.5, origin=(1000, 500), objects=[far_shadow, crater])
    assert out.n_pred == 1 and out.n_true_positive_pred == 0
    ((row, col, kind),) = out.false_positives
    assert (row, col) == pytest.approx((1020.0, 506.0))
    assert kind == "crater"
    # The same crater given in patch coordinates is far away: the origin is applied.
    out = patch_objects(np.zeros((32, 32)), prob, 0.5, objects=[crater])
    assert out.false_positives[0][2] == "other"


def test_nearest_lookalike_within_reach_names_the_false_positive() -> None:
    prob = _blob((64, 64), 30, 30)
    objects = [
        KnownObject("dune", 30.0, 40.0, 10.0),  # 10 px away, reach 15
        KnownObject("shadow", 30.0, 35.0, 2.0),  # 5 px away, reach 8: nearest
        KnownObject("crater", 30.0, 31.0, 1.0),  # 1 px away, reach 8: nearer still
    ]
    assert patch_objects(np.zeros((64, 64)), prob, 0.5, objects=objects[:2]).false_positives[0][2] == "shadow"
    assert patch_objects(np.zeros((64, 64)), prob, 0.5, objects=objects).false_positives[0][2] == "crater"
    beyond = [KnownObject("dune", 30.0, 46.0, 10.0)]  # 16 px away, reach 15
    assert patch_objects(np.zeros((64, 64)), prob, 0.5, objects=beyond).false_positives[0][2] == "other"


@pytest.mark.parametrize("kind", ["boulder", "slope_streak", "dust_devil_track"])
def test_realistic_lookalikes_name_their_false_positives(kind: str) -> None:
    prob = _blob((64, 64), 30, 30)
    out = patch_objects(np.zeros((64, 64)), prob, 0.5, objects=[KnownObject(kind, 30.0, 33.0, 3.0)])
    assert out.false_positives[0][2] == kind


def test_false_positive_next_to_nodata_is_nodata_border_else_other() -> None:
    nodata = np.zeros((32, 32), dtype=bool)
    nodata[:, :4] = True  # no-data strip on the left
    near = _blob((32, 32), 16, 8)  # columns 6..10: 2 px from no-data
    far = _blob((32, 32), 16, 24)
    out = patch_objects(np.zeros((32, 32)), near + far, 0.5, nodata=nodata)
    kinds = {round(c): k for _, c, k in out.false_positives}
    assert kinds == {8: "nodata_border", 24: "other"}
    assert out.valid_px == 32 * 28
    assert patch_objects(np.zeros((32, 32)), near, 0.5, nodata=nodata, border_px=1).false_positives[0][2] == (
        "other"
    )


def test_planted_impact_never_names_a_false_positive() -> None:
    prob = _blob((32, 32), 16, 16)
    impact = KnownObject("impact", 16.0, 16.0, 5.0)
    out = patch_objects(np.zeros((32, 32)), prob, 0.5, objects=[impact])
    assert out.false_positives[0][2] == "other"


def test_patch_objects_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="2-D"):
        patch_objects(np.zeros((8, 8)), np.zeros((8, 8, 1)), 0.5)


# --- accumulation ----------------------------------------------------------------------


def test_fp_per_100km2_for_known_area() -> None:
    acc = ObjectAccumulator()
    for i in range(10):
        fps = [(1.0, 2.0, "crater"), (3.0, 4.0, "other")] if i == 0 else []
        acc.add(PatchObjects(1, 1, 1 + len(fps), 1, fps, 128 * 128))
    res = acc.result(res_m=6.0)
    area_km2 = 10 * 128 * 128 * 36 / 1e6  # 5.898 km²
    assert res["fp_per_100km2"] == pytest.approx(2 / area_km2 * 100)  # about 33.9
    assert res["false_positives"] == 2
    # Every look-alike kind is a key (boulders, streaks and tracks are not lumped into "other").
    assert res["fp_by_kind"] == {kind: 0 for kind in PATCH_KINDS_FP} | {"crater": 1, "other": 1}
    assert {"boulder", "slope_streak", "dust_devil_track"} <= set(res["fp_by_kind"])
    assert set(res["fp_by_kind"]) == set(PATCH_KINDS_FP)
    assert (res["n_true"], res["n_pred"]) == (10, 12)
    assert res["precision"] == pytest.approx(10 / 12)
    assert res["recall"] == 1.0
    assert res["f1"] == pytest.approx(2 * (10 / 12) / (10 / 12 + 1))


def test_empty_accumulator_and_zero_scores() -> None:
    res = ObjectAccumulator().result(6.0)
    assert (res["precision"], res["recall"], res["fp_per_100km2"]) == (1.0, 1.0, 0.0)
    acc = ObjectAccumulator()
    acc.add(PatchObjects(2, 0, 1, 0, [(0.0, 0.0, "other")], 100))
    res = acc.result(6.0)
    assert (res["precision"], res["recall"], res["f1"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="res_m"):
        acc.result(0.0)


def test_pr_curve_rows_sorted_by_threshold() -> None:
    truth = _blob((32, 32), 8, 8)
    prob = truth * 0.8 + _blob((32, 32), 24, 24) * 0.4  # impact at 0.8, look-alike at 0.4
    accs: dict[float, ObjectAccumulator] = {}
    for threshold in (0.9, 0.3, 0.5):
        accs[threshold] = ObjectAccumulator()
        accs[threshold].add(patch_objects(truth, prob, threshold))
    curve = object_pr_curve(accs, res_m=6.0)
    assert [r["threshold"] for r in curve] == [0.3, 0.5, 0.9]
    assert [(r["precision"], r["recall"]) for r in curve] == [(0.5, 1.0), (1.0, 1.0), (1.0, 0.0)]
    assert curve[1]["f1"] == 1.0


# --- object lists ----------------------------------------------------------------------


def test_load_objects_reads_synth_csv_and_missing_file_is_empty(tmp_path: Path) -> None:
    (summary,) = synth_scenes(tmp_path, SynthConfig(count=1, seed=1, size=(300, 300)))
    objects = load_objects(tmp_path / f"{summary.file_name}_objects.csv")
    assert len(objects) == sum(summary.counts.values()) > 0
    for kind, count in summary.counts.items():
        assert sum(o.kind == kind for o in objects) == count
    assert all(0 <= o.row < 300 and 0 <= o.col < 300 and o.radius_px > 0 for o in objects)
    assert load_objects(tmp_path / "nothing_objects.csv") == []


def test_load_objects_reports_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad_objects.csv"
    path.write_text("id,kind,row\n0,crater,1.0\n")
    with pytest.raises(SceneError, match="radius_px"):
        load_objects(path)
    path.write_text("id,kind,row,col,radius_px,x,y\n0,crater,abc,1,2,0,0\n")
    with pytest.raises(SceneError, match="line 2"):
        load_objects(path)
