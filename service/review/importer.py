"""Put ``impacts predict`` detections into the review queue, with the images analysts see.

``impacts predict`` writes ``NAME_detections.geojson``: a FeatureCollection whose features
carry ``id`` (``SCENE-00003``) and the properties scene, centroid_row/col, centroid_x/y,
row_min, col_min, row_max, col_max (inclusive pixel box), area_px, score, model_version.
For each detection :func:`import_detections` cuts three views from ``SCENES/SCENE.tif``,
reading only small windows through :mod:`tiling.io` (never a whole scene):

- ``crop``: ``crop_px`` square centred on the box, clamped to the scene, as grayscale PNG;
- ``mask``: the box outline on the crop window, 0/255 PNG of the same size;
- ``context``: ``context_px`` square around it, downsampled to at most 256 px, RGB PNG with
  the box outlined in red. A box larger than the view (a weak model's detection can cover
  most of a scene) is drawn clipped to the view, its cut sides in yellow, and the import
  logs it; a detection whose views cannot be made (an undecodable window) is reported and
  skipped while the others are imported.

uint16 scenes are stretched to 8 bits between the 1st and 99th percentile of the context
window (the crop uses the same stretch, so the two views match); uint8 scenes are shown
as they are. :func:`render_views` does the cutting from any window reader, so the service
can build the same views from an uploaded tile. The detection key is
``<feature id>@<model version>``: importing a file twice adds nothing.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from impacts import scenes
from impacts.detections import Detection
from impacts.errors import DetectionImportError, ImpactsError, SceneNameError, SceneNotFoundError
from service.review.schemas import DetectionIn
from service.review.store import ReviewStore
from tiling.io import open_image, read_window
from tiling.windows import Box, Window

log = logging.getLogger(__name__)

CONTEXT_OUT_PX = 256
OUTLINE_RGB = (255, 40, 40)
#: Colour of an outline side that the view cuts: the box goes on beyond it.
CLIPPED_RGB = (255, 220, 0)
BATCH = 200
HELP = "pass a NAME_detections.geojson written by `impacts predict`"

#: ``(row, col, height, width) -> 2-D array`` of scene pixels.
WindowReader = Callable[[int, int, int, int], np.ndarray]


@dataclass(frozen=True)
class ImportSummary:
    """What one file brought: features read, detections new to the store, and already there."""

    file: Path
    features: int
    added: int
    scenes: int
    clipped: int = 0
    skipped: int = 0

    @property
    def existing(self) -> int:
        """Detections that were already in the queue."""
        return self.features - self.added - self.skipped


def read_predictions(path: Path) -> list[tuple[str, Detection]]:
    """Read and validate a predict GeoJSON.

    Args:
        path: ``NAME_detections.geojson``.

    Returns:
        ``(feature id, record)`` per feature, in file order.

    Raises:
        DetectionImportError: Not JSON, not a FeatureCollection, or a feature lacks a property
            or has one of the wrong type (the message names the feature and the property).
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DetectionImportError(f"{path}: cannot be read as JSON ({exc}); {HELP}") from exc
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise DetectionImportError(f"{path}: not a GeoJSON FeatureCollection; {HELP}")
    features = data.get("features")
    if not isinstance(features, list):
        raise DetectionImportError(f"{path}: 'features' is missing or not a list; {HELP}")
    out = []
    for k, feature in enumerate(features):
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict):
            raise DetectionImportError(f"{path}: feature {k} has no properties object; {HELP}")
        fid = feature.get("id") or props.get("id")
        fallback = f"{props.get('scene')}:{props.get('row_min')},{props.get('col_min')},{props.get('row_max')},{props.get('col_max')}"
        p = Detection.from_properties({**props, "id": str(fid or fallback)}, f"{path}: feature {k}")
        if not scenes.is_scene_name(p.scene):
            raise DetectionImportError(
                f"{path}: feature {k} names scene {p.scene!r}; a scene name is {scenes.RULE}"
            )
        if p.centroid_x is None or p.centroid_y is None:
            raise DetectionImportError(f"{path}: feature {k} has no centroid_x/centroid_y; {HELP}")
        out.append((p.id, p))
    return out


