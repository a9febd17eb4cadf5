"""Report figures: each writes a PNG of the expected pixel size and rejects bad input clearly."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from training.grids import CELL_IN, COLORBAR_IN, GRID_TITLE_IN, _stretch, plot_prediction_grid
from training.report import DPI, plot_loss_curves, plot_pr_curve, plot_rounds

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PATCH_PX = 32


def _png_size(path: Path) -> tuple[int, int]:
    """(height, width) in pixels of a PNG, after checking it is one."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)
    return pixels.shape[0], pixels.shape[1]


def _assert_size(path: Path, width_in: float, height_in: float) -> None:
    height, width = _png_size(path)
    assert width == pytest.approx(width_in * DPI, abs=2)
    assert height == pytest.approx(height_in * DPI, abs=2)


Patches = tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]


def _patches(n: int, dtype: type = np.uint8, seed: int = 0) -> Patches:
    """``n`` images with a bright disc, its mask, and a blurry probability around it."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:PATCH_PX, :PATCH_PX]
    images: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    for _ in range(n):
        r0, c0 = rng.integers(8, PATCH_PX - 8, size=2)
        dist = np.hypot(rows - r0, cols - c0)
        truth = (dist < 5).astype(np.uint8)
        peak = np.iinfo(dtype).max // 2
        noise = rng.integers(0, peak // 4, size=truth.shape, dtype=np.int64)
        images.append((noise + truth.astype(np.int64) * peak).astype(dtype))
        truths.append(truth)
        probs.append(np.exp(-((dist / 6) ** 2)).astype(np.float32))
    return images, truths, probs


HISTORY = {
    "loss": [0.9, 0.5, 0.3, 0.25, 0.2, 0.18],
    "val_loss": [1.0, 0.6, 0.4, 0.45, 0.35, 0.38],
    "dice": [0.2, 0.4, 0.6, 0.65, 0.7, 0.72],
    "val_dice": [0.1, 0.3, 0.5, 0.5, 0.55, 0.52],
    "learning_rate": [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4],
}


def test_loss_curves_two_panels_with_metrics(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "loss.png"
    assert plot_loss_curves(HISTORY, path, round_starts=[0, 3]) == path
    _assert_size(path, 12.0, 4.2)


def test_loss_curves_one_panel_without_metrics(tmp_path: Path) -> None:
    history = {"loss": HISTORY["loss"], "val_loss": HISTORY["val_loss"]}
    path = plot_loss_curves(history, tmp_path / "loss.png", title="Round 0")
    _assert_size(path, 6.0, 4.2)


def test_loss_curves_single_epoch_and_out_of_range_rounds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="training.report"):
        path = plot_loss_curves({"loss": [0.5]}, tmp_path / "one.png", round_starts=[0, 1, 7, -2])
    _assert_size(path, 6.0, 4.2)
    assert sum("outside the 1 epochs" in m for m in caplog.messages) == 3


def test_loss_curves_tolerate_nan_val_loss(tmp_path: Path) -> None:
    history = {"loss": [1.0, 0.5], "val_loss": [float("nan"), float("nan")]}
    _png_size(plot_loss_curves(history, tmp_path / "nan.png"))


def test_loss_curves_need_loss(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no 'loss'"):
        plot_loss_curves({"val_loss": [0.3]}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


PR_ROWS = [
    {"threshold": t, "precision": 0.5 + 0.45 * t, "recall": 0.95 - 0.8 * t, "f1": 0.0}
    for t in np.linspace(0.05, 0.95, 19)
]
for _row in PR_ROWS:
    _row["f1"] = 2 * _row["precision"] * _row["recall"] / (_row["precision"] + _row["recall"])


def test_pr_curve_with_chosen_threshold(tmp_path: Path) -> None:
    path = tmp_path / "pr" / "pr.png"
    assert plot_pr_curve(PR_ROWS, path, chosen_threshold=0.42) == path
    _assert_size(path, 6.0, 5.4)


def test_pr_curve_single_row_and_undefined_precision(tmp_path: Path) -> None:
    one = [{"threshold": 0.5, "precision": 0.8, "recall": 0.6, "f1": 0.686}]
    _assert_size(plot_pr_curve(one, tmp_path / "one.png", chosen_threshold=0.9), 6.0, 5.4)
    nan_tail = [*PR_ROWS, {"threshold": 0.99, "precision": float("nan"), "recall": 0.0, "f1": 0.0}]
    _png_size(plot_pr_curve(nan_tail, tmp_path / "nan.png", chosen_threshold=0.99))


def test_pr_curve_rejects_empty_and_incomplete_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows is empty"):
        plot_pr_curve([], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"row 1 lacks \['f1'\]"):
        plot_pr_curve([PR_ROWS[0], {"threshold": 0.5, "precision": 0.5, "recall": 0.5}], tmp_path / "x.png")


def test_prediction_grid_size_grows_with_rows(tmp_path: Path) -> None:
    three = plot_prediction_grid(*_patches(3), tmp_path / "g3.png", titles=["a", "b", "c"], title="Val")
    six = plot_prediction_grid(*_patches(6), tmp_path / "g6.png", title="Val")
    _assert_size(three, 3 * CELL_IN + COLORBAR_IN, 3 * CELL_IN + GRID_TITLE_IN)
    _assert_size(six, 3 * CELL_IN + COLORBAR_IN, 6 * CELL_IN + GRID_TITLE_IN)
    assert _png_size(six)[0] / _png_size(three)[0] == pytest.approx(2.0, abs=0.1)


def test_prediction_grid_uint16_and_channel_axis(tmp_path: Path) -> None:
    images, truths, probs = _patches(2, dtype=np.uint16)
    images = [img[..., None] for img in images]
    probs = [p[..., None] for p in probs]
    path = plot_prediction_grid(images, truths, probs, tmp_path / "u16.png", threshold=0.3)
    _assert_size(path, 3 * CELL_IN + COLORBAR_IN, 2 * CELL_IN)


def test_prediction_grid_threshold_never_crossed_is_quiet(tmp_path: Path) -> None:
    images, truths, _ = _patches(2)
    flat = [np.zeros((PATCH_PX, PATCH_PX), np.float32), np.ones((PATCH_PX, PATCH_PX), np.float32)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # contour() warns when the level is outside the data
        _png_size(plot_prediction_grid(images, truths, flat, tmp_path / "flat.png"))


@pytest.mark.parametrize(
    ("n_images", "n_truths", "n_probs", "titles", "expected"),
    [
        (3, 2, 3, (), "images=3, truths=2, probs=3"),
        (2, 2, 1, (), "images=2, truths=2, probs=1"),
        (2, 2, 2, ("only one",), "titles=1"),
        (0, 0, 0, (), "images=0"),
    ],
)
def test_prediction_grid_rejects_mismatched_lengths(
    tmp_path: Path, n_images: int, n_truths: int, n_probs: int, titles: tuple[str, ...], expected: str
) -> None:
    images, truths, probs = _patches(3)
    with pytest.raises(ValueError, match=expected):
        plot_prediction_grid(
            images[:n_images], truths[:n_truths], probs[:n_probs], tmp_path / "x.png", titles=titles
        )
    assert not (tmp_path / "x.png").exists()


def test_prediction_grid_rejects_mismatched_shapes(tmp_path: Path) -> None:
    images, truths, probs = _patches(2)
    probs[1] = probs[1][:16]
    with pytest.raises(ValueError, match=r"row 1 has image \(32, 32\), truth \(32, 32\), probs \(16, 32\)"):
        plot_prediction_grid(images, truths, probs, tmp_path / "x.png")
    images[0] = np.zeros((PATCH_PX, PATCH_PX, 3), np.uint8)
    with pytest.raises(ValueError, match=r"image of row 0 has shape \(32, 32, 3\)"):
        plot_prediction_grid(images, truths, probs, tmp_path / "x.png")


def test_stretch_uses_own_percentiles() -> None:
    image = np.linspace(20_000, 40_000, 10_000).reshape(100, 100).astype(np.uint16)
    out = _stretch(image)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.mean(out == 0.0) == pytest.approx(0.01, abs=0.002)
    assert np.all(_stretch(np.full((4, 4), 7, np.uint16)) == 0.5)


def _round(n: int, precision: float, recall: float, fp: dict[str, int], test: bool = True) -> dict[str, Any]:
    obj = {"precision": precision, "recall": recall, "f1": 2 * precision * recall / (precision + recall)}
    out: dict[str, Any] = {"round": n, "val": {"object": obj, "fp_by_kind": fp}}
    if test:
        out["test"] = {"object": {k: v - 0.02 for k, v in obj.items()}, "fp_by_kind": fp}
    return out


ROUNDS = [
    _round(0, 0.55, 0.85, {"crater": 40, "dune": 22, "dust_devil_track": 9}),
    _round(1, 0.72, 0.83, {"crater": 18, "dune": 12, "dust_devil_track": 5, "boulder": 2}),
    _round(2, 0.81, 0.82, {"crater": 9, "dune": 5}),
]


def test_rounds_with_test_split(tmp_path: Path) -> None:
    path = tmp_path / "rounds" / "rounds.png"
    assert plot_rounds(ROUNDS, path) == path
    _assert_size(path, 11.0, 4.4)


def test_rounds_val_only_and_single_round(tmp_path: Path) -> None:
    mixed = [ROUNDS[0], _round(1, 0.7, 0.8, {"crater": 3}, test=False)]
    _png_size(plot_rounds(mixed, tmp_path / "mixed.png"))
    _png_size(plot_rounds([_round(0, 0.5, 0.5, {}, test=False)], tmp_path / "one.png"))


def test_rounds_with_whole_scenes_get_a_third_panel(tmp_path: Path) -> None:
    rounds = [
        {
            **r,
            "val": {
                **r["val"],
                "whole_scene": {
                    "operating": {"recall": 0.7 + 0.1 * k, "false_candidates_per_100km2": 30.0 - 10 * k}
                },
            },
        }
        for k, r in enumerate(ROUNDS)
    ]
    rounds[0]["test"] = {
        **rounds[0]["test"],
        "whole_scene": {"operating": {"recall": None, "false_candidates_per_100km2": 12.0}},
    }
    path = plot_rounds(rounds, tmp_path / "rounds.png")
    _assert_size(path, 16.0, 4.4)


def test_rounds_rejects_empty_and_splitless(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rounds is empty"):
        plot_rounds([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="round entry 1 has neither 'val' nor 'test'"):
        plot_rounds([ROUNDS[0], {"round": 1}], tmp_path / "x.png")
