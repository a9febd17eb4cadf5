"""The earlier image of a synthetic scene (``impacts synth --before``): ``NAME_before.tif``.

The same ground before its new impacts fell, as another acquisition would show it:

- the same terrain and look-alikes; none of the scene's impacts (their ids are listed as
  absent); some old impacts elsewhere, dark here and faded away by the scene's time (a
  share of ``before.faded_share`` per scene impact, placed clear of the scene's impacts);
- another sun azimuth (``before.sun_change_deg``): old craters' lit and shadowed walls and
  boulders' cast shadows turn with it; the relief shadows of ``realistic`` scenes (planted
  pointing away from the sun) turn by the same angle about their centres (there is no
  relief to cast them, so they neither move nor stretch); those of easy/medium/hard point
  anywhere, unrelated to the sun, and stay as they are;
- another gain, brightness and noise (and, for ``realistic`` scenes, the CTX striping and
  drift of :class:`tiling.synth_sensor.Sensor` on its own pixel grid);
- another grid in the same CRS (:data:`tiling.crs.MARS_EQC`): pixel size drawn in
  ``before.res_m``, origin off the scene's by a fraction of a pixel, extending
  ``before.margin_px`` scene px beyond the scene on every side, with a rotated no-data
  border that covers the scene's footprint;
- a planted misregistration: the content lies ``(shift_row_px, shift_col_px)`` scene px
  down and right of where its georeference puts it (``registered_transform`` undoes it).

Every pixel of the earlier image is the ground evaluated at the scene coordinates its
centre maps to (terrain at fractional coordinates, objects from their offsets), a pure
function of its own grid position and the seed: it is written window by window in bounded
memory, and the scene's own draws and pixels are untouched (its generator is seeded apart).
The truth goes to ``NAME_before.json`` (:class:`BeforeTruth`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.transform import Affine

from impacts.atomic import atomic_path
from impacts.errors import SceneError
from impacts.scenes import BEFORE_SUFFIX, SCENE_EXT
from tiling.config import CtxLook, SynthConfig
from tiling.crs import MARS_EQC, MARS_EQC_CODE
from tiling.io import geotiff_profile, open_geotiff_writer, write_window
from tiling.synth_objects import PlantedObject
from tiling.synth_realistic import PLACE_TRIES, DiscIndex
from tiling.synth_render import SceneSpec, draw_object, terrain_at
from tiling.synth_sensor import Sensor

#: Salt of the earlier image's random generator, so its draws never disturb the scene's.
BEFORE_SALT = 0xBEF0
#: Least gap in px between a faded old impact and any impact of the scene.
FADED_GAP_PX = 4.0


@dataclass(frozen=True)
class FadedImpact:
    """An old impact dark in the earlier image only: centre in scene px and map metres,
    radius in scene px, contrast (share of brightness removed at its centre)."""

    id: int
    row: float
    col: float
    radius_px: float
    contrast: float
    x: float
    y: float


@dataclass(frozen=True)
class BeforeTruth:
    """What ``NAME_before.json`` records about an earlier image.

    ``transform`` and ``scene_transform`` are the six GDAL-order coefficients
    ``(a, b, c, d, e, f)`` of :class:`rasterio.transform.Affine`; the shift is in scene px
    (rows down, columns right): the ground at scene pixel ``(r, c)`` shows in the earlier
    image, warped by its georeference onto the scene grid, at ``(r + shift_row_px, c +
    shift_col_px)``. ``absent_ids`` are the ids (``NAME_objects.csv``) of the scene's
    impacts, none of which the earlier image shows; every other object of the list is in it.
    """

    scene: str
    file_name: str
    crs: str
    height: int
    width: int
    res_m: float
    transform: tuple[float, ...]
    scene_res_m: float
    scene_transform: tuple[float, ...]
    shift_row_px: float
    shift_col_px: float
    sun_azimuth_deg: float
    scene_sun_azimuth_deg: float
    gain: float
    offset_grey: float
    noise_grey: float
    absent_ids: tuple[int, ...]
    faded: tuple[FadedImpact, ...]

    @property
    def affine(self) -> Affine:
        """The earlier image's geotransform, as written in its file."""
        return Affine(*self.transform)

    @property
    def registered_transform(self) -> Affine:
        """The geotransform that puts the earlier image's content where it belongs: its own,
        moved back by the planted shift."""
        dx = -self.shift_col_px * self.scene_res_m
        dy = self.shift_row_px * self.scene_res_m
        return Affine.translation(dx, dy) @ self.affine


