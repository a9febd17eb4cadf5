"""The operating point chosen from hand-made whole-scene sweeps."""

from __future__ import annotations

from typing import Any

import pytest

from training.operating_point import choose_operating_point


def _row(
    threshold: float, merge: int, recall: float | None, fp: float | None, dup: int = 0
) -> dict[str, Any]:
    return {
        "threshold": threshold,
        "merge_distance_px": merge,
        "recall": recall,
        "false_candidates_per_100km2": fp,
        "duplicates": dup,
    }


SWEEP = [
    _row(0.3, 0, 0.95, 40.0, 5),
    _row(0.5, 0, 0.92, 20.0, 4),
    _row(0.5, 2, 0.92, 12.0, 1),
    _row(0.7, 0, 0.80, 5.0, 0),
    _row(0.7, 2, 0.85, 3.0, 0),
]


def test_fewest_false_candidates_among_settings_reaching_the_target() -> None:
    point = choose_operating_point(SWEEP, 0.9)
    assert (point.threshold, point.merge_distance_px) == (0.5, 2)
    assert point.reached_target and point.recall == 0.92 and point.false_candidates_per_100km2 == 12.0
    assert point.min_area_px is None and "reaching recall 0.9" in point.reason


def test_a_lower_target_allows_a_higher_threshold() -> None:
    point = choose_operating_point(SWEEP, 0.8)
    assert (point.threshold, point.merge_distance_px, point.reached_target) == (0.7, 2, True)


def test_ties_go_to_fewer_duplicates_then_the_higher_threshold() -> None:
    tied = [_row(0.4, 0, 0.9, 10.0, 3), _row(0.5, 4, 0.9, 10.0, 1), _row(0.6, 2, 0.9, 10.0, 1)]
    point = choose_operating_point(tied, 0.9)
    assert (point.threshold, point.merge_distance_px) == (0.6, 2)
    point = choose_operating_point(tied[:2], 0.9)
    assert (point.threshold, point.merge_distance_px) == (0.5, 4)


def test_the_highest_recall_setting_when_none_reaches_the_target() -> None:
    point = choose_operating_point(SWEEP, 0.99)
    assert not point.reached_target
    assert (point.threshold, point.recall) == (0.3, 0.95)
    assert "no val setting reaches recall 0.99" in point.reason


def test_unknown_recall_is_skipped_and_unknown_false_rate_counts_as_worst() -> None:
    sweep = [_row(0.2, 0, None, 1.0), _row(0.4, 0, 1.0, None), _row(0.6, 0, 1.0, 50.0)]
    point = choose_operating_point(sweep, 0.9)
    assert point.threshold == 0.6
    with pytest.raises(ValueError, match="no impact"):
        choose_operating_point([_row(0.5, 0, None, 1.0)], 0.9)
    with pytest.raises(ValueError, match="target_recall"):
        choose_operating_point(SWEEP, 0.0)


def test_a_swept_minimum_area_is_returned() -> None:
    point = choose_operating_point([{**_row(0.5, 0, 1.0, 1.0), "min_area_px": 9}], 0.9)
    assert point.min_area_px == 9 and point.as_dict()["min_area_px"] == 9
