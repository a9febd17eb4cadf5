"""``impacts synth``: CTX-like synthetic Mars scenes, the embedded default data set.

Each scene is a single-band uint8 GeoTIFF on an equirectangular Mars grid with its impact
mask, an object list (every planted impact and look-alike, one row each) and a line in
``data.csv``. Scenes are written window by window, so memory stays bounded whatever their size.
``difficulty`` picks the preset: easy/medium/hard (large, dark, isolated impacts; unchanged
since the first data set) or realistic (:mod:`tiling.synth_realistic`).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rasterio.transform import Affine

from impacts.atomic import atomic_path
from impacts.errors import SceneError
from tiling.config import SynthConfig
from tiling.crs import MARS_EQC, MARS_RADIUS_M
from tiling.io import geotiff_profile, open_geotiff_writer, write_window
from tiling.synth_before import BeforeTruth, write_before
from tiling.synth_objects import OBJECT_KINDS, PlantedObject, make_footprint, plant_objects
from tiling.synth_realistic import plant_realistic
from tiling.synth_render import SceneSpec, render_window
from tiling.synth_sensor import draw_sensor

log = logging.getLogger(__name__)

# MARS_EQC (the grid of every synthetic scene: IAU_2015:49910, equirectangular on the Mars
# 2015 sphere) and MARS_RADIUS_M are owned by tiling.crs and imported from here by callers.
#: Columns of ``NAME_objects.csv``: the first seven for every object; ``cluster_size`` (craters
#: under the halo, 1 for a single crater) and ``contrast`` (share of the brightness the blast
#: zone removes at its centre) only for impacts, empty for look-alikes.
OBJECT_COLUMNS = ["id", "kind", "row", "col", "radius_px", "x", "y", "cluster_size", "contrast"]


@dataclass(frozen=True)
class CtxName:
    """A CTX-style product name, e.g. ``D17_033980_1956_XI_15N262W``."""

    text: str
    lat_deg: float
    lon_east_deg: float


def ctx_name(rng: np.random.Generator) -> CtxName:
    """Draw a CTX-like product id: mission phase, orbit, centre latitude code, mode, lat/lon."""
    phase = f"{rng.choice(list('BDFGJP'))}{int(rng.integers(1, 23)):02d}"
    orbit = int(rng.integers(10_000, 40_000))
    lat = int(rng.integers(-45, 46))
    lon_w = int(rng.integers(0, 360))
    mode = rng.choice(["XI", "XN"])
    code = 1800 + round(lat * 4.5)
    text = f"{phase}_{orbit:06d}_{code:04d}_{mode}_{abs(lat):02d}{'N' if lat >= 0 else 'S'}{lon_w:03d}W"
    lon_east = (-lon_w + 180) % 360 - 180
    return CtxName(text, float(lat), float(lon_east))


def scene_transform(name: CtxName, height: int, width: int, res_m: float) -> Affine:
    """Geotransform that centres the scene on its name's latitude/longitude (eqc metres)."""
    x_c = MARS_RADIUS_M * math.radians(name.lon_east_deg)
    y_c = MARS_RADIUS_M * math.radians(name.lat_deg)
    return Affine(res_m, 0.0, x_c - width / 2 * res_m, 0.0, -res_m, y_c + height / 2 * res_m)


def scene_size(cfg: SynthConfig, rng: np.random.Generator) -> tuple[int, int]:
    """A scene's (height, width): ``cfg.size``, else a CTX-like strip when ``cfg.strips``
    (width uniform in ``strip_width_px``, height the width times a log-uniform ratio in
    ``strip_length_ratio``), else uniform between ``min_size`` and ``max_size``."""
    if cfg.size is not None:
        return cfg.size
    if cfg.strips:
        width = int(rng.integers(cfg.strip_width_px[0], cfg.strip_width_px[1] + 1))
        lo, hi = cfg.strip_length_ratio
        ratio = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return max(256, round(width * ratio)), width
    height = int(rng.integers(cfg.min_size[0], cfg.max_size[0] + 1))
    width = int(rng.integers(cfg.min_size[1], cfg.max_size[1] + 1))
    return height, width


