"""Evaluation of a model on a split: pixel and object metrics, false positives by kind,
a precision-recall curve and prediction grids (``impacts evaluate``)."""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from impacts.atomic import write_json_atomic
from impacts.errors import PatchSetError
from tiling.patchset import EVAL_KINDS, POSITIVE_KINDS, PatchRecord, PatchSet
from tiling.synth import KnownObject, load_objects
from training.config import EvalConfig
from training.data import iterate_patches
from training.grids import plot_prediction_grid
from training.metrics import (
    ObjectAccumulator,
    PixelAccumulator,
    object_pr_curve,
    patch_objects,
)
from training.report import plot_pr_curve

log = logging.getLogger(__name__)

PR_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.1, 0.91, 0.1))


@dataclass(order=True)
class _Shown:
    """A patch kept for a prediction grid."""

    rank: float
    patch_id: str = field(compare=False)
    image: np.ndarray = field(compare=False, repr=False)
    mask: np.ndarray = field(compare=False, repr=False)
    prob: np.ndarray = field(compare=False, repr=False)


def _patch_loss(mask: np.ndarray, prob: np.ndarray) -> float:
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    return float(-np.mean(mask * np.log(p) + (1 - mask) * np.log(1 - p)))


def evaluate_model(
    model: Any, patches: PatchSet, split: str, cfg: EvalConfig, out: Path | None = None, batch_size: int = 32
) -> dict[str, Any]:
    """Predict every patch of ``split`` and measure.

    Args:
        model: A Keras model mapping ``(N, H, W, 1)`` images to probabilities.
        patches: The patch set (its manifest may hold mined rows).
        split: ``val`` or ``test`` (or ``train``).
        cfg: Threshold, minimum object area, pixel size, grid size.
        out: If given, ``metrics.json``, ``pr_curve.png``, ``grid_chosen.png`` and
            ``grid_worst.png`` are written there.
        batch_size: Patches per prediction batch.

    Returns:
        ``{"split", "n_patches", "threshold", "pixel": {...}, "object": {...},
        "fp_by_kind": {...}, "fp_per_100km2", "pr_curve": [...]}``.

    Raises:
        PatchSetError: The split has no patch.
    """
    records = patches.select(split, EVAL_KINDS)
    if not records:
        raise PatchSetError(
            f"{patches.root}: split {split!r} has no patch; tile with val/test scenes (see split.* in configs/tile.yaml)"
        )
    by_id: dict[str, PatchRecord] = {r.patch_id: r for r in records}
    objects: dict[str, list[KnownObject]] = {
        s: load_objects(patches.objects_csv(s)) for s in {r.scene for r in records}
    }
    thresholds = sorted({*PR_THRESHOLDS, cfg.threshold})
    accumulators = {t: ObjectAccumulator() for t in thresholds}
    pixels = PixelAccumulator(cfg.threshold)
    chosen_ids = _chosen(records, cfg.grid_patches)
    chosen: list[_Shown] = []
    worst: list[_Shown] = []
    for ids, images, masks in iterate_patches(patches, records, batch_size):
        probs = np.asarray(model.predict_on_batch(images), dtype=np.float32)
        pixels.update(masks[..., 0], probs[..., 0])
        for i, patch_id in enumerate(ids):
            record = by_id[patch_id]
            image, mask, prob = images[i, ..., 0], masks[i, ..., 0], probs[i, ..., 0]
            nodata = image == 0
            for t in thresholds:
                accumulators[t].add(
                    patch_objects(
                        mask,
                        prob,
                        t,
                        nodata=nodata,
                        origin=(record.row, record.col),
                        objects=objects[record.scene],
                        min_area_px=cfg.min_area_px,
                    )
                )
            shown = _Shown(_patch_loss(mask, prob), patch_id, image, mask, prob)
            if patch_id in chosen_ids:
                chosen.append(shown)
            if len(worst) < cfg.grid_patches:
                heapq.heappush(worst, shown)
            elif shown.rank > worst[0].rank:
                heapq.heapreplace(worst, shown)
    objects_result = accumulators[cfg.threshold].result(cfg.res_m)
    metrics: dict[str, Any] = {
        "split": split,
        "n_patches": len(records),
        "threshold": cfg.threshold,
        "pixel": pixels.result(),
        "object": {
            k: objects_result[k] for k in ("precision", "recall", "f1", "n_true", "n_pred", "false_positives")
        },
        "fp_by_kind": objects_result["fp_by_kind"],
        "fp_per_100km2": objects_result["fp_per_100km2"],
        "pr_curve": object_pr_curve(accumulators, cfg.res_m),
    }
    if out is not None:
        _write(
            out, metrics, sorted(chosen, key=lambda s: s.patch_id), sorted(worst, reverse=True), by_id, cfg
        )
    return metrics


def _chosen(records: list[PatchRecord], count: int) -> set[str]:
    """Fixed patches to show: half with impacts, half without, first by patch id."""
    positives = sorted(r.patch_id for r in records if r.kind in POSITIVE_KINDS)
    others = sorted(r.patch_id for r in records if r.kind not in POSITIVE_KINDS)
    half = count // 2
    return set(positives[: count - min(half, len(others))] + others[:half])


def _write(
    out: Path,
    metrics: dict[str, Any],
    chosen: list[_Shown],
    worst: list[_Shown],
    by_id: dict[str, PatchRecord],
    cfg: EvalConfig,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", json_safe(metrics))
    plot_pr_curve(
        metrics["pr_curve"],
        out / "pr_curve.png",
        chosen_threshold=cfg.threshold,
        title=f"Object precision-recall ({metrics['split']})",
    )
    for name, shown in (("chosen", chosen), ("worst", worst)):
        if shown:
            plot_prediction_grid(
                [s.image for s in shown],
                [s.mask for s in shown],
                [s.prob for s in shown],
                out / f"grid_{name}.png",
                titles=[f"{s.patch_id} ({by_id[s.patch_id].kind}, loss {s.rank:.3f})" for s in shown],
                threshold=cfg.threshold,
                title=f"{name} patches ({metrics['split']})",
            )


def json_safe(value: Any) -> Any:
    """JSON has no infinity or NaN: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value
