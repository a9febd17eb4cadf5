"""Pixel- and object-level metrics of impact segmentation (pure numpy + scipy, no TensorFlow).

Pixel level (:func:`pixel_metrics`, :class:`PixelAccumulator`): the mean squared error of
the probabilities in percent (the scientists' published measure, ``100 * mean((p - y)**2)``)
and, after thresholding ``p >= threshold``, with ``TP``/``FP``/``FN`` pixel counts::

    iou = TP / (TP + FP + FN)      dice = 2 TP / (2 TP + FP + FN)
    precision = TP / (TP + FP)     recall = TP / (TP + FN)

A ratio whose denominator is zero is 1.0 when prediction and truth are both empty (nothing
to find, nothing found) and 0.0 otherwise.

Object level (:func:`patch_objects`, :class:`ObjectAccumulator`, :func:`object_pr_curve`):
what an analyst sees. Predicted objects are 8-connected components of ``p >= threshold``
(specks below ``min_area_px`` dropped), true objects 8-connected components of the mask. A
prediction touching a true object by one pixel is a true positive; a true object touched by
any prediction is detected. Each unmatched prediction (false positive) is named after the
look-alike that caused it (planted crater, shadow, dune field; the no-data border; other),
which tells hard-negative mining what the model still confuses with an impact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from tiling.synth import KnownObject
from tiling.synth_objects import LOOKALIKE_KINDS

#: Kinds a false positive can be given, in report order: every planted look-alike kind
#: (the realistic world's boulders, slope streaks and dust-devil tracks too), then the
#: no-data border and the rest.
PATCH_KINDS_FP: tuple[str, ...] = (*LOOKALIKE_KINDS, "nodata_border", "other")
#: Planted look-alikes that name a false positive near their centre.
_LOOKALIKE_KINDS = frozenset(PATCH_KINDS_FP) - {"nodata_border", "other"}
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
#: A planted look-alike names a false positive whose centroid lies within
#: ``max(_REACH_RADII * radius_px, _MIN_REACH_PX)`` of its centre.
_REACH_RADII = 1.5
_MIN_REACH_PX = 8.0


def _ratio(num: int, den: int, both_empty: bool) -> float:
    """``num / den``; for ``den == 0``, 1.0 when prediction and truth are empty, else 0.0."""
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


class PixelAccumulator:
    """Streaming pixel metrics: feed batches with :meth:`update`, read :meth:`result`.

    Keeps only counts (true/false positive and false negative pixels, squared-error sum),
    so evaluating any number of batches never holds all pixels.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        """Start empty.

        Args:
            threshold: A pixel is predicted as impact when its probability is ``>=`` this.
        """
        self.threshold = threshold
        self.n_px = 0
        self.sq_err_sum = 0.0
        self.tp = 0
        self.fp = 0
        self.fn = 0

    def update(self, y_true: np.ndarray, y_prob: np.ndarray) -> None:
        """Add one batch.

        Args:
            y_true: Truth, 0 = background, 1 = impact (any shape, e.g. ``N x H x W``).
            y_prob: Probabilities in [0, 1], same shape as ``y_true``.

        Raises:
            ValueError: The shapes differ.
        """
        y_true = np.asarray(y_true)
        y_prob = np.asarray(y_prob)
        if y_true.shape != y_prob.shape:
            raise ValueError(
                f"y_true has shape {y_true.shape} but y_prob {y_prob.shape}; "
                f"squeeze or reshape them to the same shape first"
            )
        truth = y_true.astype(np.float64, copy=False)
        diff = y_prob.astype(np.float64, copy=False) - truth
        self.sq_err_sum += float(np.dot(diff.ravel(), diff.ravel()))
        self.n_px += int(y_true.size)
        pred = y_prob >= self.threshold
        true = truth >= 0.5
        tp = int(np.count_nonzero(pred & true))
        self.tp += tp
        self.fp += int(np.count_nonzero(pred)) - tp
        self.fn += int(np.count_nonzero(true)) - tp

    def result(self) -> dict[str, float]:
        """Metrics of every pixel fed so far.

        Returns:
            ``mse`` (percent), ``iou``, ``dice``, ``precision`` and ``recall``; with no
            pixels fed, ``mse`` is 0.0 and the others 1.0 (nothing to find, nothing found).
        """
        tp, fp, fn = self.tp, self.fp, self.fn
        both_empty = tp + fp == 0 and tp + fn == 0
        return {
            "mse": 100.0 * self.sq_err_sum / self.n_px if self.n_px else 0.0,
            "iou": _ratio(tp, tp + fp + fn, both_empty),
            "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
            "precision": _ratio(tp, tp + fp, both_empty),
            "recall": _ratio(tp, tp + fn, both_empty),
        }


