"""``impacts predict``: a model bundle over whole scenes -> probability COG + detections + STAC.

For each scene ``NAME.tif``: ``DIR/NAME_prob.tif`` (uint8, probability x 255, a
Cloud-Optimized GeoTIFF with internal tiles and overviews, on the scene's grid and CRS,
written stripe by stripe in bounded memory: :func:`tiling.io.open_cog_writer`),
``DIR/NAME_detections.geojson`` (scene CRS), ``DIR/NAME_detections.csv`` and the STAC Item
``DIR/NAME_stac.json``, then ``DIR/collection.json`` rebuilt from the folder's Items
(:mod:`training.stac`). Each file appears under its final name only when complete
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
from impacts.chunks import Chunking, read_scene_list, select
from impacts.config import StrictModel
from impacts.detections import CSV_COLUMNS, Detection, feature_collection
from impacts.errors import ConfigError, ImpactsError, SceneError, SceneNotFoundError
from impacts.failures import clear_failure, write_failure
from tiling.components import Impact
from tiling.io import find_scenes, geotiff_profile, open_cog_writer, open_image, read_window, write_window
from training.inference import keras_predictor, predict_scene
from training.stac import ITEM_SUFFIX, scene_item, write_collection, write_item

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
        "stac": out / f"{name}{ITEM_SUFFIX}",
    }


def _write_stac(image: Path, paths: dict[str, Path], info: Any, version: str, detections: int) -> None:
    """Write the scene's STAC Item (:mod:`training.stac`); a scene without a Mars CRS gets
    no Item (STAC needs lon/lat), with a warning. The folder's collection is written once
    per run (:func:`predict_path`), or by ``impacts catalog`` after a job array."""
    if info.crs is None:
        log.warning("%s has no CRS: no STAC Item written", image)
        return
    try:
        item = scene_item(
            name=image.stem,
            image=image,
            outputs=paths,
            height=info.height,
            width=info.width,
            transform=info.transform,
            crs=info.crs,
            model_version=version,
            detections=detections,
        )
    except SceneError as exc:
        log.warning("%s: no STAC Item written (%s)", image, exc)
        return
    write_item(item, paths["stac"])


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
    # The STAC Item is not part of the check: scenes finished before it existed stay
    # finished and get their Item now (it costs opening the scene, no prediction).
    outputs_there = all(p.is_file() for k, p in paths.items() if k not in ("marker", "stac"))
    if marker is not None and marker.get("fingerprint") == fingerprint and outputs_there:
        count = marker.get("detections")
        count = count if isinstance(count, int) else 0
        if not paths["stac"].is_file():
            with open_image(image) as (_, info):
                _write_stac(image, paths, info, version, count)
        return PredictOutcome(image.stem, "resumed", "already predicted", count)
    paths["marker"].unlink(missing_ok=True)
    with open_image(image) as (ds, info):
        if min(info.height, info.width) < cfg.window_px:
            raise SceneError(
                f"{image}: {info.height}x{info.width} px is smaller than a {cfg.window_px} px window; pass a smaller --window-px"
            )
        profile = geotiff_profile(info.height, info.width, "uint8", info.crs, info.transform, nodata=None)
        scale = 255.0 if info.dtype == "uint8" else 65535.0
        with (
            open_cog_writer(paths["prob"], profile) as dst,
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
        _write_stac(image, paths, info, version, len(records))
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
        image.stem,
        "done",
        "",
        len(records),
        [str(p) for k, p in paths.items() if k != "marker" and p.is_file()],
    )


def check_window_px(depth: int, window_px: int) -> None:
    """Raises:
    SceneError: ``window_px`` is not a multiple of ``2**depth`` (the model's size multiple)."""
    multiple = 2**depth
    if window_px % multiple:
        raise SceneError(
            f"--window-px {window_px} must be a multiple of {multiple} for this model (depth {depth})"
        )


def failure_path(out: Path, scene: str) -> Path:
    """``OUT/NAME_predict.failed.json``: the record of a scene that failed (:mod:`impacts.failures`)."""
    return out / f"{scene}_predict.failed.json"


def marker_path(out: Path, scene: str) -> Path:
    """``OUT/NAME_predict.json``: the marker of a finished scene."""
    return _outputs(out, scene)["marker"]


def predict_targets(target: Path | None, scene_list: Path | None) -> list[Path]:
    """The scene images of a file, a folder (in name order) or a scene list (in line order).

    Raises:
        SceneNotFoundError: The path or list does not exist, or names no scene.
        SceneError: A list line is not a scene file name, or two lines name one scene.
        ConfigError: Both or neither of ``target`` and ``scene_list`` are given.
    """
    if (target is None) == (scene_list is None):
        raise ConfigError("pass a scene file or folder, or --scene-list FILE (one of them)")
    if scene_list is not None:
        return [s.path for s in read_scene_list(scene_list)]
    assert target is not None
    if target.is_dir():
        return [s.image for s in find_scenes(target)]
    if target.is_file():
        return [target]
    raise SceneNotFoundError(f"{target} not found; pass a NAME.tif scene or a folder of them")


def predict_path(
    bundle: Any,
    target: Path | None,
    out: Path,
    cfg: PredictConfig,
    array_index: int | None = None,
    *,
    scene_list: Path | None = None,
    chunking: Chunking | None = None,
) -> list[PredictOutcome]:
    """Predict a scene file, every scene of a folder or of a scene list, or only the chunk
    of them that LSF array element ``array_index`` (1-based) takes (:mod:`impacts.chunks`);
    failures are reported per scene and the others go on.

    A failed scene leaves ``NAME_predict.failed.json`` (removed once it succeeds), which
    ``impacts jobs summary`` reads; a listed file that does not exist fails its own scene.

    Raises:
        SceneNotFoundError: The path or list does not exist, names no scene, or the array
            index is out of range.
        SceneError: A scene list names a scene twice or has a line that is no scene name.
        ConfigError: Both or neither of ``target`` and ``scene_list``; a chunking without index.
    """
    images = select(predict_targets(target, scene_list), array_index, chunking)
    if not images:
        log.warning("array element %s has no scene (more elements than scenes)", array_index)
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
            if not image.is_file():
                raise SceneNotFoundError(
                    f"{image} does not exist; fix its line in the scene list or restore the file"
                )
            outcome = predict_one(bundle.model, bundle.version, image, out, cfg, threshold, min_area, merge)
        except (ImpactsError, OSError) as exc:  # OSError: a file vanished or a read failed mid-scene
            outcome = PredictOutcome(image.stem, "failed", str(exc))
            log.error("scene %s failed: %s", image.stem, exc)
            write_failure(failure_path(out, image.stem), image.stem, image, str(exc), array_index=array_index)
        else:
            clear_failure(failure_path(out, image.stem))
            log.info("scene %s %s: %d detections", image.stem, outcome.status, outcome.detections)
        outcomes.append(outcome)
    if array_index is None:
        # One pass over the folder's Items per run. Array elements leave it to
        # `impacts catalog` after the array: 500 elements rebuilding it would read every
        # Item 500 times and race on one file.
        write_collection(out)
    return outcomes
