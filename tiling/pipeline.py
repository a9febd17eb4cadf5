"""``impacts tile``: scenes -> balanced patch set (TFRecord shards + manifest).

Per scene: one streaming scan (:mod:`tiling.scan`), a plan (:mod:`tiling.sampling`), then
the planned windows are read in file order and written to shards. Each scene's output is
built in ``parts/.NAME.partial`` and renamed to ``parts/NAME`` when complete, so an
interrupted run resumes per scene and nothing half-written looks complete. Scenes run in
parallel processes; a bad scene is reported and the others go on. The merge step
concatenates the per-scene manifests into ``manifest.csv``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from impacts.errors import ImpactsError, MaskMissingError, PatchSetError, SceneError
from impacts.provenance import write_run_record
from tiling.config import TileConfig
from tiling.io import SceneFiles, find_scenes, open_scene, read_window
from tiling.manifest import MANIFEST_NAME, PatchRecord, read_manifest, write_manifest
from tiling.sampling import PlannedPatch, plan_patches
from tiling.scan import scan_scene
from tiling.splits import assign_splits
from tiling.tfrecord import TFRecordWriter, encode_example
from tiling.windows import random_grid

log = logging.getLogger(__name__)

PARTS_DIR = "parts"
PART_META = "part.json"


@dataclass
class SceneOutcome:
    """How one scene went: ``done``, ``resumed``, ``skipped`` (no mask) or ``failed``."""

    scene: str
    status: str
    split: str = ""
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def scene_rng(seed: int, scene: str) -> np.random.Generator:
    """Per-scene generator: results do not depend on which process handles which scene."""
    return np.random.default_rng([seed, zlib.crc32(scene.encode())])


def fingerprint(files: SceneFiles, split: str, cfg: TileConfig) -> str:
    """Hash of everything a scene's part depends on (inputs, split, sampling settings)."""
    settings = cfg.model_dump(mode="json", exclude={"workers", "split"})
    parts = [split, json.dumps(settings, sort_keys=True)]
    for path in (files.image, files.mask):
        stat = path.stat() if path else None
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else "none")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _part_dir(out: Path, scene: str) -> Path:
    return out / PARTS_DIR / scene


def _completed(out: Path, scene: str, expected: str | None) -> dict[str, Any] | None:
    """The part's metadata if the scene is complete (and matches ``expected``, if given)."""
    meta_path = _part_dir(out, scene) / PART_META
    if not meta_path.is_file():
        return None
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    return meta if expected is None or meta.get("fingerprint") == expected else None


def _cut(
    image: object,
    mask: object,
    plan: list[PlannedPatch],
    scene: str,
    nodata: float,
    dtype: str,
    cfg: TileConfig,
    out: Path,
    part: Path,
) -> list[PatchRecord]:
    """Read the planned windows (in file order) and write them to shards grouped by split
    (the pool gets shards of its own, so mining reads only the pool)."""
    patch = cfg.patch_px
    writers: dict[str, TFRecordWriter] = {}
    shard_index: dict[str, int] = {}
    records = []
    try:
        for index, p in enumerate(plan):
            group = "pool" if p.kind == "pool" else p.split
            writer = writers.get(group)
            if writer is None or writer.count >= cfg.shard_max_patches:
                if writer is not None:
                    writer.close()
                shard_index[group] = shard_index.get(group, -1) + 1
                writer = writers[group] = TFRecordWriter(
                    part / f"{scene}-{group}-{shard_index[group]:05d}.tfrecord"
                )
            pixels = read_window(image, p.row, p.col, patch, patch)
            labels = (read_window(mask, p.row, p.col, patch, patch) != 0).astype(np.uint8)
            patch_id = f"{scene}-{index:06d}"
            offset = writer.write(
                encode_example(
                    {
                        "patch_id": patch_id.encode(),
                        "image": pixels.tobytes(),
                        "mask": labels.tobytes(),
                        "height": patch,
                        "width": patch,
                        "dtype": dtype.encode(),
                    }
                )
            )
            shard = (Path(PARTS_DIR) / scene / writer.path.name).as_posix()
            records.append(
                PatchRecord(
                    patch_id,
                    scene,
                    p.row,
                    p.col,
                    patch,
                    patch,
                    p.split,
                    p.kind,
                    float(labels.mean()),
                    float(np.mean(pixels == np.array(nodata).astype(dtype))),
                    shard,
                    offset,
                )
            )
    finally:
        for writer in writers.values():
            writer.close()
    return records


