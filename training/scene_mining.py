"""Scene-wide hard-negative mining: the false candidates of whole train scenes.

Pool mining (:mod:`training.mining`) only sees the tiler's random negative windows. On a
densely labelled scene almost no window is free of targets, so the pool is empty, and rare
look-alikes (a dune field, a slope streak) are seldom in it. Scene-wide mining looks where
the analyst looks: every **train** scene is predicted whole with ``impacts predict``'s code
(:func:`training.predict.predict_one`, into ``RUN/mining/round-R/predictions/``), its
detections at ``mining.threshold`` (after the evaluation's minimum area and fragment
merging) are matched to the truth (the scene's ``NAME_objects.csv``, else its label catalog's
impacts, else its mask's components; :mod:`training.scene_eval`), and the false candidates, highest peak
probability first, each give one patch of the patch set's size centred on the candidate
(:meth:`tiling.windows.Box.centred`). A candidate inside a window already mined (this
round or earlier) adds nothing.

The patch keeps the scene's **true mask** in that window: with dense labels a mined patch
may hold targets beside the false candidate, and the model must learn both.

- Only scenes whose every manifest row is train are predicted: val and test scenes are
  never opened.
- The patches go to ``RUN/mining/round-R/mined.tfrecord`` (recorded relative to the patch
  set), kind ``mined`` with the round, score (peak probability) and model version.
- Every mined window is listed in ``RUN/mining/round-R/windows.csv`` with the false
  candidate's kind, score, area and box.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from impacts.atomic import atomic_path
from impacts.errors import ConfigError, PatchSetError
from tiling.io import SceneFiles, find_scenes
from tiling.patchset import MINED, TRAIN_SPLIT, PatchRecord, PatchSet
from tiling.synth import load_objects
from tiling.window_patches import WindowPatch, open_for_cutting, read_patch, write_patch_shard
from tiling.windows import Box, Window
from training.config import TrainConfig
from training.evaluate_scenes import find_eval_scenes
from training.predict import PredictConfig, predict_one
from training.scene_eval import FALSE_CANDIDATE, IMPACT, MatchRule
from training.scene_pass import EvalScene, rethreshold_scene

log = logging.getLogger(__name__)

MINING_DIR = "mining"
WINDOW_COLUMNS = (
    "patch_id",
    "scene",
    "row",
    "col",
    "size_px",
    "kind",
    "score",
    "area_px",
    "centroid_row",
    "centroid_col",
    "row_min",
    "col_min",
    "row_max",
    "col_max",
    "impact_fraction",
)


@dataclass(frozen=True)
class FalseCandidate:
    """A detection of a train scene that no impact explains, with what it lies on."""

    scene: str
    kind: str
    score: float
    area_px: int
    centroid_row: float
    centroid_col: float
    box: Box


@dataclass
class SceneMiningResult:
    """What a round of scene-wide mining added."""

    records: list[PatchRecord]
    false_candidates: int
    scenes: list[str]
    by_kind: dict[str, int]
    quota: int

    def summary(self) -> dict[str, Any]:
        """The round's entry in ``report.json`` (a round whose quota is 0, the mined share
        being full, predicts nothing: ``scenes`` is empty then)."""
        return {
            "quota": self.quota,
            "windows": len(self.records),
            "false_candidates": self.false_candidates,
            "scenes": self.scenes,
            "by_kind": self.by_kind,
        }


def train_only_scenes(records: Iterable[PatchRecord]) -> list[str]:
    """Scenes whose every record is train (a scene with any val or test row is left out)."""
    splits: dict[str, set[str]] = {}
    for r in records:
        splits.setdefault(r.scene, set()).add(r.split)
    return sorted(s for s, found in splits.items() if found == {TRAIN_SPLIT})


def false_candidates(
    scene: EvalScene, prob: Path, threshold: float, cfg: TrainConfig
) -> list[FalseCandidate]:
    """The detections of a predicted scene at ``threshold`` that hit no impact (streamed).

    Raises:
        SceneError: The map, scene, mask or objects list cannot be read.
    """
    ev = cfg.evaluation
    found = rethreshold_scene(scene, prob, [threshold], ev.min_area_px, ev.merge_distance_px)
    det = found.detections[threshold]
    if scene.objects is not None:
        objects = load_objects(scene.objects)
        impacts = [o for o in objects if o.kind == IMPACT]
        lookalikes = [o for o in objects if o.kind != IMPACT]
    else:
        impacts, lookalikes = found.truth_impacts(), []
    rule = MatchRule(ev.match_radii, ev.match_min_px)
    match = found.match(threshold, impacts, lookalikes, rule)
    return [
        FalseCandidate(
            scene=scene.name,
            kind=match.kind[k],
            score=float(det.peak[k]),
            area_px=int(det.area[k]),
            centroid_row=float(det.centroid_row[k]),
            centroid_col=float(det.centroid_col[k]),
            box=Box(
                row_min=int(det.row_min[k]),
                row_max=int(det.row_max[k]),
                col_min=int(det.col_min[k]),
                col_max=int(det.col_max[k]),
            ),
        )
        for k, outcome in enumerate(match.outcome)
        if outcome == FALSE_CANDIDATE
    ]


def choose_windows(
    candidates: Sequence[FalseCandidate],
    quota: int,
    patch_px: int,
    sizes: dict[str, tuple[int, int]],
    taken: dict[str, list[Window]],
) -> list[tuple[FalseCandidate, Window]]:
    """The worst false candidates, one window each, at most ``quota``.

    Highest score first (then the larger area, then scene and position, so the choice is
    reproducible). A candidate whose box lies inside a window already taken (in ``taken``,
    updated in place, or chosen here) is skipped: one patch already shows it whole.
    """
    chosen: list[tuple[FalseCandidate, Window]] = []
    ranked = sorted(candidates, key=lambda c: (-c.score, -c.area_px, c.scene, c.centroid_row, c.centroid_col))
    for c in ranked:
        if len(chosen) >= quota:
            break
        windows = taken.setdefault(c.scene, [])
        if any(w.contains(c.box) for w in windows):
            continue
        height, width = sizes[c.scene]
        window = c.box.centred(patch_px, height, width)
        windows.append(window)
        chosen.append((c, window))
    return chosen


def mined_patch_id(round_index: int, scene: str, window: Window) -> str:
    """``mined-r<R>-<scene>-<row>-<col>``: unique per round (windows of a round never repeat)."""
    return f"{MINED}-r{round_index}-{scene}-{window.row}-{window.col}"


def mine_scenes(
    model: Any, version: str, patches: PatchSet, cfg: TrainConfig, out: Path, round_index: int, quota: int
) -> SceneMiningResult:
    """Predict the train scenes whole and cut the ``quota`` worst false candidates.

    Args:
        model: The round's model (``predict_on_batch``).
        version: Its version (``RUN-rR``), recorded on each patch.
        patches: The patch set (its manifest says which scenes are train).
        cfg: The run's config (``mining.threshold``; ``evaluation``'s scenes folder, minimum
            area, merging and matching rule).
        out: The run folder.
        round_index: The round the patches are mined for.
        quota: The most patches to add.

    Returns:
        The new records (not yet in ``patches``) and what was found.

    Raises:
        ConfigError: No scenes folder is configured.
        PatchSetError: A train scene has another pixel type than the patch set.
        SceneError: A train scene, its mask or objects list cannot be read.
    """
    if cfg.evaluation.scenes_dir is None:
        raise ConfigError(
            "mining.source scenes needs the tiled scenes: set evaluation.scenes_dir or "
            "pass `impacts train --scenes DIR`"
        )
    scenes_dir = Path(cfg.evaluation.scenes_dir)
    names = train_only_scenes(patches.records)
    listed = {s.name for s in find_scenes(scenes_dir)}
    missing = [n for n in names if n not in listed]
    if missing:
        log.warning("scene-wide mining: %s not in %s; skipped", ", ".join(missing), scenes_dir)
    scenes = find_eval_scenes(scenes_dir, [n for n in names if n in listed]) if quota > 0 else []
    patch_px = patches.records[0].height
    folder = out / MINING_DIR / f"round-{round_index}"
    predictions = folder / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    candidates: list[FalseCandidate] = []
    sizes: dict[str, tuple[int, int]] = {}
    total = 0
    for scene in scenes:
        sizes[scene.name] = _size(scene)
        if min(sizes[scene.name]) < patch_px:
            log.warning(
                "scene-wide mining: scene %s is smaller than a %d px patch; skipped", scene.name, patch_px
            )
            continue
        predict_one(
            model,
            version,
            scene.image,
            predictions,
            PredictConfig(),
            cfg.mining.threshold,
            cfg.evaluation.min_area_px,
            merge_distance_px=cfg.evaluation.merge_distance_px,
        )
        found = false_candidates(scene, predictions / f"{scene.name}_prob.tif", cfg.mining.threshold, cfg)
        # Keep the worst few per scene: the quota bounds what any scene can give.
        total += len(found)
        candidates += sorted(found, key=lambda c: (-c.score, -c.area_px))[: 4 * quota]
    taken: dict[str, list[Window]] = {}
    for r in patches.records:
        if r.kind == MINED:
            taken.setdefault(r.scene, []).append(Window(row=r.row, col=r.col, height=r.height, width=r.width))
    chosen = choose_windows(candidates, quota, patch_px, sizes, taken)
    records = _cut_and_write(chosen, scenes, patches, folder, round_index, version, patch_px)
    result = SceneMiningResult(
        records=records,
        false_candidates=total,
        scenes=[s.name for s in scenes],
        by_kind=dict(Counter(c.kind for c, _ in chosen).most_common()),
        quota=quota,
    )
    log.info(
        "round %d: scene-wide mining of %d train scenes (quota %d): %d false candidates, %d windows (%s)",
        round_index,
        len(scenes),
        quota,
        result.false_candidates,
        len(records),
        ", ".join(f"{k} {n}" for k, n in result.by_kind.items()) or "-",
    )
    return result


def _size(scene: EvalScene) -> tuple[int, int]:
    with open_for_cutting(SceneFiles(scene.name, scene.image, None)) as (_, _mask, info):
        return info.height, info.width


def _cut_and_write(
    chosen: list[tuple[FalseCandidate, Window]],
    scenes: list[EvalScene],
    patches: PatchSet,
    folder: Path,
    round_index: int,
    version: str,
    patch_px: int,
) -> list[PatchRecord]:
    """Read each chosen window (with the scene's true mask) and write them to one shard."""
    by_scene = {s.name: s for s in scenes}
    cuts: list[tuple[str, str, WindowPatch]] = []
    extra: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for name in sorted({c.scene for c, _ in chosen}):
        scene = by_scene[name]
        files = SceneFiles(name, scene.image, scene.mask)
        with open_for_cutting(files) as (image, mask, info):
            if info.dtype != patches.dtype:
                raise PatchSetError(
                    f"{scene.image}: {info.dtype} pixels but the patch set {patches.root} is {patches.dtype}; "
                    "tile scenes of one pixel type into one patch set"
                )
            if mask is None:
                log.warning("scene %s has no mask: its mined patches get an empty mask", name)
            for c, window in (item for item in chosen if item[0].scene == name):
                patch = read_patch(image, mask, info, window.row, window.col, patch_px)
                pid = mined_patch_id(round_index, name, window)
                cuts.append((pid, name, patch))
                extra.append({"round": round_index, "score": c.score, "model_version": version})
                rows.append(_window_row(pid, c, window, patch, patch_px))
    if not cuts:
        return []
    shard = folder / "mined.tfrecord"
    recorded_as = Path(os.path.relpath(shard, patches.root)).as_posix()
    records = write_patch_shard(shard, recorded_as, cuts, MINED, extra)
    with atomic_path(folder / "windows.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=WINDOW_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return records


def _window_row(
    pid: str, c: FalseCandidate, window: Window, patch: WindowPatch, patch_px: int
) -> dict[str, Any]:
    return {
        "patch_id": pid,
        "scene": c.scene,
        "row": window.row,
        "col": window.col,
        "size_px": patch_px,
        "kind": c.kind,
        "score": f"{c.score:.4f}",
        "area_px": c.area_px,
        "centroid_row": f"{c.centroid_row:.1f}",
        "centroid_col": f"{c.centroid_col:.1f}",
        "row_min": c.box.row_min,
        "col_min": c.box.col_min,
        "row_max": c.box.row_max,
        "col_max": c.box.col_max,
        "impact_fraction": f"{float(np.count_nonzero(patch.mask)) / patch.mask.size:.5f}",
    }
