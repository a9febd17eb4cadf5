"""``impacts predict``: a model bundle over whole scenes -> probability GeoTIFF + detections.

For each scene ``NAME.tif``: ``DIR/NAME_prob.tif`` (uint8, probability x 255, tiled and
compressed, on the scene's grid and CRS), ``DIR/NAME_detections.geojson`` (scene CRS) and
``DIR/NAME_detections.csv``. Each file appears under its final name only when complete
(written under a temporary name, fsynced and renamed: :mod:`impacts.atomic`), and
``DIR/NAME_predict.json``, written last the same way, marks a finished scene: a re-run skips
finished scenes (same model and settings) and predicts again a scene whose marker is
missing, stale or unreadable (a killed run). A bad scene is reported and the others go on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from tqdm import tqdm

from impacts.atomic import atomic_path, read_marker, write_json_atomic
from impacts.config import StrictModel
from impacts.detections import CSV_COLUMNS, Detection, feature_collection
from impacts.errors import ImpactsError, SceneError, SceneNotFoundError
from tiling.components import Impact
from tiling.io import find_scenes, geotiff_profile, open_geotiff_writer, open_image, read_window, write_window
from training.inference import keras_predictor, predict_scene

log = logging.getLogger(__name__)


class PredictConfig(StrictModel):
    """Sliding-window settings of ``impacts predict``."""

    window_px: int = Field(256, ge=16, description="Window side; a multiple of 2**depth of the model.")
    overlap_px: int = Field(64, ge=0, description="Overlap of neighbouring windows, blended away.")
    batch_size: int = Field(8, ge=1, description="Windows per model call.")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="Detection threshold; None = the bundle's evaluation threshold."
    )
    min_area_px: int | None = Field(None, ge=1, description="Smallest detection; None = the bundle's.")
    merge_distance_px: int | None = Field(
        None,
        ge=0,
        description="Detections whose boxes are at most this many px apart become one; None = the bundle's.",
    )


@dataclass
class PredictOutcome:
    """How one scene went: ``done``, ``resumed`` or ``failed``."""

    scene: str
    status: str
    message: str = ""
    detections: int = 0
    outputs: list[str] = field(default_factory=list)


def _outputs(out: Path, name: str) -> dict[str, Path]:
    return {
        "prob": out / f"{name}_prob.tif",
        "geojson": out / f"{name}_detections.geojson",
        "csv": out / f"{name}_detections.csv",
        "marker": out / f"{name}_predict.json",
    }


def detection_records(detections: list[Impact], scene: str, transform: Any, version: str) -> list[Detection]:
    """The records of a scene's detections, highest score first, ids ``SCENE-00000`` on."""
    return [
        Detection.locate(
            id=f"{scene}-{k:05d}",
            scene=scene,
            row_min=d.box.row_min,
            col_min=d.box.col_min,
            row_max=d.box.row_max,
            col_max=d.box.col_max,
            centroid_row=d.centroid_row,
            centroid_col=d.centroid_col,
            area_px=d.area_px,
            score=d.peak,
            model_version=version,
            transform=transform,
        )
        for k, d in enumerate(sorted(detections, key=lambda d: -d.peak))
    ]


def write_detections(paths: dict[str, Path], records: list[Detection], scene: str, crs: Any) -> None:
    """Write detections as GeoJSON (box polygons in the scene CRS) and CSV, atomically."""
    collection = feature_collection(records, f"{scene}_detections", crs.to_wkt() if crs else None)
    write_json_atomic(paths["geojson"], collection, indent=1)
    with atomic_path(paths["csv"]) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(r.properties() for r in records)


