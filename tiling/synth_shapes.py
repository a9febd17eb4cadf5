"""Shapes of the ``ctx`` look (the realistic preset): impacts and clusters, look-alikes.

Each function darkens (or shades) ``img``, the float32 grey levels of the part of a window
around one object, in place. ``dr``/``dc`` give every pixel's offset in px from the
object's centre (rows down, columns right); angles follow ``arctan2(dr, dc)``, and the sun
lies in direction ``sun`` from any point. Everything random comes from ``obj.seed``, so a
pixel's value depends only on its scene position, never on the window it is rendered in.

Sizes are in px at CTX's 6 m/px; see :class:`tiling.config.RealisticConfig` for the ranges
the preset draws and why.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from tiling.synth_objects import PlantedObject

#: Step in px between the points of a dust-devil track's centre line.
TRACK_STEP_PX = 12.0
#: Where a halo's darkening falls to half its peak, in units of its (wobbling) radius: the
#: mask ends there, inside ``radius_px`` whatever the wobble (0.725 * 1.21 < 1).
HALO_MASK_AT = 0.725


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 below ``edge0``, 1 above ``edge1``, a smooth cubic ramp between."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def angle_diff(a: np.ndarray, b: float) -> np.ndarray:
    """Absolute difference of angles in radians, in [0, pi]."""
    return np.abs((a - b + np.pi) % (2 * np.pi) - np.pi)


def ellipse_coords(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coordinate ``u`` along the object's major axis and the elliptical radius (1 on the
    ellipse of semi-axes ``radius_px`` and ``aspect * radius_px``)."""
    cos, sin = math.cos(obj.angle_rad), math.sin(obj.angle_rad)
    u = dc * cos + dr * sin
    v = -dc * sin + dr * cos
    return u, np.hypot(u / obj.radius_px, v / (obj.aspect * obj.radius_px))


