"""Whole-scene matching and metrics: quality where an analyst feels it (pure: no
TensorFlow, no file access).

Truth is a list of impacts, each a centre and a radius in scene pixels
(:class:`tiling.synth.KnownObject` of kind ``"impact"``: one row of ``NAME_objects.csv``,
a cluster being one impact with its halo radius, or one connected component of a mask,
:func:`impact_of_component`). Detections are their centroids and scores.

Matching, detections taken by descending score (ties in list order)::

    reach(impact) = max(radii * radius_px, min_px)        # defaults 1.5 and 8 px

- a detection whose centroid lies within the reach of an impact not yet found is a **hit**
  of the nearest such impact: the first (highest-score) detection of an impact is its hit;
- a detection within the reach of impacts that are all found already is a **duplicate**
  (of the nearest): it lies on an impact, but the analyst has seen that impact;
- any other detection is a **false candidate**, named after the look-alike it lies on: the
  nearest other object of the list (any kind but ``impact``: crater, shadow, dune,
  slope_streak, ...; kinds are open strings) whose reach, by the same rule, covers its
  centroid, else ``"background"``.

Why 1.5 radii and 8 px: an impact's ``radius_px`` is its blast-zone (or halo) radius, and a
detection of it has its centroid inside the dark zone, whose outline wobbles by about 16 %
and whose rays pull a centroid outwards; half a radius more covers that, while impacts are
planted apart by more than their 1.35-2.6-radius reach, so neighbours' discs rarely
overlap. Small impacts (radius 2-5 px) get at least 8 px (48 m at 6 m/px): a blurred
prediction and the sub-pixel centroid of a few pixels can sit that far off. The same rule
already names the patch metrics' false positives (:mod:`training.metrics`), so a look-alike
is the same look-alike at both levels. Both numbers are ``EvalConfig.match_radii`` and
``match_min_px``.

Metrics (:class:`SceneCounts`, summed over scenes for the overall figures)::

    recall                      = found impacts / impacts
    precision                   = hits / detections       # duplicates count against it
    false_candidates_per_100km2 = false candidates / valid km² * 100
    valid km²                   = valid (not no-data) pixels * pixel area m² / 1e6

with recall by size class (``radius_px`` bounds, e.g. ``<5, 5-10, 10-20, >=20``) and false
candidates by kind. A ratio with nothing to divide by is None (``null`` in JSON).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from tiling.components import Impact
from tiling.synth import KnownObject

IMPACT = "impact"
BACKGROUND = "background"
#: A false candidate on no look-alike but next to the no-data border.
NODATA_BORDER = "nodata_border"
HIT = "hit"
DUPLICATE = "duplicate"
FALSE_CANDIDATE = "false_candidate"


@dataclass(frozen=True)
class MatchRule:
    """How far from an object's centre a detection's centroid may lie to be on it:
    ``max(radii * radius_px, min_px)``."""

    radii: float = 1.5
    min_px: float = 8.0

    def reach(self, radius_px: np.ndarray) -> np.ndarray:
        """The matching distance in px of objects of these radii."""
        return np.maximum(self.radii * np.asarray(radius_px, dtype=np.float64), self.min_px)


@dataclass(frozen=True)
class ScoredPoint:
    """A detection as matching sees it: its centroid in scene pixels and its score."""

    row: float
    col: float
    score: float


@dataclass(frozen=True)
class SceneMatch:
    """The outcome of matching one scene's detections (in the order given) to its impacts.

    ``outcome[k]`` is :data:`HIT`, :data:`DUPLICATE` or :data:`FALSE_CANDIDATE`;
    ``impact[k]`` the index of the impact a hit or duplicate lies on (-1 for a false
    candidate); ``kind[k]`` ``"impact"`` for hits and duplicates, else the look-alike kind or
    ``"background"``. ``found[i]`` tells whether impact ``i`` was hit.
    """

    outcome: list[str]
    impact: list[int]
    kind: list[str]
    found: list[bool]


def impact_of_component(component: Impact) -> KnownObject:
    """A mask component as a true impact: centred on its centroid, with half its box's
    longer side as radius (a disc's radius; a rayed blast zone's reach)."""
    radius = 0.5 * max(component.box.height, component.box.width)
    return KnownObject(kind=IMPACT, row=component.centroid_row, col=component.centroid_col, radius_px=radius)


def _centres_and_reach(objects: Sequence[KnownObject], rule: MatchRule) -> tuple[np.ndarray, np.ndarray]:
    centres = np.array([(o.row, o.col) for o in objects], dtype=np.float64).reshape(-1, 2)
    return centres, rule.reach(np.array([o.radius_px for o in objects], dtype=np.float64))


def _within_reach(
    objects: Sequence[KnownObject], points: np.ndarray, rule: MatchRule
) -> dict[int, list[tuple[float, int]]]:
    """For each point some object's reach covers, ``(distance, object index)`` of those
    objects, nearest first (ties by index); points covered by none are left out."""
    if not objects or not len(points):
        return {}
    centres, reach = _centres_and_reach(objects, rule)
    tree = cKDTree(centres)
    radius = float(reach.max())
    # Most detections of a poor model lie near nothing: look only at those near something.
    near_any = np.flatnonzero(tree.query_ball_point(points, r=radius, return_length=True))
    out: dict[int, list[tuple[float, int]]] = {}
    for k, candidates in zip(
        near_any.tolist(), tree.query_ball_point(points[near_any], r=radius), strict=True
    ):
        idx = np.asarray(candidates, dtype=np.int64)
        dist = np.hypot(centres[idx, 0] - points[k, 0], centres[idx, 1] - points[k, 1])
        keep = dist <= reach[idx]
        if keep.any():
            out[k] = sorted(zip(dist[keep].tolist(), idx[keep].tolist(), strict=True))
    return out


def _nearest_covering(objects: Sequence[KnownObject], points: np.ndarray, rule: MatchRule) -> np.ndarray:
    """For each point, the index of the nearest object whose reach covers it, or -1.

    Vectorised for hundreds of thousands of points among thousands of objects: objects are
    bucketed by reach (powers of two), and in each bucket every point's ``k`` nearest
    objects within the bucket's largest reach are looked at; only points whose ``k``
    nearest are all that near yet none covers them are asked again with ``4 k``.
    """
    best = np.full(len(points), -1, dtype=np.int64)
    if not objects or not len(points):
        return best
    centres, reach = _centres_and_reach(objects, rule)
    best_dist = np.full(len(points), np.inf)
    bucket_of = np.floor(np.log2(np.maximum(reach, 1.0))).astype(np.int64)
    for bucket in np.unique(bucket_of):
        members = np.flatnonzero(bucket_of == bucket)
        tree, limit = cKDTree(centres[members]), float(reach[members].max())
        padded_reach = np.append(reach[members], -1.0)  # a missing neighbour has index len(members)
        todo, k = np.arange(len(points)), min(8, len(members))
        while len(todo):
            dist, idx = tree.query(points[todo], k=k, distance_upper_bound=limit)
            dist, idx = dist.reshape(len(todo), k), idx.reshape(len(todo), k)
            covered = dist <= padded_reach[idx]
            first = covered.argmax(axis=1)
            nearest = dist[np.arange(len(todo)), first]
            better = covered.any(axis=1) & (nearest < best_dist[todo])
            best_dist[todo[better]] = nearest[better]
            best[todo[better]] = members[idx[np.arange(len(todo)), first][better]]
            if k == len(members):
                break
            todo = todo[~covered.any(axis=1) & np.isfinite(dist[:, -1])]
            k = min(4 * k, len(members))
    return best


def match_scene(
    impacts: Sequence[KnownObject],
    detections: Sequence[ScoredPoint],
    lookalikes: Sequence[KnownObject] = (),
    rule: MatchRule | None = None,
    near_nodata: np.ndarray | None = None,
) -> SceneMatch:
    """Match one scene's detections to its impacts (see the module for the rule).

    Args:
        impacts: The true impacts (their ``kind`` is not looked at).
        detections: The detections, in any order (matched by descending score).
        lookalikes: Other known objects (any kind but ``"impact"``, which is ignored here)
            that name false candidates.
        rule: Matching distance; default 1.5 radii, at least 8 px.
        near_nodata: Per detection, whether it lies next to no-data (a false candidate no
            look-alike explains is then :data:`NODATA_BORDER`).

    Returns:
        Per detection its outcome, impact and kind; per impact whether it was found.
    """
    return match_points(
        impacts,
        np.array([d.row for d in detections], dtype=np.float64),
        np.array([d.col for d in detections], dtype=np.float64),
        np.array([d.score for d in detections], dtype=np.float64),
        lookalikes,
        rule,
        near_nodata,
    )


def match_points(
    impacts: Sequence[KnownObject],
    rows: np.ndarray,
    cols: np.ndarray,
    scores: np.ndarray,
    lookalikes: Sequence[KnownObject] = (),
    rule: MatchRule | None = None,
    near_nodata: np.ndarray | None = None,
) -> SceneMatch:
    """:func:`match_scene` on detections given as arrays of centroid rows and columns and
    scores (no Python object per detection: a poor model leaves hundreds of thousands).
    ``near_nodata[k]`` names a false candidate that no look-alike explains
    :data:`NODATA_BORDER` (see :meth:`training.scene_pass.ScenePass.near_nodata`)."""
    rule = rule or MatchRule()
    points = np.column_stack([rows, cols]).astype(np.float64).reshape(-1, 2)
    near = _within_reach(impacts, points, rule)
    outcome = [FALSE_CANDIDATE] * len(points)
    impact = [-1] * len(points)
    kind = [BACKGROUND] * len(points)
    found = [False] * len(impacts)
    ranked = sorted(near, key=lambda k: (-scores[k], k))  # highest score first, ties in list order
    for k in ranked:
        free = [i for _, i in near[k] if not found[i]]
        if free:
            outcome[k], impact[k] = HIT, free[0]
            found[free[0]] = True
        else:
            outcome[k], impact[k] = DUPLICATE, near[k][0][1]
        kind[k] = IMPACT
    others = [o for o in lookalikes if o.kind != IMPACT]
    false = np.array([k for k, o in enumerate(outcome) if o == FALSE_CANDIDATE], dtype=np.int64)
    for k, j in zip(false.tolist(), _nearest_covering(others, points[false], rule).tolist(), strict=True):
        if j >= 0:
            kind[k] = others[j].kind
        elif near_nodata is not None and near_nodata[k]:
            kind[k] = NODATA_BORDER
    return SceneMatch(outcome, impact, kind, found)


def size_class_labels(edges_px: Sequence[float]) -> list[str]:
    """Names of the radius classes cut at ``edges_px``: ``<5``, ``5-10``, ..., ``>=20``."""
    if not edges_px:
        return ["all"]
    inner = [f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges_px)]
    return [f"<{edges_px[0]:g}", *inner, f">={edges_px[-1]:g}"]


def size_class(radius_px: float, edges_px: Sequence[float]) -> str:
    """The class of a radius: class ``k`` holds ``edges[k-1] <= radius < edges[k]``."""
    return size_class_labels(edges_px)[int(np.searchsorted(np.asarray(edges_px), radius_px, side="right"))]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass
class SceneCounts:
    """Counts of one scene or of several summed (``a + b``); :meth:`metrics` derives the
    ratios. ``hits`` equals ``found``: an impact has one hit at most."""

    impacts: int = 0
    found: int = 0
    detections: int = 0
    duplicates: int = 0
    false_candidates: int = 0
    valid_km2: float = 0.0
    impacts_by_size: dict[str, int] = field(default_factory=dict)
    found_by_size: dict[str, int] = field(default_factory=dict)
    false_by_kind: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        match: SceneMatch,
        impacts: Sequence[KnownObject],
        valid_px: int,
        pixel_area_m2: float,
        size_edges_px: Sequence[float],
    ) -> SceneCounts:
        """The counts of one matched scene.

        Args:
            match: What :func:`match_scene` returned for ``impacts``.
            impacts: The scene's true impacts.
            valid_px: Its pixels that are not no-data.
            pixel_area_m2: The ground area of one pixel.
            size_edges_px: Radius bounds of the size classes (ascending).

        Raises:
            ValueError: ``match`` is not of these impacts, or the area is negative.
        """
        if len(match.found) != len(impacts):
            raise ValueError(f"the match has {len(match.found)} impacts, the scene {len(impacts)}")
        if valid_px < 0 or not pixel_area_m2 > 0:
            raise ValueError(f"valid_px {valid_px} and pixel_area_m2 {pixel_area_m2} must be >= 0 and > 0")
        labels = size_class_labels(size_edges_px)
        by_size = dict.fromkeys(labels, 0)
        found_by_size = dict.fromkeys(labels, 0)
        for obj, hit in zip(impacts, match.found, strict=True):
            label = size_class(obj.radius_px, size_edges_px)
            by_size[label] += 1
            found_by_size[label] += int(hit)
        false_by_kind: dict[str, int] = {}
        for outcome, kind in zip(match.outcome, match.kind, strict=True):
            if outcome == FALSE_CANDIDATE:
                false_by_kind[kind] = false_by_kind.get(kind, 0) + 1
        return cls(
            impacts=len(impacts),
            found=sum(match.found),
            detections=len(match.outcome),
            duplicates=match.outcome.count(DUPLICATE),
            false_candidates=match.outcome.count(FALSE_CANDIDATE),
            valid_km2=valid_px * pixel_area_m2 / 1e6,
            impacts_by_size=by_size,
            found_by_size=found_by_size,
            false_by_kind=false_by_kind,
        )

    def __add__(self, other: SceneCounts) -> SceneCounts:
        def add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in [*a, *(k for k in b if k not in a)]}

        return SceneCounts(
            impacts=self.impacts + other.impacts,
            found=self.found + other.found,
            detections=self.detections + other.detections,
            duplicates=self.duplicates + other.duplicates,
            false_candidates=self.false_candidates + other.false_candidates,
            valid_km2=self.valid_km2 + other.valid_km2,
            impacts_by_size=add(self.impacts_by_size, other.impacts_by_size),
            found_by_size=add(self.found_by_size, other.found_by_size),
            false_by_kind=add(self.false_by_kind, other.false_by_kind),
        )

    @property
    def hits(self) -> int:
        return self.found

    @property
    def false_per_100km2(self) -> float | None:
        """False candidates per 100 km² of valid area (None without valid area)."""
        return _ratio(100.0 * self.false_candidates, self.valid_km2)

    def metrics(self) -> dict[str, Any]:
        """The whole-scene metrics (see the module): counts, ``recall``, ``precision``,
        ``false_candidates_per_100km2``, ``recall_by_size`` (``impacts``, ``found``,
        ``recall`` per class) and ``false_candidates_by_kind`` (most frequent first,
        ``background`` last)."""
        kinds = sorted(
            self.false_by_kind.items(), key=lambda item: (item[0] == BACKGROUND, -item[1], item[0])
        )
        return {
            "impacts": self.impacts,
            "found": self.found,
            "recall": _ratio(self.found, self.impacts),
            "detections": self.detections,
            "hits": self.hits,
            "duplicates": self.duplicates,
            "false_candidates": self.false_candidates,
            "precision": _ratio(self.hits, self.detections),
            "valid_area_km2": self.valid_km2,
            "false_candidates_per_100km2": self.false_per_100km2,
            "recall_by_size": {
                label: {
                    "impacts": n,
                    "found": self.found_by_size.get(label, 0),
                    "recall": _ratio(self.found_by_size.get(label, 0), n),
                }
                for label, n in self.impacts_by_size.items()
            },
            "false_candidates_by_kind": dict(kinds),
        }


def sweep_row(threshold: float, counts: SceneCounts) -> dict[str, Any]:
    """One threshold of a sweep: the threshold, recall, precision, false candidates per
    100 km² and the counts behind them."""
    return {
        "threshold": threshold,
        "recall": _ratio(counts.found, counts.impacts),
        "precision": _ratio(counts.hits, counts.detections),
        "false_candidates_per_100km2": counts.false_per_100km2,
        "detections": counts.detections,
        "hits": counts.hits,
        "duplicates": counts.duplicates,
        "false_candidates": counts.false_candidates,
    }


def pixel_area_m2(transform: Sequence[float]) -> float:
    """The ground area of one pixel from a grid's affine transform ``(a, b, c, d, e, f)``:
    ``|a * e - b * d|`` (square metres for a projected CRS in metres)."""
    a, b, _, d, e, _ = (float(v) for v in tuple(transform)[:6])
    return math.fabs(a * e - b * d)