def scene_file(scenes_dir: Path, scene: str) -> Path:
    """``scenes_dir/SCENE.tif`` (:func:`impacts.scenes.scene_file`), which must exist.

    Raises:
        DetectionImportError: The name is not a scene name, or the path (links followed)
            leaves the folder.
        SceneNotFoundError: The scene file does not exist.
    """
    try:
        path = scenes.scene_file(scenes_dir, scene)
    except SceneNameError as exc:
        raise DetectionImportError(str(exc)) from exc
    if not path.is_file():
        raise SceneNotFoundError(
            f"scene {scene} not found: no {path}; pass --scenes, the folder `impacts predict` read the scenes from"
        )
    return path


def stretch_limits(pixels: np.ndarray) -> tuple[float, float]:
    """Display limits: the full uint8 range, or the 1st-99th percentile of uint16 pixels."""
    if pixels.dtype == np.uint8:
        return 0.0, 255.0
    lo, hi = np.percentile(pixels, [1, 99]) if pixels.size else (0.0, 1.0)
    return float(lo), float(max(hi, lo + 1))


def to_uint8(pixels: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """Scale pixels linearly from ``limits`` to 0-255."""
    lo, hi = limits
    if pixels.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        return pixels
    return np.clip((pixels.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def box_outline(height: int, width: int, box: Box, row0: int, col0: int) -> np.ndarray:
    """0/255 image of a window with the part of ``box`` inside it outlined (1 px)."""
    mask = np.zeros((height, width), np.uint8)
    r0, r1 = max(box.row_min - row0, 0), min(box.row_max - row0, height - 1)
    c0, c1 = max(box.col_min - col0, 0), min(box.col_max - col0, width - 1)
    if r0 > r1 or c0 > c1:
        return mask
    mask[r0 : r1 + 1, c0 : c1 + 1] = 255
    if r1 - r0 >= 2 and c1 - c0 >= 2:
        mask[r0 + 1 : r1, c0 + 1 : c1] = 0
    return mask


def render_views(
    read: WindowReader, height: int, width: int, box: Box, crop_px: int = 128, context_px: int = 512
) -> tuple[bytes, bytes, bytes, tuple[int, int, int, int]]:
    """Crop, mask and context PNGs of one detection.

    Args:
        read: Reads a window of the scene (e.g. ``tiling.io.read_window`` on an open dataset).
        height: Scene height in pixels.
        width: Scene width in pixels.
        box: The detection's inclusive pixel box.
        crop_px: Side of the crop window.
        context_px: Side of the context window (shown at most 256 px wide).

    Returns:
        ``(crop_png, mask_png, context_png, crop_window)`` with ``crop_window`` as
        ``(row0, col0, height, width)``. A box larger than a window is drawn clipped to it
        (``Window.contains``); on the context view the cut sides are yellow. Both windows are
        centred on the box by :meth:`tiling.windows.Box.centred`.
    """
    around = box.centred(context_px, height, width)
    context = read(*around.as_tuple())
    limits = stretch_limits(context)
    window = box.centred(crop_px, height, width)
    crop = to_uint8(read(*window.as_tuple()), limits)
    mask = box_outline(window.height, window.width, box, window.row, window.col)
    scale = min(1.0, CONTEXT_OUT_PX / max(around.height, around.width))
    view = Image.fromarray(to_uint8(context, limits)).convert("RGB")
    if scale < 1.0:
        size = (max(1, round(around.width * scale)), max(1, round(around.height * scale)))
        view = view.resize(size, Image.Resampling.BOX)
    _draw_outline(view, box, around, scale)
    return _png(crop), _png(mask), _png(np.asarray(view)), window.as_tuple()


def _draw_outline(view: Image.Image, box: Box, window: Window, scale: float) -> None:
    """Outline ``box`` on the context ``view`` of ``window`` (scene px times ``scale``).

    The rectangle is clipped to the view and at least one view pixel wide, so a box larger
    than the view, or one smaller than a view pixel, is drawn all the same; a side cut by
    the view is drawn in :data:`CLIPPED_RGB`.
    """
    row0, col0, height, width = window.as_tuple()
    last_x, last_y = view.width - 1, view.height - 1

    def span(lo: int, hi: int, start: int, last: int) -> tuple[float, float]:
        a = min(max((lo - start) * scale, 0.0), last)
        b = min(max((hi + 1 - start) * scale - 1, a), last)
        return a, b

    x0, x1 = span(box.col_min, box.col_max, col0, last_x)
    y0, y1 = span(box.row_min, box.row_max, row0, last_y)
    draw = ImageDraw.Draw(view)
    draw.rectangle([x0, y0, x1, y1], outline=OUTLINE_RGB)
    cut = {
        "top": (box.row_min < row0, [(x0, y0), (x1, y0)]),
        "bottom": (box.row_max >= row0 + height, [(x0, y1), (x1, y1)]),
        "left": (box.col_min < col0, [(x0, y0), (x0, y1)]),
        "right": (box.col_max >= col0 + width, [(x1, y0), (x1, y1)]),
    }
    for is_cut, line in cut.values():
        if is_cut:
            draw.line(line, fill=CLIPPED_RGB)


def import_detections(
    store: ReviewStore, geojson_path: Path, scenes_dir: Path, crop_px: int = 128, context_px: int = 512
) -> ImportSummary:
    """Add the detections of one predict GeoJSON to the review queue (idempotent).

    Args:
        store: An open review store.
        geojson_path: ``NAME_detections.geojson`` from ``impacts predict``.
        scenes_dir: Folder holding ``SCENE.tif`` for every scene the file names.
        crop_px: Side of the crop shown to analysts.
        context_px: Side of the wider context view (downsampled to 256 px).

    Returns:
        Counts of features, new detections, scenes, boxes shown clipped (larger than the
        context view) and detections skipped (their views could not be made; each logged).

    Raises:
        DetectionImportError: Invalid file, a scene name that leaves ``scenes_dir``, or a box
            outside its scene.
        SceneNotFoundError: A scene file is missing.
    """
    records = read_predictions(geojson_path)
    by_scene: dict[str, list[tuple[str, Detection]]] = {}
    for fid, p in records:
        by_scene.setdefault(str(p.scene), []).append((fid, p))  # a scene name: read_predictions checked it
    paths = {scene: scene_file(scenes_dir, scene) for scene in by_scene}  # every name checked first
    added = clipped = skipped = 0
    with tqdm(total=len(records), desc=geojson_path.name, unit="det", disable=None) as bar:
        for scene, items in by_scene.items():
            with open_image(paths[scene]) as (ds, info):
                for fid, p in items:
                    if p.row_max >= info.height or p.col_max >= info.width:
                        raise DetectionImportError(
                            f"{geojson_path}: detection {fid} box reaches row {p.row_max}, col {p.col_max} but "
                            f"{paths[scene]} is {info.height}x{info.width}; pass the scenes predict ran on"
                        )
                crs_wkt = info.crs.to_wkt() if info.crs else None
                transform = tuple(info.transform)[:6]
                batch: list[DetectionIn] = []
                for fid, p in items:
                    box = Box.of(p.properties())
                    try:
                        views = render_views(
                            lambda r, c, h, w: read_window(ds, r, c, h, w),
                            info.height,
                            info.width,
                            box,
                            crop_px,
                            context_px,
                        )
                    except (ImpactsError, OSError, ValueError) as exc:
                        # One detection's views failing must not stop the file: report, go on.
                        log.error("detection %s skipped: its views cannot be made (%s)", fid, exc)
                        skipped += 1
                        bar.update(1)
                        continue
                    if not box.centred(context_px, info.height, info.width).contains(box):
                        log.warning(
                            "detection %s: its %dx%d px box is larger than the %d px context view; "
                            "shown clipped (cut sides in yellow)",
                            fid,
                            box.height,
                            box.width,
                            context_px,
                        )
                        clipped += 1
                    key = f"{fid}@{p.model_version}"
                    batch.append(
                        DetectionIn.of(
                            p,
                            key=key,
                            scene=scene,
                            crs_wkt=crs_wkt,
                            transform=transform,
                            views=views,
                            source="import",
                        )
                    )
                    if len(batch) >= BATCH:
                        added += store.add_detections(batch)
                        bar.update(len(batch))
                        batch = []
                added += store.add_detections(batch)
                bar.update(len(batch))
    summary = ImportSummary(geojson_path, len(records), added, len(by_scene), clipped, skipped)
    log.info(
        "%s: %d detections, %d new, %d already in the queue, %d shown clipped, %d skipped (%d scenes)",
        geojson_path,
        summary.features,
        summary.added,
        summary.existing,
        summary.clipped,
        summary.skipped,
        summary.scenes,
    )
    return summary
