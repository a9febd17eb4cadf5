"""Training report figures: loss curves, precision-recall, mining rounds (prediction grids:
:mod:`training.grids`).

Each function draws one figure and writes it as a PNG. Figures are built with
:class:`matplotlib.figure.Figure` on a :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`
so nothing global changes: no pyplot state, no backend switch, nothing left open (a figure
that pyplot never saw is freed with its last reference). Layouts are ``constrained`` rather
than ``bbox_inches="tight"``, so a PNG is exactly ``figsize * DPI`` pixels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

log = logging.getLogger(__name__)

DPI = 100
LR_KEYS = ("lr", "learning_rate")
MARKER_MAX_POINTS = 40  # draw point markers on curves with at most this many points


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG at :data:`DPI`, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(path)
    fig.clear()
    log.debug("wrote %s", path)
    return path


def _marker(n_points: int) -> str:
    """Point marker for a curve of ``n_points``: dots while few enough to tell apart."""
    return "o" if n_points <= MARKER_MAX_POINTS else ""


def _epochs(values: Sequence[float]) -> np.ndarray:
    """1-based epoch numbers for a history series."""
    return np.arange(1, len(values) + 1)


def plot_loss_curves(
    history: dict[str, list[float]],
    path: Path,
    *,
    title: str = "Training",
    round_starts: Sequence[int] = (),
) -> Path:
    """Plot training and validation loss per epoch, and any metrics on a second panel.

    The x axis is the epoch, 1-based across the whole run (all mining rounds in one
    history). The best ``val_loss`` epoch is marked. Each entry of ``round_starts`` is the
    0-based index into the history lists of the first epoch of a hard-negative mining round
    (that is, the number of epochs run before it); a dashed line is drawn between that
    epoch and the one before, at ``index + 0.5``. An index of 0 draws nothing (the run
    starts there anyway); indices past the last epoch are ignored with a warning. Keys
    other than ``loss``/``val_loss`` go on a second panel, ``x`` and ``val_x`` in one colour
    (validation dashed); a learning rate (``lr``/``learning_rate``) goes on its own log
    axis there.

    Args:
        history: Per-epoch values, as Keras ``History.history``; needs ``loss``.
        path: PNG to write.
        title: Figure title.
        round_starts: 0-based epoch indices where mining rounds began.

    Returns:
        ``path``.

    Raises:
        ValueError: If ``history`` has no non-empty ``loss`` series.
    """
    if not history.get("loss"):
        raise ValueError(
            f"history has no 'loss' values (keys: {sorted(history)}); pass Keras "
            "History.history from a run of at least one epoch"
        )
    n_epochs = max(len(v) for v in history.values())
    metric_keys = [k for k in history if k not in ("loss", "val_loss") and history[k]]
    n_panels = 2 if metric_keys else 1
    fig = Figure(figsize=(6.0 * n_panels, 4.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    fig.suptitle(title)

    ax = axes[0]
    for key, style in (("loss", "-"), ("val_loss", "--")):
        values = history.get(key) or []
        if values:
            ax.plot(_epochs(values), values, style, marker=_marker(len(values)), ms=3, label=key)
    val_loss = np.asarray(history.get("val_loss") or [], dtype=float)
    if np.isfinite(val_loss).any():
        best = int(np.nanargmin(np.where(np.isfinite(val_loss), val_loss, np.nan)))
        ax.plot(best + 1, val_loss[best], "*", ms=14, color="gold", mec="black", zorder=5)
        ax.annotate(
            f"best val_loss {val_loss[best]:.4g}\nepoch {best + 1}",
            (best + 1, val_loss[best]),
            xytext=(8, 12),
            textcoords="offset points",
            fontsize=8,
        )
    all_loss = np.concatenate([np.asarray(history.get(k) or [], dtype=float) for k in ("loss", "val_loss")])
    all_loss = all_loss[np.isfinite(all_loss)]
    # Losses often fall by orders of magnitude; a log axis keeps the late epochs readable.
    if all_loss.size and all_loss.min() > 0 and all_loss.max() / all_loss.min() > 30:
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8, loc="best")

    if metric_keys:
        _plot_metrics(axes[1], history, metric_keys)

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, n_epochs + 0.5)
        ax.grid(alpha=0.3)
    _draw_round_starts(axes, round_starts, n_epochs)
    return _save(fig, path)


def _plot_metrics(ax: Axes, history: dict[str, list[float]], keys: list[str]) -> None:
    """Draw metric series on ``ax``: ``x`` solid and ``val_x`` dashed in one colour."""
    lr_keys = [k for k in keys if k in LR_KEYS]
    bases = list(dict.fromkeys(k.removeprefix("val_") for k in keys if k not in LR_KEYS))
    colors = [f"C{i % 10}" for i in range(len(bases))]
    for base, color in zip(bases, colors, strict=True):
        for key, style in ((base, "-"), (f"val_{base}", "--")):
            values = history.get(key) or []
            if values:
                ax.plot(
                    _epochs(values), values, style, color=color, marker=_marker(len(values)), ms=3, label=key
                )
    ax.set_ylabel("metric")
    handles, labels = ax.get_legend_handles_labels()
    if lr_keys:
        lr_ax = ax.twinx()
        for key in lr_keys:
            values = history[key]
            lr_ax.plot(_epochs(values), values, ":", color="gray", label=key)
        if min(min(history[k]) for k in lr_keys) > 0:
            lr_ax.set_yscale("log")
        lr_ax.set_ylabel("learning rate", color="gray")
        more_handles, more_labels = lr_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="best")


def _draw_round_starts(axes: Sequence[Axes], round_starts: Sequence[int], n_epochs: int) -> None:
    """Dashed vertical lines where mining rounds began, labelled ``round k``."""
    for k, start in enumerate(round_starts):
        if start == 0:
            continue
        if not 0 < start < n_epochs:
            log.warning(
                "round start %d is outside the %d epochs of the history; not drawn "
                "(round_starts are 0-based indices of each round's first epoch)",
                start,
                n_epochs,
            )
            continue
        for ax in axes:
            ax.axvline(start + 0.5, color="gray", ls="--", lw=1)
        axes[0].annotate(
            f"round {k}",
            (start + 0.5, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            color="gray",
        )


def plot_pr_curve(
    rows: Sequence[Mapping[str, float]],
    path: Path,
    *,
    chosen_threshold: float | None = None,
    title: str = "Object precision-recall",
) -> Path:
    """Plot object precision against recall over a threshold sweep.

    Points are joined in threshold order; up to five thresholds are written beside their
    points, the best-F1 point is starred, and the chosen threshold (the row whose threshold
    is nearest to it) gets a diamond. Faint iso-F1 curves give scale. Undefined values
    (NaN, e.g. precision with no detections) are left as gaps.

    Args:
        rows: One mapping per threshold with ``threshold``, ``precision``, ``recall``, ``f1``.
        path: PNG to write.
        chosen_threshold: Operating threshold to mark, if any.
        title: Figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: If ``rows`` is empty or a row lacks one of the four keys.
    """
    if not rows:
        raise ValueError("rows is empty; pass one {threshold, precision, recall, f1} row per threshold")
    needed = ("threshold", "precision", "recall", "f1")
    for i, row in enumerate(rows):
        missing = [k for k in needed if k not in row]
        if missing:
            raise ValueError(f"PR row {i} lacks {missing}; every row needs {list(needed)}")
    ordered = sorted(rows, key=lambda r: float(r["threshold"]))
    thr, prec, rec, f1 = (np.array([float(r[k]) for r in ordered]) for k in needed)

    fig = Figure(figsize=(6.0, 5.4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    r_grid = np.linspace(0.01, 1, 200)
    for f in (0.2, 0.4, 0.6, 0.8):
        r = r_grid[r_grid > f / 2]
        p = f * r / (2 * r - f)
        keep = p <= 1.0
        ax.plot(r[keep], p[keep], color="0.85", lw=0.8, zorder=0)
        ax.annotate(
            f"F1={f:.1f}", (r[keep][-1], p[keep][-1]), fontsize=7, color="0.6", ha="right", va="bottom"
        )
    ax.plot(rec, prec, "-", color="C0", marker=_marker(len(rows)), ms=3, label="sweep")

    for i in np.unique(np.linspace(0, len(ordered) - 1, min(5, len(ordered))).round().astype(int)):
        if np.isfinite(rec[i]) and np.isfinite(prec[i]):
            ax.annotate(
                f"{thr[i]:.2f}",
                (rec[i], prec[i]),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
                color="C0",
            )
    if np.isfinite(f1).any():
        b = int(np.nanargmax(np.where(np.isfinite(f1), f1, np.nan)))
        ax.plot(
            rec[b],
            prec[b],
            "*",
            ms=15,
            color="gold",
            mec="black",
            zorder=5,
            label=f"best F1 {f1[b]:.3f} at t={thr[b]:.2f} (P {prec[b]:.3f}, R {rec[b]:.3f})",
        )
    if chosen_threshold is not None:
        c = int(np.argmin(np.abs(thr - chosen_threshold)))
        ax.plot(
            rec[c],
            prec[c],
            "D",
            ms=9,
            mfc="none",
            mec="red",
            mew=2,
            zorder=6,
            label=f"chosen t={chosen_threshold:.2f}: F1 {f1[c]:.3f} (P {prec[c]:.3f}, R {rec[c]:.3f})",
        )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("object recall")
    ax.set_ylabel("object precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def _get(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """``mapping[keys[0]][keys[1]]...``, or None where a key is missing."""
    value: Any = mapping
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def plot_rounds(rounds: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Plot what hard-negative mining bought, round by round.

    The left panel shows object precision, recall and F1 per round, one colour per metric,
    test solid and val dashed. The right panel stacks false positives by kind per round,
    from the test split when every round has it, else from val (the panel's title says
    which), with each bar's total above it.

    Args:
        rounds: One mapping per round: ``round`` (number; the position if missing) and
            ``val``/``test``, each ``{"object": {"precision", "recall", "f1"},
            "fp_by_kind": {kind: count}}`` and optionally ``"whole_scene"`` (a third panel:
            ``operating`` recall and false candidates per 100 km²); a round needs at least
            one of the two splits.
        path: PNG to write.

    Returns:
        ``path``.

    Raises:
        ValueError: If ``rounds`` is empty or a round has neither split.
    """
    if not rounds:
        raise ValueError("rounds is empty; pass one summary per mining round (round 0 first)")
    for i, r in enumerate(rounds):
        if _get(r, ["val"]) is None and _get(r, ["test"]) is None:
            raise ValueError(f"round entry {i} has neither 'val' nor 'test'; keys: {sorted(r)}")
    x = np.array([float(r.get("round", i)) for i, r in enumerate(rounds)])

    scenes = any(_get(r, [split, "whole_scene"]) is not None for r in rounds for split in ("val", "test"))
    fig = Figure(figsize=(16.0 if scenes else 11.0, 4.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 3 if scenes else 2)
    ax_obj, ax_fp = axes[0], axes[1]
    if scenes:
        _plot_whole_scenes(axes[2], rounds, x)
    fig.suptitle("Hard-negative mining rounds")
    for split, style in (("test", "-"), ("val", "--")):
        if all(_get(r, [split]) is None for r in rounds):
            continue
        for color, metric in zip(("C0", "C1", "C2"), ("precision", "recall", "f1"), strict=True):
            values = [_get(r, [split, "object", metric]) for r in rounds]
            y = np.array([math.nan if v is None else float(v) for v in values])
            ax_obj.plot(x, y, style, color=color, marker="o", ms=4, label=f"{split} {metric}")
    ax_obj.set_ylim(0, 1.02)
    ax_obj.set_ylabel("object score")
    ax_obj.set_title("Object precision / recall / F1")
    ax_obj.legend(fontsize=8, loc="lower right", ncols=2)

    split = "test" if all(_get(r, ["test", "fp_by_kind"]) is not None for r in rounds) else "val"
    counts = [dict(_get(r, [split, "fp_by_kind"]) or {}) for r in rounds]
    totals_by_kind: dict[str, float] = {}
    for c in counts:
        for kind, n in c.items():
            totals_by_kind[str(kind)] = totals_by_kind.get(str(kind), 0.0) + float(n)
    kinds = sorted(totals_by_kind, key=lambda k: (-totals_by_kind[k], k))  # largest at the bottom
    bottom = np.zeros(len(rounds))
    for j, kind in enumerate(kinds):
        heights = np.array([float(c.get(kind, 0)) for c in counts])
        ax_fp.bar(x, heights, bottom=bottom, width=0.6, color=f"C{j % 10}", label=kind)
        bottom += heights
    for xi, total in zip(x, bottom, strict=True):
        ax_fp.annotate(
            f"{total:g}", (xi, total), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8
        )
    ax_fp.set_ylim(0, max(1.0, float(bottom.max())) * 1.12)  # room for the totals
    ax_fp.set_ylabel("false positives")
    ax_fp.set_title(f"False positives by kind ({split})")
    if kinds:
        ax_fp.legend(fontsize=8, loc="upper right")

    for ax in axes:
        ax.set_xlabel("round")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{v:g}" for v in x])
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def _plot_whole_scenes(ax: Axes, rounds: Sequence[Mapping[str, Any]], x: np.ndarray) -> None:
    """Whole-scene recall (left axis) and false candidates per 100 km² (right axis) per
    round at the config's operating threshold, test solid and val dashed."""
    ax_fp = ax.twinx()
    for split, style in (("test", "-"), ("val", "--")):
        for axis, metric, color in (
            (ax, "recall", "C1"),
            (ax_fp, "false_candidates_per_100km2", "C3"),
        ):
            values = [_get(r, [split, "whole_scene", "operating", metric]) for r in rounds]
            if all(v is None for v in values):
                continue
            y = np.array([math.nan if v is None else float(v) for v in values])
            label = "recall" if metric == "recall" else "false cand. / 100 km²"
            axis.plot(x, y, style, color=color, marker="o", ms=4, label=f"{split} {label}")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("whole-scene recall")
    ax_fp.set_ylabel("false candidates per 100 km²")
    ax_fp.set_ylim(bottom=0)
    ax.set_title("Whole scenes (config threshold)")
    handles = [h for a in (ax, ax_fp) for h in a.get_legend_handles_labels()[0]]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="lower right")