def _rotated(angle: float, dr: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = math.cos(angle), math.sin(angle)
    return dc * cos + dr * sin, -dc * sin + dr * cos


def cluster_craters(obj: PlantedObject) -> np.ndarray:
    """Offsets ``(u, v)`` in px, in the halo's frame, of the craters of an impact.

    A single impact has its crater at the centre; a cluster's craters scatter along the
    halo's major axis (the break-up trail) within half its elliptical radius, so every
    crater's own dark spot stays inside the shared halo and the mask stays one piece.
    """
    if obj.cluster_size <= 1:
        return np.zeros((1, 2))
    rng = np.random.default_rng([obj.seed, 1])
    uv = rng.normal(0.0, 0.28, (obj.cluster_size, 2)) * [obj.radius_px, obj.aspect * obj.radius_px]
    scale = np.hypot(uv[:, 0] / obj.radius_px, uv[:, 1] / (obj.aspect * obj.radius_px))
    return uv * np.minimum(1.0, 0.5 / np.maximum(scale, 1e-9))[:, None]


def impact(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray) -> np.ndarray:
    """A fresh impact: a diffuse, wobbly, elliptical dark halo (``depth`` = share of the
    brightness removed at its centre), a dark spot per crater and, when ``detail > 0``,
    that many faint rays.

    Returns:
        The mask: where the halo (or a crater's own halo) darkens at least half its peak.
        Rays are drawn but not masked; the mask lies within ``radius_px`` of the centre.
    """
    rng = np.random.default_rng(obj.seed)
    u, v = _rotated(obj.angle_rad, dr, dc)
    ell = np.hypot(u, v / obj.aspect) / obj.radius_px
    phi = np.arctan2(v / obj.aspect, u)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    wobble = 1 + 0.14 * np.sin(3 * phi + p1) + 0.07 * np.sin(5 * phi + p2)
    dark = obj.depth * (1 - smoothstep(0.45, 1.0, ell / wobble))
    craters = cluster_craters(obj)
    crater_px = max(0.6, 0.12 * obj.radius_px / math.sqrt(len(craters)))
    spots = np.zeros_like(dark)
    for cu, cv in craters:
        dist = np.hypot(u - cu, v - cv)
        if len(craters) > 1:  # each crater of a cluster darkens its own patch of the halo
            dark = np.maximum(dark, obj.depth * (1 - smoothstep(0.3, 1.0, dist / (0.25 * obj.radius_px + 1))))
        spots = np.maximum(spots, np.exp(-((dist / crater_px) ** 2)))
    mask = dark >= 0.5 * obj.depth
    rays = np.zeros_like(dark)
    if obj.detail:
        rho = np.hypot(dr, dc)
        theta = np.arctan2(dr, dc)
        for ray_angle in rng.uniform(0, 2 * np.pi, obj.detail):
            length = obj.radius_px * rng.uniform(1.6, 2.5)
            perp_px = angle_diff(theta, ray_angle) * rho
            ray = np.exp(-((perp_px / np.maximum(1.0, rng.uniform(0.06, 0.12) * rho)) ** 2))
            rays = np.maximum(rays, ray * (1 - smoothstep(0.5 * length, length, rho)))
        dark = np.maximum(dark, 0.5 * obj.depth * rays)
    img *= 1 - dark
    img *= 1 - min(0.85, 1.5 * obj.depth) * spots
    return mask


def crater_floor(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray) -> None:
    """Darken the floor of some old craters (dust or dark sand in the bowl): the classic
    bowl shading is drawn first; about a third of the craters get a floor darkened by 15-35 %."""
    rng = np.random.default_rng([obj.seed, 2])
    if rng.random() >= 0.35:
        return
    rho = np.hypot(dr, dc) / obj.radius_px
    img *= 1 - rng.uniform(0.15, 0.35) * (1 - smoothstep(0.45, 0.9, rho))


def boulder(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray, sun: float) -> None:
    """A dark boulder or knob: a dark body with a lit limb on the sun side and a shadow cast
    away from the sun, about three radii long."""
    rho = np.hypot(dr, dc) / obj.radius_px
    facing = np.cos(np.arctan2(dr, dc) - sun)
    body = obj.depth * (1 - smoothstep(0.6, 1.15, rho)) * (1 - 0.7 * np.clip(facing, 0, 1) * rho)
    shadow_u, shadow_v = _rotated(sun + math.pi, dr, dc)
    shadow_ell = np.hypot((shadow_u - 1.5 * obj.radius_px) / (1.6 * obj.radius_px), shadow_v / obj.radius_px)
    shadow = min(0.7, 0.3 + obj.depth) * (1 - smoothstep(0.55, 1.0, shadow_ell))
    img *= 1 - np.maximum(body, shadow)


def barchan(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray) -> None:
    """A dark barchan dune: a disc with a bite taken out on its downwind side (``angle_rad``),
    leaving a crescent whose horns point downwind."""
    rho = np.hypot(dr, dc) / obj.radius_px
    u, v = _rotated(obj.angle_rad, dr, dc)
    bite = np.hypot(u - 0.55 * obj.radius_px, v) / (0.8 * obj.radius_px)
    body = (1 - smoothstep(0.75, 1.0, rho)) * smoothstep(0.85, 1.05, bite)
    img *= 1 - obj.depth * body


def slope_streak(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray) -> None:
    """Slope streaks: ``detail`` dark tongues side by side, each narrow at its apex (upslope)
    and widening downslope (direction ``angle_rad``) to a digitate end, fading downslope.

    The main tongue runs from ``-radius_px`` to ``+radius_px`` along the slope; its width at
    the end is ``aspect`` times its length; the others are shorter and 2.2 widths apart.
    """
    rng = np.random.default_rng(obj.seed)
    length = 2 * obj.radius_px
    width = obj.aspect * length
    u, v = _rotated(obj.angle_rad, dr, dc)
    along = u + obj.radius_px  # 0 at the apex
    dark = np.zeros_like(u)
    for lobe in range(max(1, obj.detail)):
        side = 0.0 if lobe == 0 else 2.2 * width * math.ceil(lobe / 2) * (-1) ** lobe
        lobe_len = length * (1.0 if lobe == 0 else rng.uniform(0.55, 0.95))
        phase = rng.uniform(0, 2 * np.pi)
        across = v - side
        end = lobe_len * (1 - 0.08 * (1 + np.sin(6 * across / width + phase)))
        s = np.clip(along / lobe_len, 0, None)
        half_width = 0.5 * width * np.sqrt(s) + 0.5
        tongue = (1 - smoothstep(0.7, 1.0, np.abs(across) / half_width)) * (
            1 - smoothstep(0.85, 1.0, along / end)
        )
        dark = np.maximum(dark, np.where(along >= 0, tongue * (1 - 0.35 * s), 0.0))
    img *= 1 - obj.depth * dark


def track_points(obj: PlantedObject) -> np.ndarray:
    """Centre line of a dust-devil track: points ``(dr, dc)`` in px from its centre.

    The line is walked outwards from the centre in both directions, ``radius_px`` each way,
    turning by a slowly varying curvature, so no point lies farther than ``radius_px``.
    """
    rng = np.random.default_rng(obj.seed)
    steps = max(1, math.ceil(obj.radius_px / TRACK_STEP_PX))
    bend = rng.uniform(-1 / 800, 1 / 800)
    wiggle = rng.uniform(0, 1 / 300)
    wavelength = rng.uniform(150, 600)
    phase = rng.uniform(0, 2 * np.pi)
    s = np.arange(1, steps + 1) * TRACK_STEP_PX
    halves = []
    for sign in (1.0, -1.0):
        turn = TRACK_STEP_PX * (bend + wiggle * np.sin(2 * np.pi * sign * s / wavelength + phase))
        heading = obj.angle_rad + (0.0 if sign > 0 else math.pi) + sign * np.cumsum(turn)
        step = np.minimum(TRACK_STEP_PX, obj.radius_px - (s - TRACK_STEP_PX))
        halves.append(np.cumsum(np.stack([np.sin(heading), np.cos(heading)], axis=1) * step[:, None], axis=0))
    return np.concatenate([halves[1][::-1], np.zeros((1, 2)), halves[0]])


def dust_devil_track(obj: PlantedObject, dr: np.ndarray, dc: np.ndarray, img: np.ndarray) -> None:
    """A dust-devil track: a faint dark curving line ``aspect * 2 * radius_px`` px wide that
    fades out over the last quarter of its length at either end.

    Only the pixels near each segment of the centre line are computed, so a long track costs
    about its length times its width, not the area of its bounding box.
    """
    rows, cols = dr[:, 0], dc[0, :]  # ascending offsets of the window's rows and columns
    half = 0.5 * obj.aspect * 2 * obj.radius_px
    pad = half + 1.5
    points = track_points(obj)
    # Path length from the centre (index len // 2) to each point.
    seg_len = np.hypot(*np.diff(points, axis=0).T)
    from_start = np.concatenate([[0.0], np.cumsum(seg_len)])
    arc = from_start - from_start[len(points) // 2]
    dark = np.zeros(img.shape, dtype=np.float32)
    touched = [img.shape[0], 0, img.shape[1], 0]
    for k, ((r0, c0), (r1, c1)) in enumerate(itertools.pairwise(points)):
        i0, i1 = np.searchsorted(rows, [min(r0, r1) - pad, max(r0, r1) + pad])
        j0, j1 = np.searchsorted(cols, [min(c0, c1) - pad, max(c0, c1) + pad])
        if i0 >= i1 or j0 >= j1:
            continue
        pr, pc = rows[i0:i1, None] - r0, cols[None, j0:j1] - c0
        seg_r, seg_c = r1 - r0, c1 - c0
        t = np.clip((pr * seg_r + pc * seg_c) / max(seg_r * seg_r + seg_c * seg_c, 1e-9), 0, 1)
        dist = np.hypot(pr - t * seg_r, pc - t * seg_c)
        fade = 1 - smoothstep(0.75, 1.0, np.abs(arc[k] + t * (arc[k + 1] - arc[k])) / obj.radius_px)
        line = (1 - smoothstep(half, half + 1.0, dist)) * fade
        np.maximum(dark[i0:i1, j0:j1], line, out=dark[i0:i1, j0:j1])
        touched = [min(touched[0], i0), max(touched[1], i1), min(touched[2], j0), max(touched[3], j1)]
    if touched[0] < touched[1]:
        area = (slice(touched[0], touched[1]), slice(touched[2], touched[3]))
        img[area] *= 1 - obj.depth * dark[area]
