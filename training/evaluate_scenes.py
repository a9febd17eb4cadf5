"""Whole-scene evaluation (``impacts evaluate --scenes``): quality where analysts feel it.

Per scene, in one prediction pass:

1. predict the scene with ``impacts predict``'s own code (:func:`training.predict.predict_one`:
   sliding windows, streamed band by band) into ``OUT/predictions/``: ``NAME_prob.tif``,
   ``NAME_detections.geojson/.csv`` and the marker that lets a re-run skip the scene;
2. re-threshold the kept probability map at every threshold of the sweep, stripe by
   stripe (:mod:`training.scene_pass`; memory: one stripe of rows), counting the valid
   pixels and shrinking the scene for its quicklook on the way;
3. match each threshold's detections to the truth (:mod:`training.scene_eval`).

The operating point is measured on the detections ``impacts predict`` wrote (exactly what
an analyst gets, thresholded on the float probabilities); the sweep re-thresholds the
8-bit map: a pixel counts at threshold ``t`` when ``stored / 255 >= t``, so a sweep row at
the operating threshold may differ from the operating point by the pixels whose
probability lies within 1/510 of it. Detections pass through fragment merging and the
minimum area exactly as in ``impacts predict``.

Truth: ``NAME_objects.csv`` (kind ``impact``; its other objects name false candidates)
when it exists, else a label catalog's impacts (``NAME_labels.geojson|gpkg|csv``, points and
polygon groups, :meth:`tiling.labels.LabelMask.known_impacts`), else the connected
components of ``NAME_mask.tif``. The pixel area comes
from the scene's transform (projected CRS), else from ``EvalConfig.res_m``.

Outputs (besides the predictions): ``metrics.json`` (see :func:`write_metrics`),
``scene_curve.png``, ``quicklooks/NAME.png`` and ``matches/NAME_matches.csv`` (each
detection at the operating point with its outcome, each missed impact).
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from impacts.atomic import atomic_path, write_json_atomic
from impacts.detections import Detection
from impacts.errors import SceneError, SceneNotFoundError
from impacts.scenes import check_scene_name, scene_file
from tiling.io import SceneFiles, find_scenes
from tiling.patchset import PatchSet
from tiling.synth import KnownObject, load_objects
from training.config import EvalConfig
from training.evaluate import json_safe
from training.predict import PredictConfig, check_window_px, predict_one
from training.scene_eval import (
    IMPACT,
    MatchRule,
    SceneCounts,
    SceneMatch,
    ScoredPoint,
    match_scene,
    pixel_area_m2,
    sweep_row,
)
from training.scene_pass import EvalScene, ScenePass, rethreshold_scene
from training.scene_report import plot_scene_curve, plot_scene_quicklook

log = logging.getLogger(__name__)

OBJECTS_SUFFIX = "_objects"
SWEEP_SOURCE = "NAME_prob.tif (8-bit) re-thresholded: a pixel counts when stored/255 >= threshold"
OPERATING_SOURCE = "NAME_detections.csv written by impacts predict (float probabilities)"


def find_eval_scenes(scenes_dir: Path, names: Sequence[str] | None = None) -> list[EvalScene]:
    """The scenes of a folder that can be evaluated.

    Args:
        scenes_dir: Folder of ``NAME.tif`` scenes with ``NAME_objects.csv`` and/or
            ``NAME_mask.tif`` or a label catalog ``NAME_labels.geojson|gpkg|csv``.
        names: Only these scenes (each must be there, with truth); None = every scene
            with truth (the others are reported and skipped).

    Returns:
        The scenes, in the order of ``names`` or by name.

    Raises:
        SceneNotFoundError: The folder holds no scene, a named scene is not there, or no
            scene has truth.
        SceneError: A named scene has neither an objects list nor a mask nor labels.
        SceneNameError: A name is not a scene name.
    """
    found = {s.name: s for s in find_scenes(scenes_dir)}

    def with_truth(files: SceneFiles) -> EvalScene:
        objects = scene_file(scenes_dir, files.name, OBJECTS_SUFFIX, ".csv")
        return EvalScene(files.name, files.image, files.mask, objects if objects.is_file() else None)

    if names is not None:
        missing = [n for n in names if check_scene_name(n) not in found]
        if missing:
            raise SceneNotFoundError(
                f"scene(s) {', '.join(missing)} not in {scenes_dir}; pass names of NAME.tif files there"
            )
        scenes = [with_truth(found[n]) for n in names]
        bare = [s.name for s in scenes if s.objects is None and s.mask is None]
        if bare:
            raise SceneError(
                f"scene(s) {', '.join(bare)} in {scenes_dir} have no NAME_objects.csv, NAME_mask.tif or NAME_labels.*; "
                f"add the truth or leave them out of --names"
            )
        return scenes
    scenes = [with_truth(f) for _, f in sorted(found.items())]
    for s in scenes:
        if s.objects is None and s.mask is None:
            log.warning("scene %s skipped: no %s_objects.csv, %s_mask.tif or %s_labels.*", *[s.name] * 4)
    scenes = [s for s in scenes if s.objects is not None or s.mask is not None]
    if not scenes:
        raise SceneNotFoundError(
            f"no scene in {scenes_dir} has NAME_objects.csv, NAME_mask.tif or NAME_labels.*; whole-scene evaluation needs the truth"
        )
    return scenes


def split_scenes(patches: PatchSet, split: str) -> list[str]:
    """The scenes a patch set puts in ``split``, by name.

    Raises:
        SceneNotFoundError: The split has no scene.
    """
    names = sorted({r.scene for r in patches.records if r.split == split})
    if not names:
        raise SceneNotFoundError(
            f"{patches.root}: no scene in split {split!r}; pass --names A,B to choose the scenes"
        )
    return names


def read_detections(path: Path) -> list[Detection]:
    """The detections ``impacts predict`` wrote to ``NAME_detections.csv``."""
    with path.open(newline="") as fh:
        return [
            Detection.from_properties(row, f"{path}: row {k}") for k, row in enumerate(csv.DictReader(fh), 2)
        ]


def scene_pixel_area(scene_pass: ScenePass, res_m: float, name: str) -> tuple[float, str]:
    """The ground area of a pixel (m²) and where it came from: the transform of a projected
    grid, else ``res_m`` squared (a warning says so)."""
    transform, crs = scene_pass.transform, scene_pass.crs
    if crs is not None and not crs.is_geographic and not transform.is_identity:
        return pixel_area_m2(transform), "transform"
    log.warning("scene %s: no projected georeference; pixel area from evaluation.res_m = %g m", name, res_m)
    return res_m**2, "res_m"


def _boxes(records: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(row_min, row_max, col_min, col_max)`` of detection records, as arrays."""
    rows = np.array([(d.row_min, d.row_max, d.col_min, d.col_max) for d in records], dtype=np.int64)
    rows = rows.reshape(-1, 4)
    return rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]


