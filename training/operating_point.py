"""Choosing the operating point on whole val scenes (pure: no TensorFlow, no file access).

A sweep is one row per setting tried (a threshold and a fragment merging distance, and
optionally a minimum area), each with the whole-scene figures of the val scenes at that
setting (:func:`training.scene_eval.sweep_row` plus ``merge_distance_px``). The rule::

    reaching = rows with recall >= target_recall
    chosen   = min(reaching, key=(false candidates per 100 km², duplicates, -threshold))
    if none reaches the target:
        chosen = max(rows, key=recall), ties as above     (reached_target = False)

Fewest false candidates is what an analyst feels once recall is good enough; fewer
duplicates breaks ties (each is an impact shown twice), then the higher threshold (the
more confident setting). Rows whose recall is unknown (no impact in the scenes) cannot be
judged and are left out; an unknown false-candidate rate (no valid area) counts as worst.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class OperatingPoint:
    """The chosen setting and why.

    ``min_area_px`` is None when the sweep did not vary it (keep the config's).
    ``reached_target`` says whether ``recall`` reaches ``target_recall``; when it does not,
    the setting is the highest-recall one and ``reason`` says so.
    """

    threshold: float
    merge_distance_px: int
    min_area_px: int | None
    recall: float
    false_candidates_per_100km2: float | None
    duplicates: int
    target_recall: float
    reached_target: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The point as JSON-ready values (for reports and bundle metrics)."""
        return asdict(self)


def _false_rate(row: Mapping[str, Any]) -> float:
    value = row.get("false_candidates_per_100km2")
    return math.inf if value is None else float(value)


def _tie_key(row: Mapping[str, Any]) -> tuple[float, int, float]:
    return (_false_rate(row), int(row.get("duplicates") or 0), -float(row["threshold"]))


def choose_operating_point(sweep: Sequence[Mapping[str, Any]], target_recall: float) -> OperatingPoint:
    """Choose the setting with the fewest false candidates per 100 km² among those that
    reach ``target_recall`` (see the module for the ties), else the highest-recall one.

    Args:
        sweep: One row per setting: ``threshold``, ``merge_distance_px`` (0 if missing),
            ``recall``, ``false_candidates_per_100km2``, ``duplicates`` and optionally
            ``min_area_px``.
        target_recall: The recall the operating point must reach, in (0, 1].

    Returns:
        The chosen point.

    Raises:
        ValueError: ``target_recall`` is outside (0, 1], or no row has a recall (the val
            scenes hold no impact: give them impacts, or set the operating point by hand).
    """
    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must lie in (0, 1], got {target_recall}")
    rows = [r for r in sweep if r.get("recall") is not None]
    if not rows:
        raise ValueError(
            "no sweep row has a recall (the val scenes hold no impact); the operating point "
            "cannot be chosen: give the val scenes impacts, or set evaluation.threshold by hand"
        )
    reaching = [r for r in rows if float(r["recall"]) >= target_recall]
    if reaching:
        chosen = min(reaching, key=_tie_key)
        reason = (
            f"fewest false candidates per 100 km² among the {len(reaching)} of {len(rows)} val "
            f"settings reaching recall {target_recall:g}"
        )
    else:
        best_recall = max(float(r["recall"]) for r in rows)
        chosen = min((r for r in rows if float(r["recall"]) == best_recall), key=_tie_key)
        reason = (
            f"no val setting reaches recall {target_recall:g}; the highest-recall one "
            f"({best_recall:.3f}) was taken"
        )
    min_area = chosen.get("min_area_px")
    fp = chosen.get("false_candidates_per_100km2")
    return OperatingPoint(
        threshold=float(chosen["threshold"]),
        merge_distance_px=int(chosen.get("merge_distance_px") or 0),
        min_area_px=None if min_area is None else int(min_area),
        recall=float(chosen["recall"]),
        false_candidates_per_100km2=None if fp is None else float(fp),
        duplicates=int(chosen.get("duplicates") or 0),
        target_recall=target_recall,
        reached_target=bool(reaching),
        reason=reason,
    )