def predict_one(
    model: Any,
    version: str,
    image: Path,
    out: Path,
    cfg: PredictConfig,
    threshold: float,
    min_area_px: int,
    merge_distance_px: int = 0,
) -> PredictOutcome:
    """Predict one scene into ``out`` (skipped when its outputs for this model and settings
    exist); ``threshold``, ``min_area_px`` and ``merge_distance_px`` are the resolved settings."""
    paths = _outputs(out, image.stem)
    stat = image.stat()
    # Without merging, the fingerprint is the one written before merging existed, so
    # finished scenes stay finished.
    settings = [version, cfg.model_dump(mode="json", exclude={"merge_distance_px"}), threshold, min_area_px]
    if merge_distance_px:
        settings.append({"merge_distance_px": merge_distance_px})
    fingerprint = hashlib.sha256(
        json.dumps([*settings, stat.st_size, stat.st_mtime_ns]).encode()
    ).hexdigest()[:16]
    marker = read_marker(paths["marker"])  # unreadable (a killed write) = not finished
    outputs_there = all(p.is_file() for k, p in paths.items() if k != "marker")
    if marker is not None and marker.get("fingerprint") == fingerprint and outputs_there:
        count = marker.get("detections")
        return PredictOutcome(
            image.stem, "resumed", "already predicted", count if isinstance(count, int) else 0
        )
    paths["marker"].unlink(missing_ok=True)
    with open_image(image) as (ds, info):
        if min(info.height, info.width) < cfg.window_px:
            raise SceneError(
                f"{image}: {info.height}x{info.width} px is smaller than a {cfg.window_px} px window; pass a smaller --window-px"
            )
        profile = geotiff_profile(info.height, info.width, "uint8", info.crs, info.transform, nodata=None)
        scale = 255.0 if info.dtype == "uint8" else 65535.0
        with (
            open_geotiff_writer(paths["prob"], profile) as dst,
            tqdm(total=info.height, desc=image.stem, unit="row", disable=None) as bar,
        ):
            dst.scales = (1 / 255,)
            result = predict_scene(
                lambda row0, rows: read_window(ds, row0, 0, rows, info.width),
                info.height,
                info.width,
                keras_predictor(model),
                lambda prob, row0: write_window(dst, np.rint(prob * 255).astype(np.uint8), row0, 0),
                window_px=cfg.window_px,
                overlap_px=cfg.overlap_px,
                batch_size=cfg.batch_size,
                threshold=threshold,
                scale=scale,
                nodata=info.nodata,
                min_area_px=min_area_px,
                merge_distance_px=merge_distance_px,
                progress=bar.update,
            )
        records = detection_records(result.detections, image.stem, info.transform, version)
        write_detections(paths, records, image.stem, info.crs)
    write_json_atomic(
        paths["marker"],
        {
            "fingerprint": fingerprint,
            "model_version": version,
            "detections": len(records),
            "windows": result.windows,
            "skipped_nodata_windows": result.skipped_windows,
        },
    )
    return PredictOutcome(
        image.stem, "done", "", len(records), [str(p) for k, p in paths.items() if k != "marker"]
    )


def check_window_px(depth: int, window_px: int) -> None:
    """Raises:
    SceneError: ``window_px`` is not a multiple of ``2**depth`` (the model's size multiple)."""
    multiple = 2**depth
    if window_px % multiple:
        raise SceneError(
            f"--window-px {window_px} must be a multiple of {multiple} for this model (depth {depth})"
        )


def predict_path(
    bundle: Any, target: Path, out: Path, cfg: PredictConfig, array_index: int | None = None
) -> list[PredictOutcome]:
    """Predict a scene file or every scene of a folder (or only the ``array_index``-th,
    1-based, for LSF job arrays); failures are reported per scene and the others go on.

    Raises:
        SceneNotFoundError: The path does not exist, the folder holds no scene, or the
            array index is out of range.
    """
    if target.is_dir():
        images = [s.image for s in find_scenes(target)]
    elif target.is_file():
        images = [target]
    else:
        raise SceneNotFoundError(f"{target} not found; pass a NAME.tif scene or a folder of them")
    if array_index is not None:
        if not 1 <= array_index <= len(images):
            raise SceneNotFoundError(
                f"array index {array_index} is outside 1..{len(images)} (scenes in {target}); size the job array to the scene count"
            )
        images = [images[array_index - 1]]
    check_window_px(bundle.config.model.depth, cfg.window_px)
    threshold = cfg.threshold or bundle.config.evaluation.threshold
    min_area = cfg.min_area_px or bundle.config.evaluation.min_area_px
    merge = cfg.merge_distance_px
    if merge is None:
        merge = bundle.config.evaluation.merge_distance_px
    out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for image in images:
        try:
            outcome = predict_one(bundle.model, bundle.version, image, out, cfg, threshold, min_area, merge)
        except ImpactsError as exc:
            outcome = PredictOutcome(image.stem, "failed", str(exc))
            log.error("scene %s failed: %s", image.stem, exc)
        else:
            log.info("scene %s %s: %d detections", image.stem, outcome.status, outcome.detections)
        outcomes.append(outcome)
    return outcomes