def _write_matches(
    path: Path,
    detections: Sequence[Detection],
    match: SceneMatch,
    impacts: Sequence[KnownObject],
) -> None:
    """Each detection at the operating point with its outcome, then each missed impact."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["outcome", "detection_id", "row", "col", "score", "kind", "impact", "radius_px"])
        for d, outcome, impact, kind in zip(detections, match.outcome, match.impact, match.kind, strict=True):
            radius = f"{impacts[impact].radius_px:.2f}" if impact >= 0 else ""
            writer.writerow([outcome, d.id, d.centroid_row, d.centroid_col, d.score, kind, impact, radius])
        for i, (obj, hit) in enumerate(zip(impacts, match.found, strict=True)):
            if not hit:
                writer.writerow(
                    ["miss", "", f"{obj.row:.2f}", f"{obj.col:.2f}", "", IMPACT, i, f"{obj.radius_px:.2f}"]
                )


def evaluate_scenes(
    bundle: Any,
    scenes: Sequence[EvalScene],
    cfg: EvalConfig,
    out: Path,
    predict_cfg: PredictConfig | None = None,
) -> dict[str, Any]:
    """Predict, sweep and measure whole scenes; write the figures and matches.

    Args:
        bundle: A loaded model bundle (``model``, ``version``, ``config``).
        scenes: The scenes (:func:`find_eval_scenes`).
        cfg: Threshold, minimum area, fragment merging, matching rule, size classes, sweep.
        out: Output folder (predictions go to ``out/predictions``, kept for re-runs).
        predict_cfg: Sliding-window settings (``impacts predict``'s defaults when None).

    Returns:
        The whole-scene block of ``metrics.json`` (see :func:`write_metrics`).

    Raises:
        SceneError: A scene cannot be predicted or read (too small, corrupt, ...).
    """
    predict_cfg = predict_cfg or PredictConfig()
    check_window_px(bundle.config.model.depth, predict_cfg.window_px)
    rule = MatchRule(cfg.match_radii, cfg.match_min_px)
    thresholds = sorted({*cfg.sweep_thresholds, cfg.threshold})
    predictions = out / "predictions"
    for folder in (predictions, out / "matches", out / "quicklooks"):
        folder.mkdir(parents=True, exist_ok=True)
    overall = SceneCounts()
    sweep_counts = {t: SceneCounts() for t in thresholds}
    per_scene: dict[str, Any] = {}
    quicklooks: dict[str, str] = {}
    seconds = {"predict": 0.0, "sweep": 0.0, "figures": 0.0}
    for scene in scenes:
        start = time.perf_counter()
        outcome = predict_one(
            bundle.model,
            bundle.version,
            scene.image,
            predictions,
            predict_cfg,
            cfg.threshold,
            cfg.min_area_px,
            merge_distance_px=cfg.merge_distance_px,
        )
        seconds["predict"] += time.perf_counter() - start
        log.info("scene %s %s: %d detections", scene.name, outcome.status, outcome.detections)
        start = time.perf_counter()
        with tqdm(desc=f"{scene.name} sweep", unit="row", disable=None) as bar:
            scene_pass = rethreshold_scene(
                scene,
                predictions / f"{scene.name}_prob.tif",
                thresholds,
                cfg.min_area_px,
                cfg.merge_distance_px,
                bar,
            )
        if scene.objects is not None:
            objects = load_objects(scene.objects)
            impacts = [o for o in objects if o.kind == IMPACT]
            lookalikes = [o for o in objects if o.kind != IMPACT]
        else:
            impacts = scene_pass.truth_impacts()
            lookalikes = []
        area_m2, area_from = scene_pixel_area(scene_pass, cfg.res_m, scene.name)
        scene_sweep = []
        for t in thresholds:
            counts = SceneCounts.of(
                scene_pass.match(t, impacts, lookalikes, rule),
                impacts,
                scene_pass.valid_px,
                area_m2,
                cfg.size_classes_px,
            )
            sweep_counts[t] = sweep_counts[t] + counts
            scene_sweep.append(sweep_row(t, counts))
        records = read_detections(predictions / f"{scene.name}_detections.csv")
        match = match_scene(
            impacts,
            [ScoredPoint(d.centroid_row, d.centroid_col, d.score) for d in records],
            lookalikes,
            rule,
            near_nodata=scene_pass.near_nodata(*_boxes(records)),
        )
        counts = SceneCounts.of(match, impacts, scene_pass.valid_px, area_m2, cfg.size_classes_px)
        overall = overall + counts
        seconds["sweep"] += time.perf_counter() - start
        start = time.perf_counter()
        _write_matches(out / "matches" / f"{scene.name}_matches.csv", records, match, impacts)
        quicklook = out / "quicklooks" / f"{scene.name}.png"
        plot_scene_quicklook(
            scene_pass.quicklook,
            scene_pass.step,
            impacts,
            match,
            [(d.centroid_row, d.centroid_col) for d in records],
            quicklook,
            title=f"{scene.name}: threshold {cfg.threshold:g}, truth from {scene.truth}",
        )
        seconds["figures"] += time.perf_counter() - start
        quicklooks[scene.name] = str(quicklook.relative_to(out))
        per_scene[scene.name] = {
            "truth": scene.truth,
            "height": scene_pass.height,
            "width": scene_pass.width,
            "pixel_area_m2": area_m2,
            "pixel_area_from": area_from,
            "prediction": outcome.status,
            **counts.metrics(),
            "sweep": scene_sweep,
        }
    sweep = [sweep_row(t, sweep_counts[t]) for t in thresholds]
    operating = sweep_row(cfg.threshold, overall)
    start = time.perf_counter()
    plot_scene_curve(
        sweep,
        out / "scene_curve.png",
        operating=operating,
        title=f"Whole scenes ({len(scenes)}, {overall.valid_km2:.0f} km² valid)",
    )
    seconds["figures"] += time.perf_counter() - start
    return {
        "level": "whole_scene",
        "scenes": [s.name for s in scenes],
        "threshold": cfg.threshold,
        "min_area_px": cfg.min_area_px,
        "merge_distance_px": cfg.merge_distance_px,
        "match": {
            "radii": rule.radii,
            "min_px": rule.min_px,
            "rule": "a detection hits an impact when its centroid lies within max(radii * radius_px, min_px) "
            "of its centre; the first (highest-score) detection of an impact is the hit, further ones "
            "are duplicates; a detection on no impact is a false candidate",
        },
        "size_classes_px": list(cfg.size_classes_px),
        "evaluation": cfg.model_dump(mode="json"),
        "predict": predict_cfg.model_dump(mode="json"),
        "operating_point_source": OPERATING_SOURCE,
        "overall": overall.metrics(),
        "per_scene": per_scene,
        "sweep_source": SWEEP_SOURCE,
        "sweep": sweep,
        "figures": {"curve": "scene_curve.png", "quicklooks": quicklooks},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


def write_metrics(out: Path, patch: dict[str, Any] | None, whole_scene: dict[str, Any] | None) -> Path:
    """Write ``out/metrics.json``: the patch metrics at the top level as patch mode always
    wrote them, labelled ``"level": "patch"``, and the whole-scene block under
    ``"whole_scene"`` (labelled ``"level": "whole_scene"``); either may be absent.

    Returns:
        The path written.
    """
    metrics: dict[str, Any] = {}
    if patch is not None:
        metrics = {"level": "patch", **patch}
    if whole_scene is not None:
        metrics["whole_scene"] = whole_scene
    path = out / "metrics.json"
    write_json_atomic(path, json_safe(metrics))
    return path
