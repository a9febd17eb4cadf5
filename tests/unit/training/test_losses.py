"""Losses on hand-built masks whose answers are known."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.losses import get_loss, soft_dice_loss


def _masks() -> np.ndarray:
    """Two 16x16 patches: a 5x5 impact, and a 3x7 one elsewhere; shape (2, 16, 16, 1)."""
    y = np.zeros((2, 16, 16, 1), dtype=np.float32)
    y[0, 2:7, 3:8] = 1.0
    y[1, 10:13, 5:12] = 1.0
    return y


def _numpy(x: object) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def _tensor(x: np.ndarray) -> object:
    from keras import ops

    return ops.convert_to_tensor(x)


def test_bce_dice_prefers_the_perfect_prediction_to_the_inverted_one() -> None:
    loss = get_loss("bce_dice")
    y = _masks()
    perfect = _numpy(loss(_tensor(y), _tensor(y)))
    inverted = _numpy(loss(_tensor(y), _tensor(1.0 - y)))
    assert perfect.shape == inverted.shape == (2,), "one loss per patch"
    assert np.all(perfect < 1e-3), perfect
    assert np.all(inverted > 1.0), inverted
    assert np.all(perfect < inverted)


def test_bce_dice_grows_as_the_prediction_drifts_from_the_truth() -> None:
    loss = get_loss("bce_dice")
    y = _masks()
    values = [float(_numpy(loss(_tensor(y), _tensor(np.abs(y - err))))[0]) for err in (0.05, 0.3, 0.6)]
    assert values == sorted(values) and values[0] < values[-1], values


def test_soft_dice_is_zero_for_a_perfect_non_empty_prediction() -> None:
    y = _masks()
    np.testing.assert_allclose(_numpy(soft_dice_loss(_tensor(y), _tensor(y))), 0.0, atol=1e-6)


def test_soft_dice_is_about_one_for_a_prediction_disjoint_from_the_truth() -> None:
    y = _masks()
    disjoint = np.zeros_like(y)
    disjoint[:, 14:16, :] = 1.0  # rows no impact touches
    assert not np.any(y * disjoint)
    loss = _numpy(soft_dice_loss(_tensor(y), _tensor(disjoint)))
    assert np.all(loss > 0.97) and np.all(loss <= 1.0), loss


def test_soft_dice_of_an_empty_patch_predicted_empty_is_zero_not_nan() -> None:
    empty = np.zeros((1, 8, 8, 1), dtype=np.float32)
    loss = _numpy(soft_dice_loss(_tensor(empty), _tensor(empty)))
    assert np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)
