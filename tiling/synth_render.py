"""Rendering a window of a synthetic scene: terrain, planted objects, sensor, no-data border.

Objects of the ``classic`` look (easy/medium/hard) are drawn here, exactly as they always
were; those of the ``ctx`` look (realistic) by :mod:`tiling.synth_shapes`, and realistic
scenes then pass through :class:`tiling.synth_sensor.Sensor`. Every pixel is a pure function of its scene coordinates, the scene seed and the object list,
so a scene can be written window by window in bounded memory and any window renders the
same bytes whichever order the windows come in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tiling import synth_shapes as shapes
from tiling.hashing import hash_unit
from tiling.synth_objects import Footprint, PlantedObject
from tiling.synth_sensor import Sensor
from tiling.synth_shapes import angle_diff as _angle_diff
from tiling.synth_shapes import ellipse_coords as _ellipse_coords
from tiling.synth_shapes import smoothstep as _smoothstep

# (lattice spacing in px, amplitude in grey levels) of the value-noise octaves.
TERRAIN_OCTAVES: tuple[tuple[int, float], ...] = ((512, 30.0), (128, 14.0), (32, 7.0), (8, 4.0))
WHITE_NOISE_AMPLITUDE = 3.0
TERRAIN_MEAN = 130.0


@dataclass(frozen=True)
class SceneSpec:
    """Everything that defines a scene's pixels."""

    height: int
    width: int
    seed: int
    footprint: Footprint
    objects: tuple[PlantedObject, ...]
    sun_azimuth_rad: float
    sensor: Sensor | None = None

    @cached_property
    def object_bounds(self) -> np.ndarray:
        """``(n, 4)`` rows, columns covered by each object's reach: row_lo, row_hi, col_lo,
        col_hi (the same integer bounds :func:`render_window` computes one by one)."""
        if not self.objects:
            return np.zeros((0, 4))
        rc = np.array([(o.row, o.col, o.reach_px) for o in self.objects], dtype=np.float64)
        row, col, reach = rc.T
        return np.stack(
            [
                np.trunc(row - reach),
                np.trunc(row + reach) + 2,
                np.trunc(col - reach),
                np.trunc(col + reach) + 2,
            ],
            axis=1,
        )

    def objects_in(self, row0: int, col0: int, height: int, width: int) -> list[PlantedObject]:
        """The objects whose reach overlaps the window, in list order (so they are drawn
        in the same order whatever the window)."""
        b = self.object_bounds
        hit = (b[:, 0] < row0 + height) & (b[:, 1] > row0) & (b[:, 2] < col0 + width) & (b[:, 3] > col0)
        return [self.objects[i] for i in np.flatnonzero(hit)]


def value_noise(row0: int, col0: int, height: int, width: int, spacing: int, salt: int) -> np.ndarray:
    """Smooth value noise in [-1, 1) on the window, interpolated separably between lattice
    points ``spacing`` px apart (smoothstep weights)."""
    return value_noise_at(row0 + np.arange(height), col0 + np.arange(width), spacing, salt)


def value_noise_at(rows: np.ndarray, cols: np.ndarray, spacing: int, salt: int) -> np.ndarray:
    """:func:`value_noise` at any ascending row and column coordinates (1-D, in scene px,
    integers or not): ``(len(rows), len(cols))`` values; integer coordinates give the same
    values as :func:`value_noise`, so another grid can sample the same ground."""
    fy = rows / spacing
    fx = cols / spacing
    iy, ix = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
    ty, tx = (fy - iy).astype(np.float32), (fx - ix).astype(np.float32)
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)
    ly = np.arange(iy[0], iy[-1] + 2)
    lx = np.arange(ix[0], ix[-1] + 2)
    lattice = hash_unit(ly[:, None], lx[None, :], salt) * 2 - 1
    jx = ix - ix[0]
    along_x = lattice[:, jx] * (1 - tx) + lattice[:, jx + 1] * tx
    jy = iy - iy[0]
    return along_x[jy] * (1 - ty)[:, None] + along_x[jy + 1] * ty[:, None]