def scene_spec(cfg: SynthConfig, index: int) -> tuple[CtxName, SceneSpec]:
    """Draw the name, size, footprint and objects of scene ``index`` (a pure function of
    the config's seed and the index)."""
    rng = np.random.default_rng([cfg.seed, index])
    name = ctx_name(rng)
    height, width = scene_size(cfg, rng)
    footprint = make_footprint(height, width, rng)
    if cfg.difficulty == "realistic":
        sun = float(rng.uniform(0, 2 * math.pi))
        objects = plant_realistic(height, width, footprint, cfg.realistic, rng, sun, cfg.impact_density)
        sensor = draw_sensor(cfg.realistic.ctx, rng)
        seed = int(rng.integers(0, 2**31 - 1))
        return name, SceneSpec(height, width, seed, footprint, tuple(objects), sun, sensor)
    # easy/medium/hard: the draws keep their order, so a seed writes the scenes it always did.
    impact_total = None
    if cfg.impact_density is not None:
        impact_total = max(1, round(cfg.impact_density * 4 * footprint.half_h * footprint.half_w / 1e6))
    objects = plant_objects(
        height, width, footprint, cfg.difficulty, rng, cfg.impact_fraction, cfg.max_impacts, impact_total
    )
    sun = float(rng.uniform(0, 2 * math.pi))
    seed = int(rng.integers(0, 2**31 - 1))
    return name, SceneSpec(height, width, seed, footprint, tuple(objects), sun)


def write_objects(path: Path, objects: tuple[PlantedObject, ...], transform: Affine) -> None:
    """Write the object list as CSV (:data:`OBJECT_COLUMNS`): id, kind, centre (px and map
    metres), radius in px, and for impacts their crater count and contrast."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(OBJECT_COLUMNS)
        for obj in objects:
            x, y = transform @ (obj.col, obj.row)
            writer.writerow(
                [
                    obj.id,
                    obj.kind,
                    f"{obj.row:.2f}",
                    f"{obj.col:.2f}",
                    f"{obj.radius_px:.2f}",
                    f"{x:.2f}",
                    f"{y:.2f}",
                    obj.cluster_size if obj.kind == "impact" else "",
                    f"{obj.depth:.3f}" if obj.kind == "impact" else "",
                ]
            )


#: The columns :func:`load_objects` reads.
KNOWN_OBJECT_COLUMNS = ("kind", "row", "col", "radius_px")


@dataclass(frozen=True)
class KnownObject:
    """An object known to be in a scene: one line of ``NAME_objects.csv`` (only what the
    metrics need; the generator's own :class:`tiling.synth_objects.PlantedObject` has more).

    ``kind`` is one of :data:`tiling.synth_objects.OBJECT_KINDS` (``"impact"`` or a
    look-alike: ``"crater"``, ``"shadow"``, ``"dune"``, ``"slope_streak"``,
    ``"dust_devil_track"``, ``"boulder"``); ``row``/``col`` the centre in scene pixels;
    ``radius_px`` the object's radius (for a cluster of impacts the halo that covers all its
    craters; half the length of streaks and tracks; the semi-major axis of shadows and
    dunes). ``cluster_size`` and ``contrast`` are known for impacts of lists that have those
    columns (1 and None otherwise).
    """

    kind: str
    row: float
    col: float
    radius_px: float
    cluster_size: int = 1
    contrast: float | None = None


def load_objects(path: Path) -> list[KnownObject]:
    """Read the planted objects of a synthetic scene.

    Args:
        path: ``NAME_objects.csv`` as written by ``impacts synth`` (columns
            :data:`OBJECT_COLUMNS`; ``kind``, ``row``, ``col`` and ``radius_px`` are needed,
            ``cluster_size`` and ``contrast`` read where present and filled, other columns
            ignored; lists written before those columns existed read the same).

    Returns:
        The objects in file order; an empty list when the file does not exist (real scenes
        have no object list).

    Raises:
        SceneError: The file lacks a needed column or holds a value that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in KNOWN_OBJECT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SceneError(
                f"{path}: object list lacks column(s) {', '.join(missing)}; "
                f"rewrite it with `impacts synth` or delete it"
            )
        objects = []
        for line_no, rec in enumerate(reader, start=2):
            try:
                cluster = (rec.get("cluster_size") or "").strip()
                contrast = (rec.get("contrast") or "").strip()
                objects.append(
                    KnownObject(
                        kind=rec["kind"].strip(),
                        row=float(rec["row"]),
                        col=float(rec["col"]),
                        radius_px=float(rec["radius_px"]),
                        cluster_size=int(cluster) if cluster else 1,
                        contrast=float(contrast) if contrast else None,
                    )
                )
            except (TypeError, ValueError, AttributeError) as exc:
                raise SceneError(
                    f"{path}, line {line_no}: cannot read object ({exc}); "
                    f"fix the line or rewrite the file with `impacts synth`"
                ) from exc
    return objects