def pixel_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Pixel metrics of one set of predictions.

    Args:
        y_true: Truth, 0 = background, 1 = impact (any shape, e.g. ``N x H x W``).
        y_prob: Probabilities in [0, 1], same shape as ``y_true``.
        threshold: A pixel is predicted as impact when its probability is ``>=`` this.

    Returns:
        ``mse`` (mean squared error of ``y_prob`` against ``y_true``, in percent), ``iou``,
        ``dice``, ``precision`` and ``recall`` (see the module docstring for 0/0).

    Raises:
        ValueError: The shapes differ.
    """
    acc = PixelAccumulator(threshold)
    acc.update(y_true, y_prob)
    return acc.result()


@dataclass
class PatchObjects:
    """Object-level outcome of one patch.

    ``false_positives`` holds ``(scene_row, scene_col, kind)`` of each unmatched
    prediction's centroid, ``kind`` one of :data:`PATCH_KINDS_FP`; ``valid_px`` counts the
    patch's pixels that are not no-data.
    """

    n_true: int
    n_detected_true: int
    n_pred: int
    n_true_positive_pred: int
    false_positives: list[tuple[float, float, str]]
    valid_px: int


def _lookalike_kind(
    row: float, col: float, obj_rc: np.ndarray, obj_reach: np.ndarray, obj_kind: list[str]
) -> str | None:
    """Kind of the nearest look-alike whose reach covers scene point ``(row, col)``, if any."""
    if not obj_kind:
        return None
    dist = np.hypot(obj_rc[:, 0] - row, obj_rc[:, 1] - col)
    dist = np.where(dist <= obj_reach, dist, np.inf)
    k = int(np.argmin(dist))
    return obj_kind[k] if np.isfinite(dist[k]) else None


def patch_objects(
    true_mask: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    *,
    nodata: np.ndarray | None = None,
    origin: tuple[int, int] = (0, 0),
    objects: Sequence[KnownObject] = (),
    min_area_px: int = 4,
    border_px: int = 3,
) -> PatchObjects:
    """Match predicted objects to true objects in one patch and name the false positives.

    A false positive takes the kind of the nearest planted non-impact object whose centre
    lies within ``max(1.5 * radius_px, 8)`` px of its centroid; failing that it is
    ``"nodata_border"`` when one of its pixels lies within ``border_px`` (Euclidean) of a
    no-data pixel, and ``"other"`` otherwise. Planted impacts never name a false positive.

    Args:
        true_mask: ``H x W`` truth, non-zero = impact.
        prob: ``H x W`` impact probabilities.
        threshold: A pixel is predicted as impact when its probability is ``>=`` this.
        nodata: ``H x W`` bool mask, True = no-data; None means every pixel is valid.
        origin: Scene ``(row, col)`` of the patch's top-left pixel.
        objects: Planted objects of the scene (scene pixel coordinates), e.g. from
            :func:`tiling.synth.load_objects`; empty for real scenes.
        min_area_px: Predicted components smaller than this are ignored (neither counted
            nor allowed to detect a true object).
        border_px: How close (px) to no-data a false positive must come to be
            ``"nodata_border"``.

    Returns:
        Counts of true, detected, predicted and true-positive objects, the false positives
        in scene coordinates, and the number of valid pixels.

    Raises:
        ValueError: The arrays are not 2-D of one shape, or ``min_area_px < 1`` or
            ``border_px < 0``.
    """
    prob = np.asarray(prob)
    true_mask = np.asarray(true_mask)
    if prob.ndim != 2 or true_mask.shape != prob.shape or (nodata is not None and nodata.shape != prob.shape):
        raise ValueError(
            f"patch_objects needs 2-D arrays of one shape, got true_mask {true_mask.shape}, "
            f"prob {prob.shape}, nodata {None if nodata is None else nodata.shape}; "
            f"drop batch/channel axes first"
        )
    if min_area_px < 1 or border_px < 0:
        raise ValueError(f"min_area_px must be >= 1 and border_px >= 0, got {min_area_px}, {border_px}")

    true_labels, n_true = ndimage.label(true_mask != 0, structure=_EIGHT_CONNECTED)
    pred_labels, n_raw = ndimage.label(prob >= threshold, structure=_EIGHT_CONNECTED)
    area = np.bincount(pred_labels.ravel(), minlength=n_raw + 1)
    kept = area >= min_area_px
    kept[0] = False  # background
    n_pred = int(kept.sum())

    # Overlapping (prediction, truth) label pairs, specks excluded.
    both = (pred_labels > 0) & (true_labels > 0)
    pairs_pred = pred_labels[both]
    pairs_true = true_labels[both]
    use = kept[pairs_pred]
    tp_labels = np.unique(pairs_pred[use])
    n_detected = int(np.unique(pairs_true[use]).size)

    unmatched = np.flatnonzero(kept)
    unmatched = unmatched[~np.isin(unmatched, tp_labels)]
    false_positives: list[tuple[float, float, str]] = []
    if unmatched.size:
        rows, cols = np.indices(prob.shape)
        flat = pred_labels.ravel()
        sum_r = np.bincount(flat, weights=rows.ravel(), minlength=n_raw + 1)
        sum_c = np.bincount(flat, weights=cols.ravel(), minlength=n_raw + 1)
        lookalikes = [o for o in objects if o.kind in _LOOKALIKE_KINDS]
        obj_rc = np.array([(o.row, o.col) for o in lookalikes], dtype=np.float64).reshape(-1, 2)
        obj_reach = np.array(
            [max(_REACH_RADII * o.radius_px, _MIN_REACH_PX) for o in lookalikes], dtype=np.float64
        )
        obj_kind = [o.kind for o in lookalikes]
        near_nodata: np.ndarray | None = None
        if nodata is not None and nodata.any():
            # Distance of each pixel to the nearest no-data pixel; min over a component.
            dist = ndimage.distance_transform_edt(~nodata.astype(bool))
            min_dist = ndimage.minimum(dist, pred_labels, index=unmatched)
            near_nodata = np.atleast_1d(np.asarray(min_dist)) <= border_px
        for i, label in enumerate(unmatched.tolist()):
            row = origin[0] + sum_r[label] / area[label]
            col = origin[1] + sum_c[label] / area[label]
            kind = _lookalike_kind(row, col, obj_rc, obj_reach, obj_kind)
            if kind is None:
                kind = "nodata_border" if near_nodata is not None and near_nodata[i] else "other"
            false_positives.append((float(row), float(col), kind))

    valid_px = int(prob.size - (np.count_nonzero(nodata) if nodata is not None else 0))
    return PatchObjects(
        n_true=int(n_true),
        n_detected_true=n_detected,
        n_pred=n_pred,
        n_true_positive_pred=int(tp_labels.size),
        false_positives=false_positives,
        valid_px=valid_px,
    )


class ObjectAccumulator:
    """Sums :class:`PatchObjects` over many patches (one accumulator per threshold)."""

    def __init__(self) -> None:
        """Start empty."""
        self.n_true = 0
        self.n_detected_true = 0
        self.n_pred = 0
        self.n_true_positive_pred = 0
        self.valid_px = 0
        self.false_positives: list[tuple[float, float, str]] = []

    def add(self, outcome: PatchObjects) -> None:
        """Add one patch's outcome.

        Args:
            outcome: What :func:`patch_objects` returned for the patch.
        """
        self.n_true += outcome.n_true
        self.n_detected_true += outcome.n_detected_true
        self.n_pred += outcome.n_pred
        self.n_true_positive_pred += outcome.n_true_positive_pred
        self.valid_px += outcome.valid_px
        self.false_positives.extend(outcome.false_positives)

    def result(self, res_m: float) -> dict[str, Any]:
        """Object-level metrics of every patch added.

        ``precision`` = true-positive predictions / predictions (1.0 without predictions),
        ``recall`` = detected true objects / true objects (1.0 without true objects), ``f1``
        their harmonic mean (0.0 when both are 0), and ``fp_per_100km2`` = false positives
        per 100 km² of valid (not no-data) area, ``area_km2 = valid_px * res_m**2 / 1e6``.

        Args:
            res_m: Pixel size in metres.

        Returns:
            ``precision``, ``recall``, ``f1``, ``n_true``, ``n_pred``, ``false_positives``
            (a count), ``fp_per_100km2`` (0.0 when there is neither valid area nor a false
            positive, infinity for false positives on no valid area) and ``fp_by_kind``
            (count for every kind in :data:`PATCH_KINDS_FP`).

        Raises:
            ValueError: ``res_m`` is not positive.
        """
        if not res_m > 0:
            raise ValueError(f"res_m must be a positive pixel size in metres, got {res_m}")
        precision = self.n_true_positive_pred / self.n_pred if self.n_pred else 1.0
        recall = self.n_detected_true / self.n_true if self.n_true else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        n_fp = len(self.false_positives)
        area_km2 = self.valid_px * res_m**2 / 1e6
        # No valid area: no rate to speak of without false positives, unbounded with some.
        fp_per_100km2 = math.inf if n_fp else 0.0
        if area_km2 > 0:
            fp_per_100km2 = n_fp / area_km2 * 100.0
        by_kind = dict.fromkeys(PATCH_KINDS_FP, 0)
        for _, _, kind in self.false_positives:
            by_kind[kind] = by_kind.get(kind, 0) + 1
        return {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "n_true": self.n_true,
            "n_pred": self.n_pred,
            "false_positives": n_fp,
            "fp_per_100km2": fp_per_100km2,
            "fp_by_kind": by_kind,
        }


def object_pr_curve(
    outcomes_by_threshold: dict[float, ObjectAccumulator], res_m: float
) -> list[dict[str, float]]:
    """Object-level precision/recall at several thresholds.

    Args:
        outcomes_by_threshold: One accumulator per threshold, each fed the same patches
            through :func:`patch_objects` at its threshold.
        res_m: Pixel size in metres.

    Returns:
        One row per threshold, ascending: ``threshold``, ``precision``, ``recall``, ``f1``.

    Raises:
        ValueError: ``res_m`` is not positive.
    """
    rows = []
    for threshold in sorted(outcomes_by_threshold):
        res = outcomes_by_threshold[threshold].result(res_m)
        rows.append(
            {
                "threshold": float(threshold),
                "precision": float(res["precision"]),
                "recall": float(res["recall"]),
                "f1": float(res["f1"]),
            }
        )
    return rows