def load_before_truth(path: Path) -> BeforeTruth:
    """Read ``NAME_before.json`` as written by ``impacts synth --before``.

    Args:
        path: The file.

    Returns:
        Its truth.

    Raises:
        SceneError: The file is missing, not JSON, or lacks a field.
    """
    try:
        data: dict[str, Any] = json.loads(Path(path).read_text())
        data["transform"] = tuple(data["transform"])
        data["scene_transform"] = tuple(data["scene_transform"])
        data["absent_ids"] = tuple(data["absent_ids"])
        data["faded"] = tuple(FadedImpact(**f) for f in data["faded"])
        return BeforeTruth(**data)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise SceneError(
            f"{path}: cannot read the earlier image's truth ({exc}); rewrite it with `impacts synth --before`"
        ) from exc


@dataclass(frozen=True)
class BeforeScene:
    """Everything that defines an earlier image's pixels: the ground it shows (a
    :class:`SceneSpec` in scene px: seed, objects, sun, sensor, a grown footprint) and its
    grid, ``height`` x ``width`` px of ``res_m`` with ``transform``, whose pixel ``(i, j)``
    shows the ground at scene coordinates ``row_origin + (i + 0.5) * scale - 0.5 - shift``
    (and likewise for columns)."""

    ground: SceneSpec
    height: int
    width: int
    res_m: float
    transform: Affine
    row_origin: float
    col_origin: float
    scale: float
    shift_row_px: float
    shift_col_px: float
    faded: tuple[PlantedObject, ...]

    def ground_rows(self, row0: int, height: int) -> np.ndarray:
        """Scene row coordinates (float64, ascending) of the earlier image's rows."""
        return self.row_origin + (row0 + np.arange(height) + 0.5) * self.scale - 0.5 - self.shift_row_px

    def ground_cols(self, col0: int, width: int) -> np.ndarray:
        """Scene column coordinates (float64, ascending) of the earlier image's columns."""
        return self.col_origin + (col0 + np.arange(width) + 0.5) * self.scale - 0.5 - self.shift_col_px


def _signed(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi)) * float(rng.choice([-1.0, 1.0]))


def _faded_impacts(
    spec: SceneSpec, share: float, rng: np.random.Generator, first_id: int
) -> list[PlantedObject]:
    """Old impacts for the earlier image: each scene impact with chance ``share`` lends its
    look (size, shape, contrast) to one placed elsewhere in the footprint, clear of every
    scene impact, with its own seed."""
    impacts = [o for o in spec.objects if o.kind == "impact"]
    count = int(rng.binomial(len(impacts), share)) if impacts else 0
    taken = DiscIndex()
    for obj in impacts:
        taken.add(obj.row, obj.col, obj.reach_px)
    faded: list[PlantedObject] = []
    for _ in range(count):
        template = impacts[int(rng.integers(len(impacts)))]
        reach = template.reach_px
        for _ in range(PLACE_TRIES):
            row, col = float(rng.uniform(0, spec.height)), float(rng.uniform(0, spec.width))
            inset = spec.footprint.inset_distance(np.array(row), np.array(col))
            if inset >= reach + 2 and taken.clear_of(row, col, reach, FADED_GAP_PX):
                seed = int(rng.integers(0, 2**31 - 1))
                faded.append(replace(template, id=first_id + len(faded), row=row, col=col, seed=seed))
                taken.add(row, col, reach)
                break
    return faded


