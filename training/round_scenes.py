"""Whole scenes in training: after every round the val and test scenes are predicted whole
and swept; after the last, the operating point is chosen on the val scenes.

Each scene is predicted once per round with ``impacts predict``'s code
(:func:`training.predict.predict_one`, into ``RUN/whole_scene/predictions/``, replaced by
the next round's model); its kept 8-bit probability map is then re-thresholded
(:func:`training.scene_pass.rethreshold_scene`) at every ``evaluation.sweep_thresholds``
(plus the operating threshold) for every ``evaluation.sweep_merge_distances_px``, and
matched to the truth (:mod:`training.scene_eval`). No figure is drawn: that is
``impacts evaluate --scenes``.

Per split, the round's entry in ``report.json`` gets ``"whole_scene"``::

    {"level": "whole_scene", "scenes": [...], "operating": {... at the config's threshold,
     minimum area and merging}, "sweep": [{"threshold", "merge_distance_px", "recall",
     "false_candidates_per_100km2", "duplicates", ...}, ...], "sweep_source": ...}

The operating point (:func:`training.operating_point.choose_operating_point`) is chosen
on the val sweep only; the test figures at that point are reported beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from impacts.errors import ImpactsError
from tiling.patchset import EVAL_SPLITS, PatchSet
from tiling.synth import KnownObject, load_objects
from training.config import EvalConfig, TrainConfig
from training.evaluate_scenes import SWEEP_SOURCE, find_eval_scenes, scene_pixel_area, split_scenes
from training.operating_point import OperatingPoint, choose_operating_point
from training.predict import PredictConfig, predict_one
from training.scene_eval import IMPACT, MatchRule, SceneCounts, sweep_row
from training.scene_pass import EvalScene, rethreshold_scene

log = logging.getLogger(__name__)

#: The report key of whole-scene figures (a round's split, the bundle's metrics).
WHOLE_SCENE = "whole_scene"


def sweep_scenes(
    scenes: Sequence[EvalScene], predictions: Path, cfg: EvalConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sweep thresholds and merge distances over kept probability maps, summed over scenes.

    Args:
        scenes: The scenes, each predicted into ``predictions/NAME_prob.tif``.
        predictions: The folder of the maps.
        cfg: Thresholds, merge distances, minimum area, matching rule, size classes.

    Returns:
        ``(sweep, operating)``: one :func:`training.scene_eval.sweep_row` per threshold and
        merge distance (with ``merge_distance_px`` and ``min_area_px``), and the full
        metrics at the config's threshold and merge distance.

    Raises:
        SceneError: A map or scene cannot be read.
    """
    rule = MatchRule(cfg.match_radii, cfg.match_min_px)
    thresholds = sorted({*cfg.sweep_thresholds, cfg.threshold})
    merges = sorted({*cfg.sweep_merge_distances_px, cfg.merge_distance_px})
    totals = {(t, d): SceneCounts() for t in thresholds for d in merges}
    for scene in scenes:
        truth: tuple[list[KnownObject], list[KnownObject]] | None = None
        if scene.objects is not None:
            objects = load_objects(scene.objects)
            truth = ([o for o in objects if o.kind == IMPACT], [o for o in objects if o.kind != IMPACT])
        for d in merges:
            scene_pass = rethreshold_scene(
                scene, predictions / f"{scene.name}_prob.tif", thresholds, cfg.min_area_px, d
            )
            if truth is None:
                truth = (scene_pass.truth_impacts(), [])
            impacts, lookalikes = truth
            area_m2, _ = scene_pixel_area(scene_pass, cfg.res_m, scene.name)
            for t in thresholds:
                match = scene_pass.match(t, impacts, lookalikes, rule)
                counts = SceneCounts.of(match, impacts, scene_pass.valid_px, area_m2, cfg.size_classes_px)
                totals[t, d] = totals[t, d] + counts
    sweep = [
        {**sweep_row(t, totals[t, d]), "merge_distance_px": d, "min_area_px": cfg.min_area_px}
        for d in merges
        for t in thresholds
    ]
    operating = {
        "threshold": cfg.threshold,
        "merge_distance_px": cfg.merge_distance_px,
        "min_area_px": cfg.min_area_px,
        **totals[cfg.threshold, cfg.merge_distance_px].metrics(),
    }
    return sweep, operating


