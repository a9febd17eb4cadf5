"""The streamed pass of whole-scene evaluation: a kept probability map re-thresholded at
every threshold of a sweep, stripe by stripe.

The scene, its ``NAME_prob.tif`` (uint8, probability x 255, as ``impacts predict`` writes
it) and, when the truth comes from it, its mask are read together in stripes of whole
blocks (about :data:`STRIPE_PX` pixels). Each stripe is thresholded at every threshold and
fed to one :class:`tiling.components.ComponentTracker` per threshold; the mask to another;
valid (not no-data) pixels are counted and the image is shrunk for the quicklook on the
way. Memory: one stripe of rows plus the components' statistics (a few numbers each).

A pixel counts at threshold ``t`` when ``stored / 255 >= t`` (:func:`threshold_level`).
Detections then pass through fragment merging and the minimum area, as in
``impacts predict``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from impacts.errors import SceneError
from tiling.components import ComponentTracker, Impact, ImpactColumns
from tiling.fragments import merge_columns
from tiling.io import SceneFiles, open_image, open_scene, read_window
from tiling.labels import is_label_catalog
from tiling.synth import KnownObject
from tiling.windows import stripe_rows
from training.scene_eval import MatchRule, SceneMatch, impact_of_component, match_points

#: Pixels read per stripe (bounds the pass's memory).
STRIPE_PX = 4_000_000
#: Longest side of a quicklook, px (the scene is shrunk by a power of two to fit).
QUICKLOOK_PX = 1600
#: A false candidate within this many px of no-data (at the quicklook's cell size, see
#: :meth:`ScenePass.near_nodata`) is named ``nodata_border``, as in the patch metrics.
NODATA_BORDER_PX = 3


@dataclass(frozen=True)
class EvalScene:
    """A scene to evaluate and where its truth comes from (objects list, else ``mask``: a
    mask raster or a label catalog, :mod:`tiling.labels`)."""

    name: str
    image: Path
    mask: Path | None
    objects: Path | None

    @property
    def truth(self) -> str:
        if self.objects is not None:
            return "objects"
        return "labels" if self.mask is not None and is_label_catalog(self.mask) else "mask"


def threshold_level(threshold: float) -> int:
    """The smallest stored 8-bit value (probability x 255, rounded) that counts at
    ``threshold``: ``stored / 255 >= threshold``."""
    return math.ceil(round(threshold * 255, 6))


@dataclass
class ScenePass:
    """What one streamed pass over a scene gives: detections per threshold (merged, at
    least the minimum area), the mask's impacts (when read; a label catalog's mask too),
    a label catalog's own impacts, valid pixels, a quicklook."""

    height: int
    width: int
    valid_px: int
    detections: dict[float, ImpactColumns]
    mask_impacts: list[Impact] | None
    quicklook: np.ndarray
    step: int
    transform: Any
    crs: Any
    nodata_cells: np.ndarray | None = None
    label_impacts: list[KnownObject] | None = None

    def truth_impacts(self) -> list[KnownObject]:
        """The true impacts when the truth is no objects list: a label catalog's own
        (:meth:`tiling.labels.LabelMask.known_impacts`), else the mask's components."""
        if self.label_impacts is not None:
            return self.label_impacts
        return [impact_of_component(c) for c in self.mask_impacts or []]

    def near_nodata(
        self,
        row_min: np.ndarray,
        row_max: np.ndarray,
        col_min: np.ndarray,
        col_max: np.ndarray,
        border_px: int = NODATA_BORDER_PX,
    ) -> np.ndarray:
        """Per detection box (inclusive, scene px), whether the box grown by ``border_px``
        reaches a quicklook cell (``step x step`` px) holding no-data: exact for scenes up
        to :data:`QUICKLOOK_PX` px, within one cell for larger ones."""
        cells = self.nodata_cells
        row_min, row_max, col_min, col_max = (
            np.asarray(a, dtype=np.int64).reshape(-1) for a in (row_min, row_max, col_min, col_max)
        )
        if cells is None or not cells.any() or not len(row_min):
            return np.zeros(len(row_min), dtype=bool)
        integral = np.pad(cells.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        rows, cols = cells.shape

        def cell(px: np.ndarray, size: int) -> np.ndarray:
            return np.clip(px // self.step, 0, size - 1)

        r0, r1 = cell(row_min - border_px, rows), cell(row_max + border_px, rows)
        c0, c1 = cell(col_min - border_px, cols), cell(col_max + border_px, cols)
        inside = integral[r1 + 1, c1 + 1] - integral[r0, c1 + 1] - integral[r1 + 1, c0] + integral[r0, c0]
        return np.asarray(inside > 0)

    def match(
        self,
        threshold: float,
        impacts: Sequence[KnownObject],
        lookalikes: Sequence[KnownObject],
        rule: MatchRule,
    ) -> SceneMatch:
        """Match the detections at ``threshold`` to the truth; a false candidate on no
        look-alike but next to no-data is named ``nodata_border``."""
        found = self.detections[threshold]
        return match_points(
            impacts,
            found.centroid_row,
            found.centroid_col,
            found.peak,
            lookalikes,
            rule,
            near_nodata=self.near_nodata(found.row_min, found.row_max, found.col_min, found.col_max),
        )


def _block_mean(rows: np.ndarray, step: int) -> np.ndarray:
    """Mean of each ``step x step`` block (smaller at the right and bottom edges)."""
    h, w = rows.shape
    starts_r, starts_c = np.arange(0, h, step), np.arange(0, w, step)
    sums = np.add.reduceat(np.add.reduceat(rows.astype(np.float64), starts_r, axis=0), starts_c, axis=1)
    counts = np.outer(np.diff(np.append(starts_r, h)), np.diff(np.append(starts_c, w)))
    return (sums / counts).astype(np.float32)


def _block_any(rows: np.ndarray, step: int) -> np.ndarray:
    """Whether each ``step x step`` block holds a true pixel."""
    h, w = rows.shape
    starts_r, starts_c = np.arange(0, h, step), np.arange(0, w, step)
    return np.add.reduceat(np.add.reduceat(rows.astype(np.int64), starts_r, axis=0), starts_c, axis=1) > 0


def rethreshold_scene(
    scene: EvalScene,
    prob_path: Path,
    thresholds: Sequence[float],
    min_area_px: int,
    merge_distance_px: int,
    progress: tqdm | None = None,
) -> ScenePass:
    """Re-threshold a kept probability map at every threshold, stripe by stripe.

    Args:
        scene: The scene (its image gives the valid area; its mask is read when the truth
            comes from it).
        prob_path: Its ``NAME_prob.tif`` (uint8, probability x 255, on the scene grid).
        thresholds: The thresholds.
        min_area_px: Smaller detections (after merging) are dropped.
        merge_distance_px: Fragment merging (:mod:`tiling.fragments`).
        progress: Updated with the rows done.

    Returns:
        The pass's results.

    Raises:
        SceneError: The map is not on the scene's grid (or a raster cannot be read).
    """
    read_mask = scene.objects is None and scene.mask is not None
    with ExitStack() as stack:
        prob_ds, prob_info = stack.enter_context(open_image(prob_path))
        mask_ds = None
        label_impacts = None
        if read_mask:
            files = SceneFiles(scene.name, scene.image, scene.mask)
            image_ds, mask_ds, info = stack.enter_context(open_scene(files))
            if scene.mask is not None and is_label_catalog(scene.mask):
                label_impacts = mask_ds.known_impacts()
        else:
            image_ds, info = stack.enter_context(open_image(scene.image))
        height, width = info.height, info.width
        if (prob_info.height, prob_info.width) != (height, width) or prob_info.dtype != "uint8":
            raise SceneError(
                f"{prob_ds.name}: {prob_info.height}x{prob_info.width} {prob_info.dtype}, expected the "
                f"{height}x{width} uint8 map of {scene.image}; delete it and evaluate again"
            )
        step = 1 << max(0, math.ceil(math.log2(max(height, width) / QUICKLOOK_PX)))
        rows_per_stripe = stripe_rows(width, max(prob_info.block_shape[0], step), STRIPE_PX, step)
        levels = {t: threshold_level(t) for t in thresholds}
        trackers = {t: ComponentTracker(width) for t in thresholds}
        mask_tracker = ComponentTracker(width) if mask_ds is not None else None
        quicklook: list[np.ndarray] = []
        nodata_cells: list[np.ndarray] = []
        valid_px = 0
        for row0 in range(0, height, rows_per_stripe):
            count = min(rows_per_stripe, height - row0)
            image = read_window(image_ds, row0, 0, count, width)
            prob = read_window(prob_ds, row0, 0, count, width)
            valid = image != info.nodata
            valid_px += int(np.count_nonzero(valid))
            nodata_cells.append(_block_any(~valid, step))
            values = prob.astype(np.float32) / 255.0
            for t, tracker in trackers.items():
                tracker.add_stripe(prob >= levels[t], row0, values=values)
            if mask_tracker is not None:
                mask_tracker.add_stripe(read_window(mask_ds, row0, 0, count, width), row0)
            quicklook.append(_block_mean(image, step))
            if progress is not None:
                progress.update(count)
        detections = {}
        for t, tracker in trackers.items():
            merged = merge_columns(tracker.pop_complete_columns(final=True), merge_distance_px)
            detections[t] = merged.take(merged.area >= min_area_px)
        return ScenePass(
            height=height,
            width=width,
            valid_px=valid_px,
            detections=detections,
            mask_impacts=mask_tracker.pop_complete(final=True) if mask_tracker is not None else None,
            quicklook=np.concatenate(quicklook),
            step=step,
            transform=info.transform,
            crs=info.crs,
            nodata_cells=np.concatenate(nodata_cells),
            label_impacts=label_impacts,
        )