def terrain(
    row0: int, col0: int, height: int, width: int, seed: int, white_noise: float = WHITE_NOISE_AMPLITUDE
) -> np.ndarray:
    """Grey-level terrain (float32) with albedo variations at several scales and uniform
    white noise of amplitude ``white_noise`` (none when 0: the sensor adds its own)."""
    rows = row0 + np.arange(height)
    cols = col0 + np.arange(width)
    out = terrain_at(rows, cols, seed)
    if white_noise:
        out += white_noise * (2 * hash_unit(rows[:, None], cols[None, :], seed * 31 + 17) - 1)
    return out


def terrain_at(rows: np.ndarray, cols: np.ndarray, seed: int) -> np.ndarray:
    """The albedo of :func:`terrain`, without white noise, at ascending row and column
    coordinates in scene px (1-D, integers or not; see :func:`value_noise_at`)."""
    out = np.full((len(rows), len(cols)), TERRAIN_MEAN, dtype=np.float32)
    for octave, (spacing, amplitude) in enumerate(TERRAIN_OCTAVES):
        out += amplitude * value_noise_at(rows, cols, spacing, seed * 31 + octave)
    return out


def _impact(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray) -> np.ndarray:
    """Darken a fresh blast zone (irregular, sometimes rayed) with a tiny central crater;
    return its mask (darkening at least half the peak)."""
    rng = np.random.default_rng(obj.seed)
    rho = np.hypot(dr, dc)
    phi = np.arctan2(dr, dc)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    r_eff = obj.radius_px * (1 + 0.16 * np.sin(3 * phi + p1) + 0.08 * np.sin(5 * phi + p2))
    dark = obj.depth * (1 - _smoothstep(0.55, 1.0, rho / r_eff))
    for ray_angle in rng.uniform(0, 2 * np.pi, obj.detail):
        length = obj.radius_px * rng.uniform(1.6, 2.5)
        width = rng.uniform(0.07, 0.14)
        # Width in px never below 1.5, so a ray's mask stays one 8-connected piece.
        perp_px = _angle_diff(phi, ray_angle) * rho
        ray = np.exp(-((perp_px / np.maximum(1.5, width * rho)) ** 2))
        ray *= 1 - _smoothstep(0.55 * length, length, rho)
        dark = np.maximum(dark, 0.85 * obj.depth * ray)
    img *= 1 - dark
    crater_r = max(1.5, 0.14 * obj.radius_px)
    img += np.where(rho < crater_r, -35.0, 0.0) + 30.0 * np.exp(-(((rho - 1.4 * crater_r) / 0.8) ** 2))
    return dark >= 0.5 * obj.depth


def _crater(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray, sun: float) -> None:
    """Shade an old bowl crater lit from ``sun``: the wall on the sun side is in shadow, the
    far wall bright, the raised rim the other way round; sometimes central ripples."""
    rho = np.hypot(dr, dc) / obj.radius_px
    facing = np.cos(np.arctan2(dr, dc) - sun)
    wall = np.where(rho < 1, rho**1.5, 0.0)
    rim = np.where((rho >= 1) & (rho < 1.45), 1 - (rho - 1) / 0.45, 0.0)
    img += obj.depth * (-facing * wall + 0.55 * facing * rim)
    img *= np.where(rho < 1, 0.93, 1.0)
    if obj.detail:
        img += 0.25 * obj.depth * np.cos(2 * np.pi * rho * obj.detail) * np.clip(1 - rho, 0, 1)


def _shadow(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray) -> None:
    _, dist = _ellipse_coords(obj, dr, dc)
    img *= 1 - obj.depth * (1 - _smoothstep(0.7, 1.0, dist))