@dataclass(frozen=True)
class SceneSummary:
    """What was written for one scene."""

    file_name: str
    height: int
    width: int
    has_mask: bool
    impact_fraction: float
    counts: dict[str, int]  # objects per kind, every kind of OBJECT_KINDS
    before: BeforeTruth | None = None  # the earlier image, when cfg.before.enabled


def write_scene(
    out_dir: Path, name: CtxName, spec: SceneSpec, cfg: SynthConfig, with_mask: bool
) -> SceneSummary:
    """Render and write one scene (image, mask unless ``with_mask`` is false, object list)
    window by window; files appear under their final names only when complete."""
    transform = scene_transform(name, spec.height, spec.width, cfg.res_m)
    image_profile = geotiff_profile(spec.height, spec.width, "uint8", MARS_EQC, transform, nodata=0)
    mask_profile = geotiff_profile(
        spec.height, spec.width, "uint8", MARS_EQC, transform, nodata=None, sparse=True
    )
    impact_px = 0
    step = cfg.window_px
    with ExitStack() as stack:
        img_ds = stack.enter_context(open_geotiff_writer(out_dir / f"{name.text}.tif", image_profile))
        mask_ds = (
            stack.enter_context(open_geotiff_writer(out_dir / f"{name.text}_mask.tif", mask_profile))
            if with_mask
            else None
        )
        for row in range(0, spec.height, step):
            for col in range(0, spec.width, step):
                h, w = min(step, spec.height - row), min(step, spec.width - col)
                image, mask = render_window(spec, row, col, h, w)
                write_window(img_ds, image, row, col)
                if mask_ds is not None:
                    write_window(mask_ds, mask, row, col)
                impact_px += int(mask.sum())
    write_objects(out_dir / f"{name.text}_objects.csv", spec.objects, transform)
    kinds = [o.kind for o in spec.objects]
    return SceneSummary(
        name.text,
        spec.height,
        spec.width,
        with_mask,
        impact_px / (spec.height * spec.width),
        {k: kinds.count(k) for k in OBJECT_KINDS},
    )


def synth_scenes(
    out_dir: Path, cfg: SynthConfig, progress: Callable[[int], object] | None = None
) -> list[SceneSummary]:
    """Write ``cfg.count`` scenes, their masks, object lists and ``data.csv`` into ``out_dir``,
    and with ``cfg.before.enabled`` each scene's earlier image and its truth
    (:mod:`tiling.synth_before`: ``NAME_before.tif``, ``NAME_before.json``).

    Args:
        out_dir: Output folder (created).
        cfg: Generator settings.
        progress: Called with 1 after each scene (progress bar hook).

    Returns:
        One summary per scene.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries: list[SceneSummary] = []
    for index in range(cfg.count):
        name, spec = scene_spec(cfg, index)
        summary = write_scene(out_dir, name, spec, cfg, with_mask=index < cfg.count - cfg.without_mask)
        if cfg.before.enabled:
            transform = scene_transform(name, spec.height, spec.width, cfg.res_m)
            summary = replace(summary, before=write_before(out_dir, name.text, spec, transform, cfg, index))
        summaries.append(summary)
        log.info(
            "scene %s: %dx%d px, %d impacts, %.3f%% impact pixels%s",
            name.text,
            spec.height,
            spec.width,
            summary.counts["impact"],
            100 * summary.impact_fraction,
            "" if summary.has_mask else " (no mask, on request)",
        )
        if progress:
            progress(1)
    with atomic_path(out_dir / "data.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file_name", "height", "width"])
        writer.writerows([s.file_name, s.height, s.width] for s in summaries)
    return summaries