def tile_scene(files: SceneFiles, split: str, cfg: TileConfig, out: Path) -> SceneOutcome:
    """Tile one scene into ``out/parts/NAME`` (skipped when already complete).

    Returns:
        The outcome; errors of the scene's own files are caught and reported in it, so the
        caller's other scenes go on.
    """
    expected = fingerprint(files, split, cfg)
    meta = _completed(out, files.name, expected)
    if meta is not None:
        return SceneOutcome(files.name, "resumed", split, "already tiled", dict(meta["counts"]))
    part = _part_dir(out, files.name)
    partial = part.with_name(f".{files.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with open_scene(files) as (image, mask, info):
            if info.height < cfg.patch_px or info.width < cfg.patch_px:
                raise SceneError(
                    f"{files.image}: {info.height}x{info.width} px is smaller than one {cfg.patch_px} px patch; drop it or lower patch_px"
                )
            rng = scene_rng(cfg.seed, files.name)
            grid = random_grid(info.height, info.width, cfg.negative_stride_px, rng)
            scan = scan_scene(image, mask, info, grid, cfg.stripe_px)
            plan = plan_patches(scan.impacts, grid, scan.impact_px, scan.nodata_px, split, cfg, rng)
            partial.mkdir(parents=True)
            records = _cut(image, mask, plan, files.name, info.nodata, info.dtype, cfg, out, partial)
    except MaskMissingError as exc:
        return SceneOutcome(files.name, "skipped", split, str(exc))
    except (ImpactsError, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        return SceneOutcome(files.name, "failed", split, str(exc))
    counts = {kind: sum(r.kind == kind for r in records) for kind in ("positive", "negative", "pool")}
    counts["impacts"] = len(scan.impacts)
    write_manifest(partial / MANIFEST_NAME, records)
    (partial / PART_META).write_text(
        json.dumps(
            {
                "scene": files.name,
                "split": split,
                "fingerprint": expected,
                "counts": counts,
                "height": info.height,
                "width": info.width,
                "dtype": info.dtype,
            },
            indent=2,
        )
    )
    shutil.rmtree(part, ignore_errors=True)
    partial.rename(part)
    return SceneOutcome(files.name, "done", split, "", counts)


def merge_parts(out: Path, scenes: list[str]) -> list[PatchRecord]:
    """Concatenate the completed parts of ``scenes`` (in name order) into ``manifest.csv``.

    Raises:
        PatchSetError: No scene has a completed part.
    """
    records: list[PatchRecord] = []
    done = [s for s in sorted(scenes) if _completed(out, s, None) is not None]
    if not done:
        raise PatchSetError(f"no scene of {out} is tiled; run `impacts tile` first and read its summary")
    for scene in done:
        records.extend(read_manifest(_part_dir(out, scene) / MANIFEST_NAME))
    write_manifest(out / MANIFEST_NAME, records)
    return records


def _workers(cfg: TileConfig, n_scenes: int) -> int:
    return max(1, min(cfg.workers or os.cpu_count() or 1, n_scenes))


def tile_folder(
    scenes_dir: Path, out: Path, cfg: TileConfig, array_index: int | None = None
) -> list[SceneOutcome]:
    """Tile every scene of a folder (or only the ``array_index``-th, 1-based, for LSF job
    arrays) and, unless ``array_index`` is given, merge the parts into ``manifest.csv``.

    Returns:
        One outcome per scene handled, in name order.

    Raises:
        SceneNotFoundError: The folder is missing or empty, or ``array_index`` is out of range.
    """
    scenes = find_scenes(scenes_dir)
    with_mask = [s.name for s in scenes if s.mask is not None]
    splits = assign_splits(with_mask, cfg.split, cfg.seed)
    todo = scenes
    if array_index is not None:
        if not 1 <= array_index <= len(scenes):
            raise SceneError(
                f"array index {array_index} is outside 1..{len(scenes)} (scenes in {scenes_dir}); size the job array to the scene count"
            )
        todo = [scenes[array_index - 1]]
    out.mkdir(parents=True, exist_ok=True)
    write_run_record(out, cfg, cfg.seed, "tile")
    outcomes: dict[str, SceneOutcome] = {}
    workers = _workers(cfg, len(todo))
    bar = tqdm(total=len(todo), desc="tiling scenes", unit="scene", disable=None)
    try:
        if workers == 1:
            results = (tile_scene(s, splits.get(s.name, ""), cfg, out) for s in todo)
            for outcome in results:
                outcomes[outcome.scene] = _report(outcome, bar)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(tile_scene, s, splits.get(s.name, ""), cfg, out) for s in todo]
                for future in as_completed(futures):
                    outcome = future.result()
                    outcomes[outcome.scene] = _report(outcome, bar)
    finally:
        bar.close()
    if array_index is None and any(o.status in ("done", "resumed") for o in outcomes.values()):
        merge_parts(out, [s.name for s in scenes])
    ordered = [outcomes[s.name] for s in todo]
    (out / "summary.json").write_text(json.dumps([o.__dict__ for o in ordered], indent=2) + "\n")
    return ordered


def _report(outcome: SceneOutcome, bar: tqdm) -> SceneOutcome:
    bar.update(1)
    if outcome.status == "failed":
        log.error("scene %s failed: %s", outcome.scene, outcome.message)
    elif outcome.status == "skipped":
        log.warning("scene %s skipped: %s", outcome.scene, outcome.message)
    else:
        log.info("scene %s (%s) %s: %s", outcome.scene, outcome.split, outcome.status, outcome.counts)
    return outcome
