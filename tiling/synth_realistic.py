"""Planting the objects of the ``realistic`` preset.

What CTX at about 6 m/px shows of new impacts (``reference/new_impacts.md``): the craters are
small, often below the resolution; what shows is the dark blast zone around them, a few to
a few tens of pixels across, often faint, sometimes with rays; more than half are clusters
of craters from an impactor that broke up in the atmosphere, sharing one dark halo. The
classic look-alikes are old craters, dark dunes, shadows, slope streaks, dust-devil tracks
and dark boulders and knobs. Every number drawn here comes from
:class:`tiling.config.RealisticConfig` (the config says which are choices).

Pure logic, like :mod:`tiling.synth_objects`: it decides where objects lie and how they
look; :mod:`tiling.synth_shapes` draws them.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import replace

import numpy as np

from tiling.config import RealisticConfig
from tiling.synth_objects import Footprint, ObjectKind, PlantedObject

log = logging.getLogger(__name__)

#: Placement attempts per object before it is left out (only in crowded scenes).
PLACE_TRIES = 200
#: Least gap in px between the reach discs of objects that must not overlap, so impact
#: masks stay apart (one 8-connected component per impact).
GAP_PX = 2.0
#: Look-alikes that keep off impacts; slope streaks and dust-devil tracks cross anything.
KEEP_OFF_IMPACTS = frozenset({"crater", "boulder", "shadow", "dune"})


def power_law(rng: np.random.Generator, lo: float, hi: float, power: float, size: int) -> np.ndarray:
    """Draw from a power law truncated to ``[lo, hi]``: ``P(X > x) ~ x**-power``.

    Inverse transform: ``x = lo * (1 - u * (1 - (lo / hi)**power))**(-1 / power)`` for ``u``
    uniform in [0, 1).
    """
    u = rng.random(size)
    return lo * (1 - u * (1 - (lo / hi) ** power)) ** (-1 / power)


def log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int | None = None) -> np.ndarray:
    """Log-uniform values in ``[lo, hi]``: each factor of two equally likely."""
    return np.asarray(np.exp(rng.uniform(math.log(lo), math.log(hi), size)))


class DiscIndex:
    """The discs placed so far, bucketed on a grid for fast overlap tests in crowded scenes."""

    def __init__(self, cell_px: float = 64.0) -> None:
        self.cell_px = cell_px
        self.cells: defaultdict[tuple[int, int], list[tuple[float, float, float]]] = defaultdict(list)
        self.max_reach = 0.0

    def add(self, row: float, col: float, reach: float) -> None:
        """Record a disc of radius ``reach`` centred on ``(row, col)``."""
        self.cells[(int(row // self.cell_px), int(col // self.cell_px))].append((row, col, reach))
        self.max_reach = max(self.max_reach, reach)

    def clear_of(self, row: float, col: float, reach: float, gap: float) -> bool:
        """Whether a disc at ``(row, col)`` of radius ``reach`` stays ``gap`` px off every disc."""
        span = reach + self.max_reach + gap
        r0, r1 = int((row - span) // self.cell_px), int((row + span) // self.cell_px)
        c0, c1 = int((col - span) // self.cell_px), int((col + span) // self.cell_px)
        for cell_r in range(r0, r1 + 1):
            for cell_c in range(c0, c1 + 1):
                for r, c, other in self.cells.get((cell_r, cell_c), ()):
                    if math.hypot(r - row, c - col) < reach + other + gap:
                        return False
        return True


def object_counts(cfg: RealisticConfig, valid_mpx: float, impact_density: float | None) -> dict[str, int]:
    """How many objects of each kind a scene of ``valid_mpx`` megapixels of valid data gets.

    Args:
        cfg: The preset.
        valid_mpx: Valid (footprint) area in megapixels.
        impact_density: Impacts per megapixel; None takes ``cfg.impacts.per_mpx``.

    Returns:
        Kind to count: the density times the area, rounded (at least one impact).
    """
    density = cfg.impacts.per_mpx if impact_density is None else impact_density
    counts = {"impact": max(1, round(density * valid_mpx))}
    for kind, per_mpx in cfg.lookalikes_per_mpx.model_dump().items():
        counts[kind] = round(per_mpx * valid_mpx)
    return counts


def plant_realistic(
    height: int,
    width: int,
    footprint: Footprint,
    cfg: RealisticConfig,
    rng: np.random.Generator,
    sun_azimuth_rad: float,
    impact_density: float | None = None,
) -> list[PlantedObject]:
    """Place the impacts and look-alikes of a realistic scene inside the footprint.

    Impacts keep ``GAP_PX`` off each other, so the mask has one component per impact and
    the object list one row per impact (a cluster is one row: its halo's centre and
    semi-major axis, which covers all its craters). Old craters, boulders, shadows and dunes
    keep off impacts too; slope streaks and dust-devil tracks may cross them.

    Args:
        height: Scene height in px.
        width: Scene width in px.
        footprint: The valid-data region.
        cfg: The realistic preset.
        rng: Random generator (all randomness of the scene comes from it).
        sun_azimuth_rad: Direction of the sun (shadows are cast away from it).
        impact_density: Impacts per megapixel of valid area; None takes ``cfg.impacts.per_mpx``.

    Returns:
        The objects, impacts first, then each look-alike kind in the config's order.
    """
    counts = object_counts(cfg, 4 * footprint.half_h * footprint.half_w / 1e6, impact_density)
    placed: list[PlantedObject] = []
    impacts = DiscIndex()

    def add(probe: PlantedObject) -> None:
        """Place ``probe``'s object at a free spot (or leave it out after PLACE_TRIES)."""
        reach = probe.reach_px
        keep_off = probe.kind == "impact" or probe.kind in KEEP_OFF_IMPACTS
        for _ in range(PLACE_TRIES):
            row, col = float(rng.uniform(0, height)), float(rng.uniform(0, width))
            if footprint.inset_distance(np.array(row), np.array(col)) < reach + 2:
                continue
            if keep_off and not impacts.clear_of(row, col, reach, GAP_PX):
                continue
            seed = int(rng.integers(0, 2**31 - 1))
            placed.append(replace(probe, id=len(placed), row=row, col=col, seed=seed))
            if probe.kind == "impact":
                impacts.add(row, col, reach)
            return
        log.debug("no free place for a %s of reach %.1f px; left out", probe.kind, reach)

    imp = cfg.impacts
    for radius in power_law(rng, *imp.radius_px, imp.radius_power, counts["impact"]):
        craters = 1
        if rng.random() < imp.cluster_share:
            craters = int(np.clip(round(float(log_uniform(rng, *imp.cluster_craters))), *imp.cluster_craters))
        # Clusters spread along the impactor's path; the halo's minor semi-axis keeps at
        # least about a pixel of mask even for the smallest halos.
        aspect = rng.uniform(0.45, 0.9) if craters > 1 else rng.uniform(0.75, 1.0)
        aspect = max(aspect, min(1.0, 1.4 / radius))
        depth = float(log_uniform(rng, *imp.contrast))
        rays = int(rng.integers(4, 9)) if rng.random() < imp.ray_share else 0
        angle = rng.uniform(0, 2 * math.pi)
        add(_probe("impact", radius, angle, aspect, depth, rays, craters))

    for _ in range(counts["crater"]):
        radius = power_law(rng, 3.0, 80.0, 1.3, 1)[0]
        ripples = int(rng.integers(2, 5)) if rng.random() < 0.2 else 0
        add(_probe("crater", radius, 0.0, 1.0, rng.uniform(15.0, 60.0), ripples))
    for _ in range(counts["boulder"]):
        radius = power_law(rng, 1.0, 8.0, 2.0, 1)[0]
        add(_probe("boulder", radius, 0.0, 1.0, rng.uniform(0.2, 0.55)))
    for _ in range(counts["shadow"]):
        radius = power_law(rng, 3.0, 40.0, 1.5, 1)[0]
        angle = sun_azimuth_rad + rng.uniform(-0.3, 0.3)  # cast away from the sun
        add(_probe("shadow", radius, angle, rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.75)))
    for _ in range(counts["dune"]):
        if rng.random() < 0.5:  # a single dark barchan, horns downwind
            radius = float(log_uniform(rng, 4.0, 20.0))
            add(_probe("dune", radius, rng.uniform(0, 2 * math.pi), 1.0, rng.uniform(0.25, 0.5)))
        else:  # a small field of dark dunes (``detail`` crests)
            radius, angle = rng.uniform(25.0, 120.0), rng.uniform(0, math.pi)
            aspect, depth = rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.5)
            add(_probe("dune", radius, angle, aspect, depth, int(rng.integers(6, 14))))
    for _ in range(counts["slope_streak"]):
        radius, angle = float(log_uniform(rng, 15.0, 150.0)), rng.uniform(0, 2 * math.pi)
        aspect, depth = rng.uniform(0.08, 0.3), rng.uniform(0.1, 0.35)
        add(_probe("slope_streak", radius, angle, aspect, depth, int(rng.choice([1, 1, 2, 3]))))
    for _ in range(counts["dust_devil_track"]):
        half_length, angle = float(log_uniform(rng, 75.0, 750.0)), rng.uniform(0, 2 * math.pi)
        width_px, depth = rng.uniform(1.2, 4.0), rng.uniform(0.06, 0.25)
        add(_probe("dust_devil_track", half_length, angle, width_px / (2 * half_length), depth))
    return placed


def _probe(
    kind: ObjectKind,
    radius_px: float,
    angle_rad: float,
    aspect: float,
    depth: float,
    detail: int = 0,
    cluster_size: int = 1,
) -> PlantedObject:
    """An object of the ``ctx`` look not yet placed (id, position and seed still 0)."""
    return PlantedObject(
        0,
        kind,
        0.0,
        0.0,
        float(radius_px),
        float(angle_rad),
        float(aspect),
        float(depth),
        detail,
        0,
        "ctx",
        cluster_size,
    )
