"""The objects of a synthetic scene and the planting of the easy/medium/hard presets.

Pure logic: given a scene size, a difficulty and a random generator, decide the image
footprint (a rotated rectangle, as map-projected strips have) and where every object lies.
The ``realistic`` preset plants with :mod:`tiling.synth_realistic`; rendering objects into
pixels is :mod:`tiling.synth_render`'s job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

ObjectKind = Literal["impact", "crater", "shadow", "dune", "slope_streak", "dust_devil_track", "boulder"]
#: Every kind an object list may name, impacts first.
OBJECT_KINDS: tuple[ObjectKind, ...] = (
    "impact",
    "crater",
    "shadow",
    "dune",
    "slope_streak",
    "dust_devil_track",
    "boulder",
)
#: The kinds that are not impacts but look like them (false alarms are named after them).
LOOKALIKE_KINDS: tuple[ObjectKind, ...] = OBJECT_KINDS[1:]
Difficulty = Literal["easy", "medium", "hard"]
#: How an object is drawn: ``classic`` by the easy/medium/hard renderers (unchanged since
#: the first data set), ``ctx`` by :mod:`tiling.synth_shapes` (the realistic preset).
Look = Literal["classic", "ctx"]


@dataclass(frozen=True)
class DifficultyPreset:
    """How hard a scene is: look-alike densities (per megapixel) and impact contrast."""

    craters_per_mpx: float
    shadows_per_mpx: float
    dunes_per_mpx: float
    impact_depth: tuple[float, float]
    crater_contrast: tuple[float, float]


PRESETS: dict[str, DifficultyPreset] = {
    "easy": DifficultyPreset(1.5, 0.8, 0.2, (0.55, 0.75), (25.0, 40.0)),
    "medium": DifficultyPreset(3.0, 1.5, 0.4, (0.42, 0.62), (35.0, 55.0)),
    "hard": DifficultyPreset(5.0, 2.5, 0.7, (0.30, 0.48), (45.0, 70.0)),
}


@dataclass(frozen=True)
class Footprint:
    """Valid-data region: a rectangle of half sizes ``half_w``/``half_h`` (px) centred on
    ``(center_row, center_col)`` and rotated by ``angle_rad``; outside is no-data."""

    center_row: float
    center_col: float
    half_h: float
    half_w: float
    angle_rad: float

    def inset_distance(self, row: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Distance in px from each point to the footprint edge (negative outside)."""
        dr, dc = row - self.center_row, col - self.center_col
        cos, sin = math.cos(self.angle_rad), math.sin(self.angle_rad)
        u = dc * cos + dr * sin
        v = -dc * sin + dr * cos
        return np.minimum(self.half_w - np.abs(u), self.half_h - np.abs(v))


@dataclass(frozen=True)
class PlantedObject:
    """One planted object. ``radius_px`` is the blast-zone radius for impacts (for a cluster:
    the semi-major axis of the halo that covers all its craters), the rim radius for craters,
    half the length of slope streaks and dust-devil tracks and the semi-major axis of the
    other kinds. ``angle_rad``, ``aspect`` (minor/major), ``depth`` (contrast) and ``detail``
    (rays, ripples, stripes, lobes) parametrise its look; ``seed`` its irregularity;
    ``look`` which renderer draws it; ``cluster_size`` the craters of an impact (1: single).
    """

    id: int
    kind: ObjectKind
    row: float
    col: float
    radius_px: float
    angle_rad: float
    aspect: float
    depth: float
    detail: int
    seed: int
    look: Look = "classic"
    cluster_size: int = 1

    @property
    def reach_px(self) -> float:
        """Radius of the disc outside which the object leaves the image untouched."""
        if self.look == "ctx":
            return ctx_reach_px(self.kind, self.radius_px, self.aspect, self.detail)
        if self.kind == "impact":
            return self.radius_px * (2.6 if self.detail > 0 else 1.35)
        if self.kind == "crater":
            return self.radius_px * 1.45
        return self.radius_px * 1.1


def ctx_reach_px(kind: str, radius_px: float, aspect: float, detail: int) -> float:
    """Reach of an object of the ``ctx`` look (see :mod:`tiling.synth_shapes` for the shapes).

    Impacts: the halo ends at 1.21 radii (its wobble), rays at 2.5; boulders cast a shadow
    up to 3 radii; a slope streak's lobes sit side by side, 2.2 widths apart (width =
    ``aspect`` x length); a dust-devil track is drawn outwards from its centre, so no point
    of it lies farther than half its length (plus its width).
    """
    if kind == "impact":
        return radius_px * (2.6 if detail > 0 else 1.25) + 1.0
    if kind == "crater":
        return radius_px * 1.45 + 1.0
    if kind == "boulder":
        return radius_px * 3.2 + 1.5
    if kind == "slope_streak":
        width = aspect * 2 * radius_px
        return radius_px * 1.1 + width * (1 + 2.2 * max(0, detail - 1)) + 2.0
    if kind == "dust_devil_track":
        return radius_px + aspect + 3.0
    return radius_px * 1.1 + 1.0


