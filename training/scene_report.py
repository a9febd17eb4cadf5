"""Whole-scene evaluation figures: recall and precision against the analyst's burden, and a
quicklook per scene with hits, misses and false candidates marked.

Drawn like :mod:`training.report`: a :class:`~matplotlib.figure.Figure` on an Agg canvas,
no pyplot state, constrained layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tiling.synth import KnownObject
from training.report import DPI, _save
from training.scene_eval import DUPLICATE, FALSE_CANDIDATE, SceneMatch

#: Marker colours of the quicklook (Okabe-Ito, colour-blind safe: green, vermilion, purple, blue).
HIT_COLOR = "#009E73"
MISS_COLOR = "#D55E00"
FALSE_COLOR = "#CC79A7"
DUPLICATE_COLOR = "#56B4E9"
QUICKLOOK_IN = 9.0  # longer side of a quicklook's image, inches


def _handle(marker: str, color: str, label: str) -> Line2D:
    """A legend entry of one marker (the plotted markers vary in size)."""
    hollow = marker != "x"
    return Line2D(
        [],
        [],
        marker=marker,
        linestyle="none",
        markersize=8,
        markerfacecolor="none" if hollow else color,
        markeredgecolor=color,
        markeredgewidth=1.4,
        label=label,
    )


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def plot_scene_curve(
    rows: Sequence[Mapping[str, Any]],
    path: Path,
    *,
    operating: Mapping[str, Any] | None = None,
    title: str = "Whole scenes",
) -> Path:
    """Plot recall and precision against false candidates per 100 km² over a threshold sweep.

    Each threshold is one point of each curve (recall solid, precision dashed), joined in
    threshold order, with the thresholds written beside the recall points. The x axis is
    symmetric-log (linear below 1), as the burden spans orders of magnitude between low and
    high thresholds. The operating point is ringed.

    Args:
        rows: One mapping per threshold with ``threshold``, ``recall``, ``precision`` and
            ``false_candidates_per_100km2`` (None = undefined, left out).
        path: PNG to write.
        operating: The operating point's row, if any.
        title: Figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: ``rows`` is empty.
    """
    if not rows:
        raise ValueError("rows is empty; pass one row per threshold")
    ordered = sorted(rows, key=lambda r: float(r["threshold"]))
    thr = np.array([float(r["threshold"]) for r in ordered])
    burden = np.array([_number(r["false_candidates_per_100km2"]) for r in ordered])
    recall = np.array([_number(r["recall"]) for r in ordered])
    precision = np.array([_number(r["precision"]) for r in ordered])
    fig = Figure(figsize=(7.0, 5.0), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.plot(burden, recall, "-o", color="C0", ms=4, label="recall")
    ax.plot(burden, precision, "--s", color="C1", ms=4, label="precision (hits / detections)")
    for t, x, y in zip(thr, burden, recall, strict=True):
        if np.isfinite(x) and np.isfinite(y):
            ax.annotate(f"{t:.2f}", (x, y), xytext=(3, 4), textcoords="offset points", fontsize=7, color="C0")
    if operating is not None:
        x = _number(operating["false_candidates_per_100km2"])
        for key in ("recall", "precision"):
            y = _number(operating[key])
            if np.isfinite(x) and np.isfinite(y):
                ax.plot(x, y, "o", ms=12, mfc="none", mec="red", mew=2, zorder=5)
        ax.plot(
            [],
            [],
            "o",
            ms=10,
            mfc="none",
            mec="red",
            mew=2,
            label=(
                f"operating t={float(operating['threshold']):.2f}: R {_number(operating['recall']):.3f}, "
                f"P {_number(operating['precision']):.3f}, {x:.1f} false/100 km²"
            ),
        )
    ax.set_xscale("symlog", linthresh=1.0)
    finite = burden[np.isfinite(burden)]
    ax.set_xlim(0, 1.5 * float(finite.max()) + 1 if finite.size else 10)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false candidates per 100 km² of valid area")
    ax.set_ylabel("recall, precision")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_scene_quicklook(
    image: np.ndarray,
    step: int,
    impacts: Sequence[KnownObject],
    match: SceneMatch,
    detections: Sequence[tuple[float, float]],
    path: Path,
    *,
    title: str = "",
) -> Path:
    """Draw a shrunk scene with its impacts and detections marked.

    Hits (impacts found) are green circles, misses vermilion circles, false candidates
    purple squares and duplicates blue crosses (only when there are any); the legend counts
    each. Markers sit at scene coordinates (the image covers ``step`` scene pixels per
    pixel), circles at least a few screen points wide so small impacts stay visible.

    Args:
        image: The shrunk scene (any grey levels; stretched to its 1st-99th percentile).
        step: Scene pixels per image pixel.
        impacts: The true impacts.
        match: The match of ``detections`` to ``impacts``.
        detections: Each detection's centroid ``(row, col)`` in scene pixels.
        path: PNG to write.
        title: Figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: ``detections`` and ``match`` do not agree.
    """
    if len(detections) != len(match.outcome) or len(impacts) != len(match.found):
        raise ValueError("the match is not of these detections and impacts")
    height, width = image.shape[0] * step, image.shape[1] * step
    scale = QUICKLOOK_IN / max(image.shape)
    fig = Figure(
        figsize=(max(3.0, image.shape[1] * scale) + 2.6, max(2.5, image.shape[0] * scale) + 0.5),
        dpi=DPI,
        layout="constrained",
    )
    ax = fig.subplots()
    valid = image[image > 0]
    lo, hi = np.percentile(valid, (1, 99)) if valid.size else (0.0, 1.0)
    ax.imshow(image, cmap="gray", vmin=lo, vmax=max(hi, lo + 1), extent=(0, width, height, 0))
    px_per_point = width / (image.shape[1] * scale * 72)  # scene px per typographic point

    def circle_size(radius_px: np.ndarray) -> np.ndarray:
        return np.maximum(2 * 1.5 * radius_px / px_per_point, 7.0) ** 2

    found = np.array(match.found, dtype=bool)
    rows = np.array([o.row for o in impacts]).reshape(-1)
    cols = np.array([o.col for o in impacts]).reshape(-1)
    radii = np.array([o.radius_px for o in impacts]).reshape(-1)
    points = np.array(detections, dtype=np.float64).reshape(-1, 2)
    outcome = np.array(match.outcome)
    false, duplicate = outcome == FALSE_CANDIDATE, outcome == DUPLICATE
    handles = []
    for mask, color, label in ((found, HIT_COLOR, "hit"), (~found, MISS_COLOR, "miss")):
        ax.scatter(
            cols[mask],
            rows[mask],
            s=circle_size(radii[mask]),
            facecolors="none",
            edgecolors=color,
            linewidths=1.4,
        )
        handles.append(_handle("o", color, f"{label} ({int(mask.sum())})"))
    ax.scatter(
        points[false, 1],
        points[false, 0],
        s=36,
        marker="s",
        facecolors="none",
        edgecolors=FALSE_COLOR,
        linewidths=1.2,
    )
    handles.append(_handle("s", FALSE_COLOR, f"false candidate ({int(false.sum())})"))
    if duplicate.any():
        ax.scatter(
            points[duplicate, 1],
            points[duplicate, 0],
            s=30,
            marker="x",
            color=DUPLICATE_COLOR,
            linewidths=1.2,
        )
        handles.append(_handle("x", DUPLICATE_COLOR, f"duplicate ({int(duplicate.sum())})"))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xlabel("column (px)")
    ax.set_ylabel("row (px)")
    ax.set_title(title, fontsize=9)
    ax.legend(
        handles=handles,
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        framealpha=0.9,
    )
    return _save(fig, path)