def before_scene(spec: SceneSpec, scene_transform: Affine, cfg: SynthConfig, index: int) -> BeforeScene:
    """Draw the earlier image of scene ``index`` (a pure function of the seed and index).

    Args:
        spec: The scene.
        scene_transform: The scene's geotransform (north up, ``cfg.res_m`` px).
        cfg: Generator settings (``cfg.before``).
        index: The scene's index.

    Returns:
        The earlier image's definition.
    """
    b = cfg.before
    rng = np.random.default_rng([cfg.seed, index, BEFORE_SALT])
    res, res_b = cfg.res_m, float(rng.uniform(*b.res_m))
    jitter_x, jitter_y = (float(v) for v in rng.uniform(0, res_b, 2))
    margin_m = b.margin_px * res
    x0, y0 = scene_transform.c, scene_transform.f
    bx0, by0 = x0 - margin_m - jitter_x, y0 + margin_m + jitter_y
    width = math.ceil((spec.width * res + 2 * margin_m + jitter_x) / res_b)
    height = math.ceil((spec.height * res + 2 * margin_m + jitter_y) / res_b)
    shift_row, shift_col = _signed(rng, *b.shift_px), _signed(rng, *b.shift_px)
    sun_change = math.radians(_signed(rng, *b.sun_change_deg))
    look = (
        cfg.realistic.ctx.model_copy(update={"noise_grey": b.noise_grey})
        if spec.sensor is not None
        else CtxLook(
            gain_along_strip=0.0,
            offset_along_strip_grey=0.0,
            column_stripe_grey=0.0,
            column_band_grey=0.0,
            even_odd_grey=0.0,
            noise_grey=b.noise_grey,
        )
    )
    sensor = Sensor(
        look, float(rng.uniform(*b.gain)), float(rng.uniform(*b.offset_grey)), int(rng.integers(2**31 - 1))
    )
    faded = _faded_impacts(spec, b.faded_share, rng, len(spec.objects))
    objects = [
        replace(o, angle_rad=o.angle_rad + sun_change) if o.kind == "shadow" and o.look == "ctx" else o
        for o in spec.objects
        if o.kind != "impact"
    ]
    # The valid region covers the scene's footprint with half the margin to spare (which
    # exceeds the shift), and its bounding box stays inside the grid (tilts up to 8 deg).
    grow = b.margin_px / 2
    footprint = replace(
        spec.footprint, half_h=spec.footprint.half_h + grow, half_w=spec.footprint.half_w + grow
    )
    ground = SceneSpec(
        spec.height,
        spec.width,
        spec.seed,
        footprint,
        tuple(faded + objects),
        spec.sun_azimuth_rad + sun_change,
        sensor,
    )
    return BeforeScene(
        ground,
        height,
        width,
        res_b,
        Affine(res_b, 0.0, bx0, 0.0, -res_b, by0),
        (y0 - by0) / res,
        (bx0 - x0) / res,
        res_b / res,
        shift_row,
        shift_col,
        tuple(faded),
    )


