"""Prediction grids: input, true mask and predicted probabilities of patches, one row each.

Drawn like every report figure (:mod:`training.report`): a :class:`~matplotlib.figure.Figure`
on its own Agg canvas, written as a PNG of exactly ``figsize * DPI`` pixels.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from training.report import DPI, _save

CELL_IN = 2.2  # side of one prediction-grid cell, inches
COLORBAR_IN = 0.6  # extra grid width for the probability colour bar, inches
GRID_TITLE_IN = 0.4  # extra grid height for the overall title, inches
# Agg refuses images of 2**16 px or more in either direction; stay well inside it.
MAX_GRID_ROWS = 250
PROB_CMAP = "viridis"
ROW_TITLE_CHARS = 90  # grid row titles wrap at this many characters
CONTOUR_COLOR = "red"


def _as_2d(array: np.ndarray, what: str, row: int) -> np.ndarray:
    """Drop a trailing channel axis of size 1; raise unless the result is 2-D."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(
            f"{what} of row {row} has shape {np.asarray(array).shape}; pass a 2-D (rows, cols) "
            "or (rows, cols, 1) array"
        )
    return arr


def _stretch(image: np.ndarray) -> np.ndarray:
    """Scale a grayscale image to 0..1 between its own 1st and 99th percentiles."""
    values = image.astype(np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    lo, hi = (np.float32(v) for v in np.percentile(finite, [1, 99]))
    if hi <= lo:  # flat patch: show mid-gray rather than divide by zero
        return np.full_like(values, 0.5)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def plot_prediction_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    probs: Sequence[np.ndarray],
    path: Path,
    *,
    titles: Sequence[str] = (),
    threshold: float = 0.5,
    title: str = "",
) -> Path:
    """Plot one row per patch: input, true mask, and predicted probability.

    The input is shown in grayscale stretched to its own 1st-99th percentile (any integer or
    float type, e.g. uint8 or uint16), the true mask in black/white, and the probability
    with a fixed 0..1 colour map, a colour bar, and its ``threshold`` contour in red. Each
    cell is :data:`CELL_IN` inches square, so the PNG grows in height with the row count.

    Args:
        images: Input patches, each (rows, cols) or (rows, cols, 1).
        truths: True masks, nonzero where an impact is, same shapes.
        probs: Predicted probabilities in 0..1, same shapes.
        path: PNG to write.
        titles: One title per row (e.g. patch id, kind, score), or empty for none.
        threshold: Probability at which the contour is drawn.
        title: Figure title, or empty for none.

    Returns:
        ``path``.

    Raises:
        ValueError: If the sequences are empty or differ in length, there are more than
            :data:`MAX_GRID_ROWS` rows, or a row's arrays are not 2-D of one shape.
    """
    n = len(images)
    lengths = {"images": n, "truths": len(truths), "probs": len(probs)}
    if titles:
        lengths["titles"] = len(titles)
    if n == 0 or len(set(lengths.values())) > 1:
        raise ValueError(
            "prediction grid needs equal, non-zero numbers of rows, got "
            + ", ".join(f"{k}={v}" for k, v in lengths.items())
        )
    if n > MAX_GRID_ROWS:
        raise ValueError(f"{n} rows exceed the {MAX_GRID_ROWS} a PNG can hold; split them over several grids")

    height_in = n * CELL_IN + (GRID_TITLE_IN if title else 0.0)
    fig = Figure(figsize=(3 * CELL_IN + COLORBAR_IN, height_in), dpi=DPI, layout="constrained")
    if title:
        fig.suptitle(title)
    subfigs = fig.subfigures(n, 1, squeeze=False)[:, 0]
    for i, subfig in enumerate(subfigs):
        image = _as_2d(images[i], "image", i)
        truth = _as_2d(truths[i], "truth", i)
        prob = _as_2d(probs[i], "probs", i)
        if not image.shape == truth.shape == prob.shape:
            raise ValueError(
                f"row {i} has image {image.shape}, truth {truth.shape}, probs {prob.shape}; "
                "all three must have one shape"
            )
        ax_img, ax_true, ax_prob = subfig.subplots(1, 3)
        ax_img.imshow(_stretch(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax_true.imshow(truth != 0, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        shown = ax_prob.imshow(prob, cmap=PROB_CMAP, vmin=0, vmax=1, interpolation="nearest")
        prob_f = prob.astype(np.float32)
        # A threshold the patch never crosses has no line; skipping it also avoids the
        # "no contour levels" warning (and line at the data minimum) of older matplotlib.
        if np.nanmin(prob_f) < threshold < np.nanmax(prob_f):
            ax_prob.contour(prob_f, levels=[threshold], colors=CONTOUR_COLOR, linewidths=1)
        subfig.colorbar(shown, ax=ax_prob, fraction=0.05, pad=0.02)
        for ax in (ax_img, ax_true, ax_prob):
            ax.set_xticks([])
            ax.set_yticks([])
        # Column labels on every row keep the cells one size and each row readable on its
        # own when scrolling a tall grid.
        ax_img.set_title("input", fontsize=8)
        ax_true.set_title("true mask", fontsize=8)
        ax_prob.set_title(f"probability ({CONTOUR_COLOR} line: {threshold:g})", fontsize=8)
        if titles:
            # Wrap so a long title (scene, window, kind, score) stays inside the row.
            subfig.suptitle(textwrap.fill(str(titles[i]), ROW_TITLE_CHARS), fontsize=9)
    return _save(fig, path)