def _dune(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray) -> None:
    u, dist = _ellipse_coords(obj, dr, dc)
    wavelength = 2 * obj.radius_px / obj.detail
    stripes = (0.5 + 0.5 * np.sin(2 * np.pi * u / wavelength)) ** 3
    img *= 1 - obj.depth * stripes * (1 - _smoothstep(0.6, 1.0, dist))


def _draw_ctx(
    obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray, sun: float
) -> np.ndarray | None:
    """Draw an object of the ``ctx`` look; return the impact mask for impacts, else None.
    Old craters and dune fields reuse the classic shapes (craters with a dark floor added)."""
    if obj.kind == "impact":
        return shapes.impact(obj, dr, dc, img)
    if obj.kind == "crater":
        _crater(obj, dr, dc, img, sun)
        shapes.crater_floor(obj, dr, dc, img)
    elif obj.kind == "shadow":
        _shadow(obj, dr, dc, img)
    elif obj.kind == "dune":
        if obj.detail:
            _dune(obj, dr, dc, img)
        else:
            shapes.barchan(obj, dr, dc, img)
    elif obj.kind == "boulder":
        shapes.boulder(obj, dr, dc, img, sun)
    elif obj.kind == "slope_streak":
        shapes.slope_streak(obj, dr, dc, img)
    elif obj.kind == "dust_devil_track":
        shapes.dust_devil_track(obj, dr, dc, img)
    return None


def draw_object(
    obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray, sun: float
) -> np.ndarray | None:
    """Draw one object of either look into ``img`` (in place) with the sun in direction
    ``sun``; ``dr``/``dc`` give each pixel's offset in px from the object's centre.

    Returns:
        The impact mask for impacts, else None.
    """
    if obj.look == "ctx":
        return _draw_ctx(obj, dr, dc, img, sun)
    if obj.kind == "impact":
        return _impact(obj, dr, dc, img)
    if obj.kind == "crater":
        _crater(obj, dr, dc, img, sun)
    elif obj.kind == "shadow":
        _shadow(obj, dr, dc, img)
    else:
        _dune(obj, dr, dc, img)
    return None


def render_window(
    spec: SceneSpec, row0: int, col0: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Render the image (uint8, 0 = no-data) and impact mask (uint8 0/1) of one window.

    Args:
        spec: The scene.
        row0: Top row of the window in scene pixels.
        col0: Left column of the window in scene pixels.
        height: Window height in px.
        width: Window width in px.

    Returns:
        ``(image, mask)`` arrays of shape ``(height, width)``.
    """
    img = terrain(row0, col0, height, width, spec.seed, 0.0 if spec.sensor else WHITE_NOISE_AMPLITUDE)
    mask = np.zeros((height, width), dtype=bool)
    for obj in spec.objects_in(row0, col0, height, width):
        reach = obj.reach_px
        r_lo, r_hi = max(row0, int(obj.row - reach)), min(row0 + height, int(obj.row + reach) + 2)
        c_lo, c_hi = max(col0, int(obj.col - reach)), min(col0 + width, int(obj.col + reach) + 2)
        if r_lo >= r_hi or c_lo >= c_hi:
            continue
        sub = img[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0]
        dr = (np.arange(r_lo, r_hi, dtype=np.float32) - obj.row)[:, None]
        dc = (np.arange(c_lo, c_hi, dtype=np.float32) - obj.col)[None, :]
        dr, dc = np.broadcast_arrays(dr, dc)
        hit = draw_object(obj, dr, dc, sub, spec.sun_azimuth_rad)
        if hit is not None:
            mask[r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] |= hit
    if spec.sensor is not None:
        spec.sensor.apply(img, row0, col0)
    rows = (row0 + np.arange(height, dtype=np.float64))[:, None]
    cols = (col0 + np.arange(width, dtype=np.float64))[None, :]
    inside = spec.footprint.inset_distance(rows + 0.5, cols + 0.5) >= 0
    image = np.clip(np.rint(img), 1, 255).astype(np.uint8)
    image[~inside] = 0
    mask &= inside
    return image, mask.astype(np.uint8)