def make_footprint(height: int, width: int, rng: np.random.Generator) -> Footprint:
    """A rotated rectangle that fits the scene, tilted 2-8 degrees (less for narrow strips).

    The half sizes solve ``hw cos + hh sin = a`` and ``hw sin + hh cos = b`` with ``a, b``
    just under half the width and height, so all four corners stay inside the scene.
    """
    max_deg = min(
        8.0, 0.5 * math.degrees(math.atan(width / height)), 0.5 * math.degrees(math.atan(height / width))
    )
    angle = math.radians(rng.uniform(min(2.0, max_deg), max_deg)) * rng.choice([-1.0, 1.0])
    cos, sin = math.cos(abs(angle)), math.sin(abs(angle))
    a, b = 0.985 * width / 2, 0.985 * height / 2
    det = cos * cos - sin * sin
    half_w = (a * cos - b * sin) / det
    half_h = (b * cos - a * sin) / det
    return Footprint(height / 2, width / 2, half_h, half_w, angle)


def impact_count(valid_px: float, target_fraction: float, max_count: int, min_count: int = 2) -> int:
    """Number of impacts that covers about ``target_fraction`` of the valid pixels.

    The mean mask area of an impact with log-uniform radius in [5, 36] px and a mask out to
    0.8 of the radius is about ``pi * 0.64 * 322`` px; the count is clipped to
    ``[min_count, max_count]`` so huge scenes keep a few dozen impacts, as real ones do.
    """
    mean_area = math.pi * 0.64 * 322.0
    return int(np.clip(round(target_fraction * valid_px / mean_area), min_count, max_count))


def plant_objects(
    height: int,
    width: int,
    footprint: Footprint,
    difficulty: Difficulty,
    rng: np.random.Generator,
    impact_fraction: float = 0.005,
    max_impacts: int = 60,
    impact_total: int | None = None,
) -> list[PlantedObject]:
    """Place impacts, craters, shadows and dune fields inside the footprint.

    Impacts never overlap each other or a crater (so the mask and the object list agree);
    look-alikes may overlap each other.

    Args:
        height: Scene height in px.
        width: Scene width in px.
        footprint: The valid-data region.
        difficulty: Density/contrast preset name.
        rng: Random generator (all randomness of the scene comes from it).
        impact_fraction: Target share of valid pixels covered by impact masks.
        max_impacts: Upper bound on the impact count.
        impact_total: Impacts to plant (e.g. from a density); None derives the count from
            ``impact_fraction`` and ``max_impacts``. Impacts that find no free place are
            left out.

    Returns:
        The objects, impacts first.
    """
    preset = PRESETS[difficulty]
    valid_px = 4 * footprint.half_h * footprint.half_w
    mpx = valid_px / 1e6
    placed: list[PlantedObject] = []
    discs = np.zeros((0, 3))  # row, col, reach of impacts and craters, for overlap tests

    def place(kind: ObjectKind, radius: float, margin: float, exclusive: bool) -> tuple[float, float] | None:
        nonlocal discs
        for _ in range(200):
            row, col = rng.uniform(0, height), rng.uniform(0, width)
            if footprint.inset_distance(np.array(row), np.array(col)) < margin:
                continue
            if exclusive and len(discs):
                gap = np.hypot(discs[:, 0] - row, discs[:, 1] - col) - discs[:, 2] - margin
                if np.any(gap < 4):
                    continue
            return row, col
        return None

    def add(kind: ObjectKind, radius: float, angle: float, aspect: float, depth: float, detail: int) -> None:
        nonlocal discs
        obj_probe = PlantedObject(0, kind, 0, 0, radius, angle, aspect, depth, detail, 0)
        exclusive = kind in ("impact", "crater")
        where = place(kind, radius, obj_probe.reach_px + 2, exclusive)
        if where is None:
            return
        obj = PlantedObject(
            len(placed),
            kind,
            where[0],
            where[1],
            radius,
            angle,
            aspect,
            depth,
            detail,
            int(rng.integers(0, 2**31 - 1)),
        )
        placed.append(obj)
        if exclusive:
            discs = np.vstack([discs, [obj.row, obj.col, obj.reach_px]])

    if impact_total is None:
        impact_total = impact_count(valid_px, impact_fraction, max_impacts)
    for _ in range(impact_total):
        radius = float(np.exp(rng.uniform(math.log(5.0), math.log(36.0))))
        rays = int(rng.integers(4, 9)) if rng.random() < 0.35 else 0
        add("impact", radius, rng.uniform(0, 2 * math.pi), 1.0, rng.uniform(*preset.impact_depth), rays)
    for _ in range(rng.poisson(preset.craters_per_mpx * mpx)):
        radius = float(np.exp(rng.uniform(math.log(8.0), math.log(45.0))))
        ripples = int(rng.integers(2, 5)) if rng.random() < 0.3 else 0
        add("crater", radius, 0.0, 1.0, rng.uniform(*preset.crater_contrast), ripples)
    for _ in range(rng.poisson(preset.shadows_per_mpx * mpx)):
        add(
            "shadow",
            rng.uniform(12, 60),
            rng.uniform(0, math.pi),
            rng.uniform(0.12, 0.35),
            rng.uniform(0.3, 0.55),
            0,
        )
    for _ in range(rng.poisson(preset.dunes_per_mpx * mpx)):
        add(
            "dune",
            rng.uniform(30, 80),
            rng.uniform(0, math.pi),
            rng.uniform(0.4, 0.8),
            rng.uniform(0.25, 0.45),
            int(rng.integers(6, 12)),
        )
    return placed
