"""Scene inference: sliding windows over a whole scene, streamed, seamless.

Windows of ``window_px`` start every ``stride = window_px - overlap_px`` pixels (the last
row and column of windows are moved back to end at the scene's edge). Each window's
prediction is weighted by a smooth bump that is highest at its centre and small but
positive at its edges, and the blended probability is ``sum(w * p) / sum(w)``: overlapping
windows fade into each other without seams, and a constant model gives a constant map.

Memory: the scene is processed in bands of windows; only ``window_px`` rows of image and
accumulators are held at a time, and the rows no later band can touch are written to the
probability GeoTIFF and fed to the detection tracker right away.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiling.components import ComponentTracker, Impact


@dataclass(frozen=True)
class WindowPlan:
    """Window starts along one axis: every ``stride`` px, the last one flush with the end."""

    size: int
    window_px: int
    stride: int

    def starts(self) -> list[int]:
        if self.size <= self.window_px:
            return [0]
        starts = list(range(0, self.size - self.window_px + 1, self.stride))
        if starts[-1] != self.size - self.window_px:
            starts.append(self.size - self.window_px)
        return starts


def blend_weights(window_px: int, overlap_px: int) -> np.ndarray:
    """A separable bump: 1 in the middle, falling as a raised cosine over ``overlap_px`` at
    each edge to a floor of 0.01 (never 0, so a scene corner covered once still counts)."""
    ramp = np.ones(window_px, dtype=np.float32)
    if overlap_px > 0:
        t = (np.arange(overlap_px, dtype=np.float32) + 0.5) / overlap_px
        edge = 0.01 + 0.99 * (0.5 - 0.5 * np.cos(np.pi * t))
        ramp[:overlap_px] = edge
        ramp[-overlap_px:] = edge[::-1]
    return np.outer(ramp, ramp)


@dataclass
class SceneResult:
    """Detections of a scene (in scene pixels) and how much was predicted."""

    detections: list[Impact]
    windows: int
    skipped_windows: int


def predict_scene(
    read_rows: Callable[[int, int], np.ndarray],
    height: int,
    width: int,
    predict: Callable[[np.ndarray], np.ndarray],
    write_rows: Callable[[np.ndarray, int], None],
    *,
    window_px: int,
    overlap_px: int,
    batch_size: int,
    threshold: float,
    scale: float,
    nodata: float,
    min_area_px: int,
    progress: Callable[[int], object] | None = None,
) -> SceneResult:
    """Predict a whole scene band by band.

    Args:
        read_rows: ``read_rows(row0, rows)`` returns those full-width image rows.
        height: Scene height in px.
        width: Scene width in px.
        predict: Maps a batch ``(N, window_px, window_px, 1)`` of float32 images in [0, 1]
            to probabilities of the same shape.
        write_rows: ``write_rows(prob_rows, row0)`` receives finished probability rows.
        window_px: Window side.
        overlap_px: Overlap of neighbouring windows (``< window_px``).
        batch_size: Windows per model call.
        threshold: Probability of a detected impact pixel.
        scale: Divides pixel values into [0, 1] (255 for uint8).
        nodata: No-data pixel value: probability 0 there, windows that are all no-data
            are not predicted.
        min_area_px: Smaller detections are dropped.
        progress: Called with the number of rows finished.

    Returns:
        The detections (their ``peak`` is the highest probability) and window counts.
    """
    if not 0 <= overlap_px < window_px:
        raise ValueError(f"overlap_px {overlap_px} must be in [0, window_px={window_px})")
    stride = window_px - overlap_px
    rows_plan = WindowPlan(height, window_px, stride).starts()
    cols_plan = WindowPlan(width, window_px, stride).starts()
    win_h, win_w = min(window_px, height), min(window_px, width)
    weights = blend_weights(window_px, overlap_px)[:win_h, :win_w]
    tracker = ComponentTracker(width)
    acc_row0 = 0
    acc = np.zeros((0, width), dtype=np.float32)
    wsum = np.zeros((0, width), dtype=np.float32)
    done = 0  # rows written so far
    windows = 0
    for band, row0 in enumerate(rows_plan):
        rows = read_rows(row0, win_h)
        needed = row0 + win_h - (acc_row0 + len(acc))
        if needed > 0:  # extend the accumulators down to this band's last row
            acc = np.concatenate([acc, np.zeros((needed, width), np.float32)])
            wsum = np.concatenate([wsum, np.zeros((needed, width), np.float32)])
        for cols, probs in _predict_band(rows, cols_plan, win_w, predict, batch_size, scale, nodata):
            for col0, prob in zip(cols, probs, strict=True):
                r = row0 - acc_row0
                acc[r : r + win_h, col0 : col0 + win_w] += weights * prob
                wsum[r : r + win_h, col0 : col0 + win_w] += weights
                windows += 1
        final_end = rows_plan[band + 1] if band + 1 < len(rows_plan) else height
        if final_end > done:
            k = final_end - acc_row0
            valid = rows[done - row0 : final_end - row0] != nodata
            prob_rows = np.where(valid & (wsum[:k] > 0), acc[:k] / np.maximum(wsum[:k], 1e-12), 0.0).astype(
                np.float32
            )
            write_rows(prob_rows, done)
            tracker.add_stripe(prob_rows >= threshold, done, values=prob_rows)
            acc, wsum, acc_row0 = acc[k:], wsum[k:], final_end
            if progress:
                progress(final_end - done)
            done = final_end
    all_windows = len(rows_plan) * len(cols_plan)
    detections = [d for d in tracker.pop_complete(final=True) if d.area_px >= min_area_px]
    return SceneResult(detections, windows, all_windows - windows)


def _predict_band(
    rows: np.ndarray,
    cols_plan: list[int],
    win_w: int,
    predict: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    scale: float,
    nodata: float,
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Predict the windows of one band in batches, skipping windows that are all no-data."""
    todo = [c for c in cols_plan if not np.all(rows[:, c : c + win_w] == nodata)]
    for i in range(0, len(todo), batch_size):
        cols = todo[i : i + batch_size]
        batch = np.stack([rows[:, c : c + win_w] for c in cols]).astype(np.float32)[..., None] / scale
        probs = np.asarray(predict(batch), dtype=np.float32)[..., 0]
        yield cols, probs


def keras_predictor(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a Keras model as a batch predictor."""

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch))

    return predict
