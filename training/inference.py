"""Scene inference: sliding windows over a whole scene, streamed, seamless.

Windows of ``window_px`` start every ``stride = window_px - overlap_px`` pixels (the last
row and column of windows are moved back to end at the scene's edge). Each window's
prediction is weighted by a smooth bump that is highest at its centre and small but
positive at its edges, and the blended probability is ``sum(w * p) / sum(w)``: overlapping
windows fade into each other without seams, and a constant model gives a constant map.

Memory: the scene is processed in bands of windows; only ``window_px`` rows of image and
accumulators are held at a time, and the rows no later band can touch are written to the
probability GeoTIFF and fed to the detection tracker right away. Fragments of one impact
are merged (:mod:`tiling.fragments`) once the scene's components are all finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiling.components import ComponentTracker, Impact
from tiling.fragments import merge_columns


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
    merge_distance_px: int = 0,
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
        min_area_px: Smaller detections (after merging) are dropped.
        merge_distance_px: Detections whose boxes are at most this many px apart become
            one (:mod:`tiling.fragments`); 0 = every component is a detection.
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
    acc = _RowAccumulator(width)
    pending: list[tuple[int, int, np.ndarray]] = []  # windows waiting for a full batch
    done = windows = 0

    def run(batch: list[tuple[int, int, np.ndarray]]) -> None:
        stack = np.stack([w for _, _, w in batch]).astype(np.float32)[..., None] / scale
        probs = np.asarray(predict(stack), dtype=np.float32)[..., 0]
        for (row0, col0, _), prob in zip(batch, probs, strict=True):
            acc.add(row0, col0, weights * prob, weights)

    for band, row0 in enumerate(rows_plan):
        rows = read_rows(row0, win_h)
        acc.extend_to(row0 + win_h, rows[max(0, acc.end - row0) :] != nodata)
        for col0 in cols_plan:
            window = rows[:, col0 : col0 + win_w]
            if not np.all(window == nodata):
                pending.append((row0, col0, window))
        while len(pending) >= batch_size:  # full batches only, across band boundaries
            run(pending[:batch_size])
            windows += batch_size
            pending = pending[batch_size:]
        last = band + 1 == len(rows_plan)
        if last and pending:
            run(pending)
            windows += len(pending)
            pending = []
        # Rows above the next band and above every pending window get nothing more.
        final_end = height if last else min([rows_plan[band + 1], *(r for r, _, _ in pending)])
        if final_end > done:
            prob_rows = acc.pop_until(final_end)
            write_rows(prob_rows, done)
            tracker.add_stripe(prob_rows >= threshold, done, values=prob_rows)
            if progress:
                progress(final_end - done)
            done = final_end
    # Merging joins fragments of different bands, so it runs once over the scene's finished
    # components (a short list); the minimum area then applies to whole detections.
    merged = merge_columns(tracker.pop_complete_columns(final=True), merge_distance_px)
    detections = merged.take(merged.area >= min_area_px).impacts()
    return SceneResult(detections, windows, len(rows_plan) * len(cols_plan) - windows)


class _RowAccumulator:
    """Weighted sums of predictions and weights for a run of scene rows, plus which of
    them hold data; finished rows are popped from the top as blended probabilities."""

    def __init__(self, width: int) -> None:
        self.row0 = 0
        self.sum = np.zeros((0, width), dtype=np.float32)
        self.weight = np.zeros((0, width), dtype=np.float32)
        self.valid = np.zeros((0, width), dtype=bool)

    @property
    def end(self) -> int:
        return self.row0 + len(self.sum)

    def extend_to(self, end: int, valid_rows: np.ndarray) -> None:
        """Grow down to scene row ``end``; ``valid_rows`` end with the new rows' data masks."""
        extra = end - self.end
        if extra > 0:
            self.sum = np.concatenate([self.sum, np.zeros((extra, self.sum.shape[1]), np.float32)])
            self.weight = np.concatenate([self.weight, np.zeros((extra, self.sum.shape[1]), np.float32)])
            self.valid = np.concatenate([self.valid, valid_rows[-extra:]])

    def add(self, row0: int, col0: int, weighted: np.ndarray, weights: np.ndarray) -> None:
        r = row0 - self.row0
        h, w = weighted.shape
        self.sum[r : r + h, col0 : col0 + w] += weighted
        self.weight[r : r + h, col0 : col0 + w] += weights

    def pop_until(self, end: int) -> np.ndarray:
        """Blended probabilities of the rows before ``end`` (0 on no-data); drop them."""
        k = end - self.row0
        prob = np.where(
            self.valid[:k] & (self.weight[:k] > 0), self.sum[:k] / np.maximum(self.weight[:k], 1e-12), 0.0
        )
        self.sum, self.weight, self.valid = self.sum[k:], self.weight[k:], self.valid[k:]
        self.row0 = end
        return prob.astype(np.float32)


def keras_predictor(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a Keras model as a batch predictor."""

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch))

    return predict