def evaluate_round_scenes(
    model: Any, version: str, cfg: TrainConfig, patches: PatchSet, out: Path
) -> dict[str, dict[str, Any]]:
    """The whole-scene figures of a round's model on the val and test scenes.

    A split without scenes, or whose scenes cannot be found or predicted, is left out with
    a log line (training goes on).

    Args:
        model: The round's model (``predict_on_batch``).
        version: Its version (``RUN-rR``).
        cfg: The run's config; ``evaluation.scenes_dir`` must be set.
        patches: The patch set (its records say which scenes are val and test).
        out: The run folder (predictions go to ``out/whole_scene/predictions``).

    Returns:
        ``{split: block}`` (see the module).
    """
    ev = cfg.evaluation
    if ev.scenes_dir is None:
        return {}
    predict_cfg = PredictConfig()
    predictions = out / WHOLE_SCENE / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    blocks: dict[str, dict[str, Any]] = {}
    for split in EVAL_SPLITS:
        try:
            scenes = find_eval_scenes(Path(ev.scenes_dir), split_scenes(patches, split))
            for scene in scenes:
                predict_one(
                    model,
                    version,
                    scene.image,
                    predictions,
                    predict_cfg,
                    ev.threshold,
                    ev.min_area_px,
                    merge_distance_px=ev.merge_distance_px,
                )
            sweep, operating = sweep_scenes(scenes, predictions, ev)
        except ImpactsError as exc:
            log.warning("%s: no whole-scene %s figures: %s", version, split, exc)
            continue
        blocks[split] = {
            "level": WHOLE_SCENE,
            "scenes": [s.name for s in scenes],
            "operating": operating,
            "sweep_source": SWEEP_SOURCE,
            "sweep": sweep,
        }
        log.info(
            "%s whole %s scenes (%d): recall %s, %s false candidates per 100 km² at threshold %g",
            version,
            split,
            len(scenes),
            _fmt(operating["recall"]),
            _fmt(operating["false_candidates_per_100km2"]),
            ev.threshold,
        )
    return blocks


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _row_at(sweep: Sequence[Mapping[str, Any]], point: OperatingPoint) -> dict[str, Any] | None:
    for row in sweep:
        if row["threshold"] == point.threshold and row.get("merge_distance_px", 0) == point.merge_distance_px:
            return dict(row)
    return None


def operating_point_of(round_entry: Mapping[str, Any], cfg: TrainConfig) -> dict[str, Any] | None:
    """The operating point chosen on a round's val scenes, with the test figures there.

    Args:
        round_entry: A round of ``report.json`` (its ``val``/``test`` ``whole_scene`` blocks).
        cfg: The run's config (``evaluation.target_recall``, ``min_area_px``).

    Returns:
        ``{"chosen_on": "val", "target_recall", "threshold", "merge_distance_px",
        "min_area_px", "reached_target", "reason", "val": row, "test": row or None}``, or
        None when the round has no val sweep (or its val scenes hold no impact).
    """
    val = (round_entry.get("val") or {}).get(WHOLE_SCENE)
    if not val:
        return None
    try:
        point = choose_operating_point(val["sweep"], cfg.evaluation.target_recall)
    except ValueError as exc:
        log.warning("the operating point stays the config's: %s", exc)
        return None
    test = (round_entry.get("test") or {}).get(WHOLE_SCENE)
    return {
        "chosen_on": "val",
        "target_recall": point.target_recall,
        "threshold": point.threshold,
        "merge_distance_px": point.merge_distance_px,
        "min_area_px": point.min_area_px or cfg.evaluation.min_area_px,
        "reached_target": point.reached_target,
        "reason": point.reason,
        "val": _row_at(val["sweep"], point),
        "test": _row_at(test["sweep"], point) if test else None,
    }


def with_operating_point(cfg: TrainConfig, point: Mapping[str, Any]) -> TrainConfig:
    """``cfg`` with the chosen threshold, minimum area and merge distance in ``evaluation``
    (what ``impacts predict``, the service and the review import read from the bundle)."""
    evaluation = cfg.evaluation.model_copy(
        update={
            "threshold": point["threshold"],
            "min_area_px": point["min_area_px"],
            "merge_distance_px": point["merge_distance_px"],
        }
    )
    return cfg.model_copy(update={"evaluation": evaluation})
