"""``impacts tile``: scenes -> balanced patch set (TFRecord shards + manifest).

Per scene: one streaming read in stripes of whole blocks feeds the cutter
(:mod:`tiling.cutter`), which yields every patch; :mod:`tiling.shards` writes them to
TFRecord shards with their manifest records. Each scene's output is
built in ``parts/.NAME.partial`` and renamed to ``parts/NAME`` when complete, so an
interrupted run resumes per scene and nothing half-written looks complete. Scenes run in
parallel processes; a bad scene is reported and the others go on. The merge step
concatenates the per-scene manifests into ``manifest.csv``. The folder layout and the
manifest are :mod:`tiling.patchset`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from impacts.atomic import fsync_path, fsync_tree, read_marker, write_json_atomic
from impacts.chunks import Chunking, read_scene_list, select
from impacts.errors import ConfigError, ImpactsError, MaskMissingError, PatchSetError, SceneError
from impacts.failures import FAILED, SKIPPED, clear_failure, write_failure
from impacts.provenance import write_run_record
from impacts.scenes import MASK_SUFFIX, scene_file
from tiling.config import TileConfig
from tiling.cutter import SceneCutter, scene_salt
from tiling.io import SceneFiles, find_scenes, open_scene, read_window
from tiling.labels import scene_labels
from tiling.patchset import (
    MANIFEST_NAME,
    OBJECTS_NAME,
    PART_META,
    TILED_KINDS,
    PatchSetLayout,
    concat_manifests,
    relative_part,
    write_manifest,
)
from tiling.shards import ShardSink
from tiling.splits import assign_splits
from tiling.windows import random_grid, stripe_rows

log = logging.getLogger(__name__)


@dataclass
class SceneOutcome:
    """How one scene went: ``done``, ``resumed``, ``skipped`` (no mask) or ``failed``."""

    scene: str
    status: str
    split: str = ""
    message: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def fingerprint(files: SceneFiles, split: str, cfg: TileConfig) -> str:
    """Hash of everything a scene's part depends on (inputs, split, sampling settings)."""
    settings = cfg.model_dump(mode="json", exclude={"workers", "split"})
    parts = [split, json.dumps(settings, sort_keys=True)]
    for path in (files.image, files.mask):
        stat = path.stat() if path else None
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else "none")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _completed(out: Path, scene: str, expected: str | None) -> dict[str, Any] | None:
    """The part's metadata if the scene is complete (and matches ``expected``, if given);
    an unreadable ``part.json`` counts as not complete (logged), so the scene is tiled again."""
    meta = read_marker(PatchSetLayout(out).part_meta(scene))
    if meta is None or not isinstance(meta.get("counts"), dict):
        return None
    return meta if expected is None or meta.get("fingerprint") == expected else None