def render_before_window(scene: BeforeScene, row0: int, col0: int, height: int, width: int) -> np.ndarray:
    """Render one window of the earlier image (uint8, 0 = no-data).

    Args:
        scene: The earlier image.
        row0: Top row of the window in the earlier image's px.
        col0: Left column of the window in the earlier image's px.
        height: Window height in px.
        width: Window width in px.

    Returns:
        The image, shape ``(height, width)``.
    """
    ground = scene.ground
    rows, cols = scene.ground_rows(row0, height), scene.ground_cols(col0, width)
    img = terrain_at(rows, cols, ground.seed)
    r0, c0 = math.floor(rows[0]), math.floor(cols[0])
    near = ground.objects_in(r0, c0, math.ceil(rows[-1]) + 1 - r0, math.ceil(cols[-1]) + 1 - c0)
    for obj in near:
        reach = obj.reach_px
        i0, i1 = np.searchsorted(rows, [obj.row - reach - 1, obj.row + reach + 2])
        j0, j1 = np.searchsorted(cols, [obj.col - reach - 1, obj.col + reach + 2])
        if i0 >= i1 or j0 >= j1:
            continue
        dr = (rows[i0:i1] - obj.row).astype(np.float32)[:, None]
        dc = (cols[j0:j1] - obj.col).astype(np.float32)[None, :]
        dr, dc = np.broadcast_arrays(dr, dc)
        draw_object(obj, dr, dc, img[i0:i1, j0:j1], ground.sun_azimuth_rad)
    if ground.sensor is not None:
        ground.sensor.apply(img, row0, col0)
    inside = ground.footprint.inset_distance(rows[:, None] + 0.5, cols[None, :] + 0.5) >= 0
    image = np.clip(np.rint(img), 1, 255).astype(np.uint8)
    image[~inside] = 0
    return image


def before_truth(name: str, spec: SceneSpec, scene_transform: Affine, scene: BeforeScene) -> BeforeTruth:
    """The truth of an earlier image (see :class:`BeforeTruth`)."""
    assert scene.ground.sensor is not None
    faded = []
    for obj in scene.faded:
        x, y = scene_transform @ (obj.col, obj.row)
        faded.append(FadedImpact(obj.id, obj.row, obj.col, obj.radius_px, obj.depth, x, y))
    return BeforeTruth(
        scene=name,
        file_name=f"{name}{BEFORE_SUFFIX}{SCENE_EXT}",
        crs=MARS_EQC_CODE,
        height=scene.height,
        width=scene.width,
        res_m=scene.res_m,
        transform=tuple(scene.transform)[:6],
        scene_res_m=abs(scene_transform.a),
        scene_transform=tuple(scene_transform)[:6],
        shift_row_px=scene.shift_row_px,
        shift_col_px=scene.shift_col_px,
        sun_azimuth_deg=math.degrees(scene.ground.sun_azimuth_rad) % 360,
        scene_sun_azimuth_deg=math.degrees(spec.sun_azimuth_rad) % 360,
        gain=scene.ground.sensor.gain,
        offset_grey=scene.ground.sensor.offset_grey,
        noise_grey=scene.ground.sensor.look.noise_grey,
        absent_ids=tuple(o.id for o in spec.objects if o.kind == "impact"),
        faded=tuple(faded),
    )


def write_before(
    out_dir: Path, name: str, spec: SceneSpec, scene_transform: Affine, cfg: SynthConfig, index: int
) -> BeforeTruth:
    """Render and write ``NAME_before.tif`` window by window, and ``NAME_before.json``.

    Args:
        out_dir: The scenes folder.
        name: The scene's name.
        spec: The scene.
        scene_transform: The scene's geotransform.
        cfg: Generator settings.
        index: The scene's index.

    Returns:
        The truth written to ``NAME_before.json``.
    """
    scene = before_scene(spec, scene_transform, cfg, index)
    truth = before_truth(name, spec, scene_transform, scene)
    profile = geotiff_profile(scene.height, scene.width, "uint8", MARS_EQC, scene.transform, nodata=0)
    step = cfg.window_px
    with open_geotiff_writer(out_dir / truth.file_name, profile) as ds:
        for row in range(0, scene.height, step):
            for col in range(0, scene.width, step):
                h, w = min(step, scene.height - row), min(step, scene.width - col)
                write_window(ds, render_before_window(scene, row, col, h, w), row, col)
    with atomic_path(out_dir / f"{name}{BEFORE_SUFFIX}.json") as tmp:
        tmp.write_text(json.dumps(asdict(truth), indent=2) + "\n")
    return truth
