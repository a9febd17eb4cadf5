"""Whole-scene matching and metrics on hand-made impacts and detections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import Affine

from tiling.components import Impact
from tiling.synth import KnownObject
from tiling.windows import Box
from training.scene_eval import (
    BACKGROUND,
    DUPLICATE,
    FALSE_CANDIDATE,
    HIT,
    MatchRule,
    SceneCounts,
    ScoredPoint,
    _nearest_covering,
    impact_of_component,
    match_points,
    match_scene,
    pixel_area_m2,
    size_class,
    size_class_labels,
    sweep_row,
)

EDGES = [5.0, 10.0, 20.0]


def _impact(row: float, col: float, radius: float) -> KnownObject:
    return KnownObject(kind="impact", row=row, col=col, radius_px=radius)


IMPACTS = [
    _impact(100, 100, 12),  # reach 18
    _impact(300, 300, 3),  # reach 8 (the floor)
    _impact(500, 100, 25),  # never detected
]
LOOKALIKES = [
    KnownObject(kind="crater", row=100, col=400, radius_px=20),  # reach 30
    KnownObject(kind="slope_streak", row=400, col=400, radius_px=10),  # a kind the generator may add
    KnownObject(kind="impact", row=700, col=700, radius_px=10),  # impacts never name a false candidate
]


def test_hits_duplicates_misses_and_false_candidates_by_kind() -> None:
    detections = [
        ScoredPoint(110, 105, 0.7),  # 11.2 px from impact 0: within 18, lower score -> duplicate
        ScoredPoint(102, 98, 0.9),  # impact 0's best detection -> hit
        ScoredPoint(306, 305, 0.6),  # 7.8 px from the small impact: within the 8 px floor -> hit
        ScoredPoint(320, 300, 0.95),  # 20 px from it: beyond 8 -> false, on nothing -> background
        ScoredPoint(120, 410, 0.8),  # on the crater (22 px < 30)
        ScoredPoint(405, 395, 0.5),  # on the slope streak
        ScoredPoint(700, 702, 0.5),  # on a listed "impact" that is not truth here: background
    ]
    match = match_scene(IMPACTS, detections, LOOKALIKES)
    assert match.outcome == [
        DUPLICATE,
        HIT,
        HIT,
        FALSE_CANDIDATE,
        FALSE_CANDIDATE,
        FALSE_CANDIDATE,
        FALSE_CANDIDATE,
    ]
    assert match.impact == [0, 0, 1, -1, -1, -1, -1]
    assert match.kind[3:] == [BACKGROUND, "crater", "slope_streak", BACKGROUND]
    assert match.found == [True, True, False]

    counts = SceneCounts.of(match, IMPACTS, valid_px=1_000_000, pixel_area_m2=36.0, size_edges_px=EDGES)
    m = counts.metrics()
    assert (m["impacts"], m["found"], m["detections"], m["hits"], m["duplicates"], m["false_candidates"]) == (
        3,
        2,
        7,
        2,
        1,
        4,
    )
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 7), "duplicates count against precision"
    assert m["valid_area_km2"] == pytest.approx(36.0)  # 1e6 px of 6 m x 6 m
    assert m["false_candidates_per_100km2"] == pytest.approx(4 / 36 * 100)
    assert m["false_candidates_by_kind"] == {"crater": 1, "slope_streak": 1, BACKGROUND: 2}
    assert list(m["false_candidates_by_kind"])[-1] == BACKGROUND
    assert m["recall_by_size"] == {
        "<5": {"impacts": 1, "found": 1, "recall": 1.0},
        "5-10": {"impacts": 0, "found": 0, "recall": None},
        "10-20": {"impacts": 1, "found": 1, "recall": 1.0},
        ">=20": {"impacts": 1, "found": 0, "recall": 0.0},
    }


def test_the_highest_score_is_the_hit_whatever_the_list_order() -> None:
    near, far = ScoredPoint(101, 101, 0.2), ScoredPoint(110, 100, 0.9)
    for detections in ([near, far], [far, near]):
        match = match_scene(IMPACTS[:1], detections)
        assert [match.outcome[detections.index(d)] for d in (far, near)] == [HIT, DUPLICATE]


def test_a_detection_between_two_impacts_hits_the_one_not_yet_found() -> None:
    pair = [_impact(100, 100, 10), _impact(100, 120, 10)]  # reaches 15 overlap between them
    first = ScoredPoint(100, 101, 0.9)  # hits impact 0
    between = ScoredPoint(100, 109, 0.8)  # nearer impact 0 (9 px) but also within impact 1's reach (11 px)
    match = match_scene(pair, [first, between])
    assert match.outcome == [HIT, HIT] and match.impact == [0, 1]
    again = ScoredPoint(100, 110, 0.1)  # both found now: a duplicate of the nearer (equal: the first)
    match = match_scene(pair, [first, between, again])
    assert match.outcome[2] == DUPLICATE


def test_the_matching_distance_follows_the_rule() -> None:
    impact = [_impact(0, 0, 10)]
    assert match_scene(impact, [ScoredPoint(15, 0, 1)]).outcome == [HIT]  # 1.5 radii
    assert match_scene(impact, [ScoredPoint(15.1, 0, 1)]).outcome == [FALSE_CANDIDATE]
    tight = MatchRule(radii=1.0, min_px=12.0)
    assert match_scene(impact, [ScoredPoint(12, 0, 1)], rule=tight).outcome == [HIT]
    assert match_scene(impact, [ScoredPoint(12.5, 0, 1)], rule=tight).outcome == [FALSE_CANDIDATE]


def test_a_false_candidate_takes_the_nearest_look_alike_that_covers_it() -> None:
    # Ten small boulders nearer than a large dune field, none reaching the candidate: the
    # dune field (reach 60 px) names it; near a boulder, the boulder does.
    boulders = [
        KnownObject("boulder", 100 + 12 * math.cos(a), 100 + 12 * math.sin(a), 1.0) for a in range(10)
    ]
    dune = KnownObject("dune", 100, 150, 40)
    match = match_scene([], [ScoredPoint(100, 100, 0.5), ScoredPoint(107, 104, 0.5)], [*boulders, dune])
    assert match.kind == ["dune", "boulder"]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_objects=st.integers(1, 60), n_points=st.integers(1, 300))
def test_look_alike_naming_is_the_nearest_covering_object(seed: int, n_objects: int, n_points: int) -> None:
    rng = np.random.default_rng(seed)
    kinds = ["crater", "boulder", "dune", "shadow"]
    objects = [
        KnownObject(kinds[k % 4], *rng.uniform(0, 400, 2), float(np.exp(rng.uniform(-1, 4.5))))
        for k in range(n_objects)
    ]
    points = rng.uniform(0, 400, size=(n_points, 2))
    rule = MatchRule()
    found = _nearest_covering(objects, points, rule)
    centres = np.array([(o.row, o.col) for o in objects])
    reach = rule.reach(np.array([o.radius_px for o in objects]))
    dist = np.hypot(points[:, None, 0] - centres[None, :, 0], points[:, None, 1] - centres[None, :, 1])
    covering = np.where(dist <= reach[None, :], dist, np.inf)
    expected = np.where(np.isfinite(covering.min(axis=1)), covering.min(axis=1), -1.0)
    got = np.where(found >= 0, dist[np.arange(n_points), found], -1.0)
    np.testing.assert_allclose(got, expected)


def test_nothing_to_find_or_nothing_found_gives_undefined_ratios() -> None:
    empty = SceneCounts.of(match_scene([], []), [], valid_px=0, pixel_area_m2=36.0, size_edges_px=EDGES)
    m = empty.metrics()
    assert (m["recall"], m["precision"], m["false_candidates_per_100km2"]) == (None, None, None)
    missed = match_scene(IMPACTS, [])
    assert SceneCounts.of(missed, IMPACTS, 100, 36.0, EDGES).metrics()["recall"] == 0.0


def test_counts_add_up_over_scenes_with_their_own_pixel_sizes() -> None:
    a = SceneCounts.of(
        match_scene(IMPACTS[:1], [ScoredPoint(100, 100, 1), ScoredPoint(900, 900, 1)]),
        IMPACTS[:1],
        valid_px=1_000_000,
        pixel_area_m2=36.0,  # 36 km²
        size_edges_px=EDGES,
    )
    b = SceneCounts.of(
        match_scene(IMPACTS[1:2], [ScoredPoint(0, 0, 1)], [*LOOKALIKES[:1], KnownObject("dune", 0, 0, 40)]),
        IMPACTS[1:2],
        valid_px=1_000_000,
        pixel_area_m2=25.0,  # 5 m pixels: 25 km²
        size_edges_px=EDGES,
    )
    total = (a + b).metrics()
    assert total["valid_area_km2"] == pytest.approx(61.0)
    assert total["false_candidates"] == 2
    assert total["false_candidates_per_100km2"] == pytest.approx(2 / 61 * 100)
    assert total["false_candidates_by_kind"] == {"dune": 1, BACKGROUND: 1}
    assert (total["impacts"], total["found"]) == (2, 1)
    assert total["recall_by_size"]["<5"] == {"impacts": 1, "found": 0, "recall": 0.0}
    assert sweep_row(0.5, a + b)["precision"] == pytest.approx(1 / 3)


def test_size_classes() -> None:
    assert size_class_labels(EDGES) == ["<5", "5-10", "10-20", ">=20"]
    assert [size_class(r, EDGES) for r in (0.5, 4.99, 5, 9.9, 10, 19.9, 20, 300)] == [
        "<5",
        "<5",
        "5-10",
        "5-10",
        "10-20",
        "10-20",
        ">=20",
        ">=20",
    ]
    assert size_class(7, []) == "all"


def test_a_mask_component_is_an_impact_of_half_its_longer_side() -> None:
    component = Impact(0, Box(row_min=10, row_max=29, col_min=5, col_max=14), 150, 19.5, 9.5)
    assert impact_of_component(component) == KnownObject("impact", 19.5, 9.5, 10.0)


def test_pixel_area_from_the_transform() -> None:
    assert pixel_area_m2(Affine(6.0, 0, 1000.0, 0, -6.0, 2000.0)) == 36.0
    assert pixel_area_m2(Affine(5.0, 1.0, 0, 1.0, -5.0, 0)) == pytest.approx(26.0)  # rotated grid


def test_a_false_candidate_next_to_no_data_is_named_nodata_border_unless_a_lookalike_explains_it() -> None:
    impacts = [KnownObject("impact", 10.0, 10.0, 3.0)]
    dune = [KnownObject("dune", 100.0, 100.0, 5.0)]
    rows, cols = np.array([10.0, 100.0, 200.0, 300.0]), np.array([10.0, 100.0, 200.0, 300.0])
    near = np.array([True, True, True, False])
    match = match_points(impacts, rows, cols, np.ones(4), dune, MatchRule(), near_nodata=near)
    # A hit stays an impact, a dune stays a dune, the border names only the unexplained one.
    assert match.kind == ["impact", "dune", "nodata_border", "background"]
    assert match_points(impacts, rows, cols, np.ones(4), dune, MatchRule()).kind[2] == "background"


def test_near_nodata_finds_boxes_reaching_a_no_data_cell() -> None:
    from training.scene_pass import ScenePass

    cells = np.zeros((10, 10), dtype=bool)
    cells[:, 0] = True  # a no-data strip down the left, one 4 px cell wide
    scene = ScenePass(40, 40, 0, {}, None, np.zeros((10, 10)), 4, None, None, nodata_cells=cells)
    row_min, row_max = np.array([5, 5, 5]), np.array([8, 8, 8])
    col_min, col_max = np.array([4, 6, 20]), np.array([6, 9, 24])
    boxes = (row_min, row_max, col_min, col_max)
    assert scene.near_nodata(*boxes, border_px=0).tolist() == [False, False, False]
    assert scene.near_nodata(*boxes, border_px=2).tolist() == [True, False, False]
    assert scene.near_nodata(*boxes, border_px=3).tolist() == [True, True, False]