def _stripes(
    image: Any, mask: Any, height: int, width: int, rows: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Image and mask stripes top to bottom, the next one decoded by a reader thread while
    the caller works on the current one (GDAL releases the GIL while it decodes)."""

    def read(row0: int) -> tuple[np.ndarray, np.ndarray]:
        count = min(rows, height - row0)
        return read_window(image, row0, 0, count, width), read_window(mask, row0, 0, count, width)

    starts = list(range(0, height, rows))
    with ThreadPoolExecutor(max_workers=1) as reader:
        ahead = reader.submit(read, starts[0])
        for following in [*starts[1:], None]:
            stripe = ahead.result()
            if following is not None:
                ahead = reader.submit(read, following)
            yield stripe


def tile_scene(files: SceneFiles, split: str, cfg: TileConfig, out: Path, threads: int = 1) -> SceneOutcome:
    """Tile one scene into ``out/parts/NAME`` (skipped when already complete); ``threads``
    GDAL threads decode each stripe.

    Returns:
        The outcome; errors of the scene's own files are caught and reported in it, so the
        caller's other scenes go on.
    """
    expected = fingerprint(files, split, cfg)
    meta = _completed(out, files.name, expected)
    if meta is not None:
        return SceneOutcome(files.name, "resumed", split, "already tiled", dict(meta["counts"]))
    layout = PatchSetLayout(out)
    part, partial = layout.part(files.name), layout.partial_part(files.name)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with open_scene(files, threads) as (image, mask, info):
            if info.height < cfg.patch_px or info.width < cfg.patch_px:
                raise SceneError(
                    f"{files.image}: {info.height}x{info.width} px is smaller than one {cfg.patch_px} px patch; drop it or lower patch_px"
                )
            salt = scene_salt(cfg.seed, files.name)
            grid = random_grid(
                info.height, info.width, cfg.negative_stride_px, np.random.default_rng(salt & 0xFFFFFFFF)
            )
            partial.mkdir(parents=True)
            sink = ShardSink(partial, relative_part(files.name), files.name, cfg.shard_max_patches)
            try:
                emit = lambda c: sink.add(c.row, c.col, split, c.kind, c.image, c.mask, c.nodata_fraction)  # noqa: E731
                rows = stripe_rows(info.width, info.block_shape[0], cfg.stripe_px, min_rows=cfg.patch_px)
                cutter = SceneCutter(info, rows, split, cfg, grid, salt, emit)
                for image_stripe, mask_stripe in _stripes(image, mask, info.height, info.width, rows):
                    cutter.feed(image_stripe, mask_stripe)
                for cut in cutter.finish():
                    emit(cut)
            finally:
                sink.close()
            records = sink.records
            n_impacts = cutter.n_impacts
    except MaskMissingError as exc:
        return SceneOutcome(files.name, "skipped", split, str(exc))
    except (ImpactsError, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        return SceneOutcome(files.name, "failed", split, str(exc))
    counts: dict[str, int] = {kind: sum(r.kind == kind for r in records) for kind in TILED_KINDS}
    counts["impacts"] = n_impacts
    write_manifest(partial / MANIFEST_NAME, records)
    objects = files.image.with_name(f"{files.name}_objects.csv")
    if objects.is_file():  # planted-object list of synthetic scenes: evaluation names false positives with it
        shutil.copyfile(objects, partial / OBJECTS_NAME)
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
    fsync_tree(partial)  # the rename below is what marks the scene complete
    shutil.rmtree(part, ignore_errors=True)
    partial.rename(part)
    fsync_path(part.parent)
    return SceneOutcome(files.name, "done", split, "", counts)


def merge_parts(out: Path, scenes: list[str]) -> int:
    """Concatenate the completed parts of ``scenes`` (in name order) into ``manifest.csv``.

    Returns:
        The number of patches in the merged manifest.

    Raises:
        PatchSetError: No scene has a completed part, or a part's manifest has other columns.
    """
    done = [s for s in sorted(scenes) if _completed(out, s, None) is not None]
    if not done:
        raise PatchSetError(f"no scene of {out} is tiled; run `impacts tile` first and read its summary")
    layout = PatchSetLayout(out)
    return concat_manifests(layout.manifest, [layout.part_manifest(s) for s in done])


def _workers(cfg: TileConfig, n_scenes: int) -> int:
    return max(1, min(cfg.workers or os.cpu_count() or 1, n_scenes))


def failure_path(out: Path, scene: str) -> Path:
    """``parts/NAME.failed.json``: the record of a scene that failed or was skipped
    (:mod:`impacts.failures`), removed once it is tiled."""
    return PatchSetLayout(out).parts / f"{scene}.failed.json"


def is_tiled(out: Path, scene: str) -> bool:
    """Whether ``scene`` has a complete part in the patch set ``out`` (any settings)."""
    return _completed(out, scene, None) is not None


def listed_scenes(scene_list: Path) -> list[SceneFiles]:
    """The scenes of a scene list (:func:`impacts.chunks.read_scene_list`), in line order,
    each with its ``NAME_mask.tif`` or label catalog beside it (None where there is neither
    or the image is missing).

    Raises:
        SceneNotFoundError: The list does not exist or names no scene.
        SceneError: A line is not a scene file name, or two lines name one scene.
    """
    scenes = []
    for listed in read_scene_list(scene_list):
        mask = scene_file(listed.path.parent, listed.name, MASK_SUFFIX)
        labels = scene_labels(listed.path.parent, listed.name, mask if mask.is_file() else None)
        scenes.append(SceneFiles(listed.name, listed.path, labels))
    return scenes


def tile_folder(
    scenes_dir: Path | None,
    out: Path,
    cfg: TileConfig,
    array_index: int | None = None,
    *,
    scene_list: Path | None = None,
    chunking: Chunking | None = None,
) -> list[SceneOutcome]:
    """Tile every scene of a folder or of a scene list (or only the chunk LSF array element
    ``array_index``, 1-based, takes: :mod:`impacts.chunks`) and, unless ``array_index`` is
    given, merge the parts into ``manifest.csv``.

    Every element draws the same splits from all the scenes (with masks) of the folder or
    list. A failed or skipped scene leaves ``parts/NAME.failed.json`` (removed once it is
    tiled), which ``impacts jobs summary`` reads; a listed file that does not exist fails
    its own scene.

    Returns:
        One outcome per scene handled, in name (folder) or line (list) order.

    Raises:
        SceneNotFoundError: The folder or list is missing or empty, or ``array_index`` is out
            of range.
        SceneError: A scene list names a scene twice or has a line that is no scene name.
        ConfigError: Both or neither of ``scenes_dir`` and ``scene_list``; a chunking without index.
    """
    if (scenes_dir is None) == (scene_list is None):
        raise ConfigError("pass --scenes DIR or --scene-list FILE (one of them)")
    if scene_list is not None:
        scenes = listed_scenes(scene_list)
    else:
        assert scenes_dir is not None
        scenes = find_scenes(scenes_dir)
    images = {s.name: s.image for s in scenes}
    with_mask = [s.name for s in scenes if s.mask is not None]
    splits = assign_splits(with_mask, cfg.split, cfg.seed)
    todo = select(scenes, array_index, chunking)
    if not todo:
        log.warning("array element %s has no scene (more elements than scenes)", array_index)
    out.mkdir(parents=True, exist_ok=True)
    PatchSetLayout(out).parts.mkdir(exist_ok=True)
    write_run_record(out, cfg, cfg.seed, "tile")
    outcomes: dict[str, SceneOutcome] = {}
    bar = tqdm(total=len(todo), desc="tiling scenes", unit="scene", disable=None)
    for s in todo:
        if not s.image.is_file():
            message = f"{s.image} does not exist; fix its line in the scene list or restore the file"
            outcomes[s.name] = _report(
                SceneOutcome(s.name, "failed", splits.get(s.name, ""), message), bar, out, s.image
            )
    present = [s for s in todo if s.name not in outcomes]
    workers = _workers(cfg, len(present))
    # Per scene: one core cuts patches, the rest decode stripes (read ahead by a thread).
    threads = max(1, (os.cpu_count() or 1) // workers - 1)
    try:
        if workers == 1:
            results = (tile_scene(s, splits.get(s.name, ""), cfg, out, threads) for s in present)
            for outcome in results:
                outcomes[outcome.scene] = _report(outcome, bar, out, images[outcome.scene])
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(tile_scene, s, splits.get(s.name, ""), cfg, out, threads) for s in present
                ]
                for future in as_completed(futures):
                    outcome = future.result()
                    outcomes[outcome.scene] = _report(outcome, bar, out, images[outcome.scene])
    finally:
        bar.close()
    if array_index is None and any(o.status in ("done", "resumed") for o in outcomes.values()):
        merge_parts(out, [s.name for s in scenes])
    ordered = [outcomes[s.name] for s in todo]
    write_json_atomic(PatchSetLayout(out).tile_summary, [o.__dict__ for o in ordered])
    return ordered


def _report(outcome: SceneOutcome, bar: tqdm, out: Path, image: Path) -> SceneOutcome:
    bar.update(1)
    record = failure_path(out, outcome.scene)
    if outcome.status == "failed":
        log.error("scene %s failed: %s", outcome.scene, outcome.message)
    elif outcome.status == "skipped":
        log.warning("scene %s skipped: %s", outcome.scene, outcome.message)
    else:
        log.info("scene %s (%s) %s: %s", outcome.scene, outcome.split, outcome.status, outcome.counts)
        clear_failure(record)
    if outcome.status in (FAILED, SKIPPED):
        write_failure(record, outcome.scene, image, outcome.message, status=outcome.status)
    return outcome
