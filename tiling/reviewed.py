"""Reviewed hard negatives: detections analysts rejected become ``reviewed`` train patches.

``impacts review export`` writes ``hard_negatives.csv`` with the columns
``detection_id, scene, row_min, col_min, row_max, col_max, score, model_version`` (the box
is inclusive, in scene pixels) and, for people, ``reason, analyst, decided_at``.
:func:`append_reviewed` cuts one patch per row, of the patch set's patch size, centred on
the box and clamped to the scene (:func:`review_window`), reads only that window of the
image and of its mask, and appends the patches to an existing patch set:

- kind ``reviewed``, split ``train``, patch id ``reviewed-<detection_id>``, ``score`` and
  ``model_version`` from the row; impact and no-data fractions as the tiler computes them;
- rows of scenes that the manifest has in val or test are skipped and reported (those
  splits are never touched); a scene the manifest does not know is a new train scene;
- a detection already in the manifest is skipped, so a second run adds nothing;
- the new patches go to one shard ``reviewed/reviewed-<hash>.tfrecord``; every reviewed
  row is also kept in ``reviewed/manifest.csv``, from which rows that a later
  ``impacts tile`` merge dropped from ``manifest.csv`` are restored on the next run.

Every row is checked, and every scene opened, before anything is written: a bad file
changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from impacts.atomic import write_json_atomic
from impacts.errors import PatchSetError
from impacts.scenes import MASK_SUFFIX, scene_file
from tiling.io import SceneFiles
from tiling.labels import scene_labels
from tiling.patchset import (
    EVAL_SPLITS,
    MANIFEST_NAME,
    REVIEWED,
    PatchRecord,
    PatchSetLayout,
    read_manifest,
    record_dtype,
    reviewed_shard,
    write_manifest,
)
from tiling.window_patches import WindowPatch, open_for_cutting, read_patch, write_patch_shard
from tiling.windows import Box, crop_start_range

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "detection_id",
    "scene",
    "row_min",
    "col_min",
    "row_max",
    "col_max",
    "score",
    "model_version",
)
OPTIONAL_COLUMNS = ("reason", "analyst", "decided_at")
SAFE_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
KIND = REVIEWED  # the kind (and patch-id prefix) of every patch this module adds


@dataclass(frozen=True)
class HardNegative:
    """One row of ``hard_negatives.csv``; ``line`` is its line in the file."""

    line: int
    detection_id: str
    scene: str
    box: Box
    score: float
    model_version: str
    reason: str = ""
    analyst: str = ""
    decided_at: str = ""


@dataclass
class ReviewedSummary:
    """What one ``impacts tile add-reviewed`` run did (counts of rows, and the rows skipped)."""

    added: int = 0
    skipped_val_test: int = 0
    skipped_existing: int = 0
    missing_scene: int = 0
    restored: int = 0
    shard: str = ""
    new_scenes: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def patch_id_for(detection_id: str) -> str:
    """Stable, unique patch id of a detection: ``reviewed-<detection_id>``, or for an id with
    other characters than letters, digits, ``_ . -``, those replaced by ``_`` plus a short hash
    of the id (so two ids never share a patch id)."""
    if SAFE_ID.fullmatch(detection_id):
        return f"{KIND}-{detection_id}"
    digest = hashlib.sha256(detection_id.encode()).hexdigest()[:10]
    return f"{KIND}-{re.sub(r'[^A-Za-z0-9_.-]', '_', detection_id)[:100]}-{digest}"


def _int(row: dict[str, str], name: str) -> int:
    text = row[name].strip()
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise ValueError(f"{name} {text!r} is not a pixel index (a whole number >= 0)")
    return int(text)


def _parse_row(row: dict[str, str], line: int) -> HardNegative:
    detection_id = row["detection_id"].strip()
    if not detection_id or len(detection_id) > 256 or not detection_id.isprintable():
        raise ValueError(f"detection_id {detection_id!r} must be 1-256 printable characters")
    scene = row["scene"].strip()
    box = Box(
        row_min=_int(row, "row_min"),
        row_max=_int(row, "row_max"),
        col_min=_int(row, "col_min"),
        col_max=_int(row, "col_max"),
    )
    if box.row_max < box.row_min or box.col_max < box.col_min:
        raise ValueError(f"box rows {box.row_min}..{box.row_max}, cols {box.col_min}..{box.col_max} is empty")
    try:
        score = float(row["score"])
    except ValueError:
        raise ValueError(f"score {row['score']!r} is not a number") from None
    if not math.isfinite(score):
        raise ValueError(f"score {row['score']!r} is not a finite number")
    extra = {name: (row.get(name) or "").strip() for name in OPTIONAL_COLUMNS}
    return HardNegative(line, detection_id, scene, box, score, row["model_version"].strip(), **extra)


def read_hard_negatives(path: Path, scenes_dir: Path) -> list[HardNegative]:
    """Read and validate a hard-negative list (blank lines are ignored).

    Args:
        path: The CSV (``impacts review export`` writes ``hard_negatives.csv``).
        scenes_dir: The scene folder every ``scene`` must name a file in.

    Returns:
        The rows in file order.

    Raises:
        PatchSetError: The file is missing or not UTF-8, a required column is missing, or a
            row has a bad number, an empty box, a bad detection id or an unsafe scene name;
            the message names the file, the line and the fix.
    """
    if not path.is_file():
        raise PatchSetError(
            f"{path} not found; write it with `impacts review export --out DIR` (hard_negatives.csv)"
        )
    rows: list[HardNegative] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise PatchSetError(
                    f"{path}, line 1: missing columns {', '.join(missing)}; the header must name "
                    f"{','.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)} (as `impacts review export` writes it)"
                )
            for row in reader:
                line = reader.line_num
                if None in row or any(row[c] is None for c in REQUIRED_COLUMNS):
                    more = "more" if None in row else "fewer"
                    raise PatchSetError(
                        f"{path}, line {line}: {more} fields than the header's {len(reader.fieldnames or [])}; "
                        "quote values that hold commas and give every column"
                    )
                if not any((v or "").strip() for v in row.values()):
                    continue
                try:
                    item = _parse_row(row, line)
                    scene_file(scenes_dir, item.scene)
                except ValueError as exc:  # a SceneNameError too
                    raise PatchSetError(f"{path}, line {line}: {exc}; fix or delete the row") from None
                rows.append(item)
    except UnicodeDecodeError as exc:
        raise PatchSetError(f"{path}: not UTF-8 text ({exc}); export it again as UTF-8 CSV") from None
    return rows


def review_window(box: Box, patch_px: int, height: int, width: int) -> tuple[int, int]:
    """Top-left ``(row, col)`` of the patch cut for a reviewed box.

    The patch is the box's centred window (:meth:`tiling.windows.Box.centred`, the rule the
    review's crops use too): a box that fits is always inside its patch; a larger one is cut
    around its centre.

    Raises:
        ValueError: The scene is smaller than a patch or the box leaves the scene.
    """
    for lo, hi, size in ((box.row_min, box.row_max, height), (box.col_min, box.col_max, width)):
        crop_start_range(lo, hi, patch_px, size)  # raises for a short axis or a box outside
    window = box.centred(patch_px, height, width)
    return window.row, window.col


def _patch_shape(root: Path, records: list[PatchRecord]) -> tuple[int, str]:
    """Patch side and pixel type of a patch set (from its first record)."""
    if not records:
        raise PatchSetError(
            f"{root}: the manifest lists no patch; tile some scenes first with `impacts tile`"
        )
    sizes = {(r.height, r.width) for r in records}
    if len(sizes) != 1 or records[0].height != records[0].width:
        raise PatchSetError(
            f"{root}: patches of sizes {sorted(sizes)}; a patch set holds square patches of one size"
        )
    return records[0].height, record_dtype(root, records[0])


@dataclass(frozen=True)
class _Cut:
    """A reviewed row and its patch."""

    item: HardNegative
    patch: WindowPatch


def _cut(files: SceneFiles, rows: list[HardNegative], patch_px: int, dtype: str, source: Path) -> list[_Cut]:
    """Read each row's window of one scene (only that window, of the image and the mask)."""
    cuts = []
    with open_for_cutting(files) as (image, mask, info):
        if info.dtype != dtype:
            raise PatchSetError(
                f"{source}, line {rows[0].line}: scene {files.name} is {info.dtype} but the patch set is {dtype}; "
                "a patch set holds one pixel type, drop the rows of this scene"
            )
        for item in rows:
            b = item.box
            if b.row_max >= info.height or b.col_max >= info.width or min(info.height, info.width) < patch_px:
                raise PatchSetError(
                    f"{source}, line {item.line}: box rows {b.row_min}..{b.row_max}, cols {b.col_min}..{b.col_max} "
                    f"does not fit scene {files.name} ({info.height}x{info.width} px, patches {patch_px} px); "
                    "check the scene name or delete the row"
                )
            top, left = review_window(b, patch_px, info.height, info.width)
            if b.height > patch_px or b.width > patch_px:
                log.info(
                    "detection %s: box %dx%d px is larger than a %d px patch; the patch is its centre",
                    item.detection_id,
                    b.height,
                    b.width,
                    patch_px,
                )
            cuts.append(_Cut(item, read_patch(image, mask, info, top, left, patch_px)))
    return cuts


def _restore(root: Path, records: list[PatchRecord], patch_px: int, summary: ReviewedSummary) -> None:
    """Put back reviewed rows of ``reviewed/manifest.csv`` that are missing from ``records``
    (a later ``impacts tile`` merge rebuilds ``manifest.csv`` from the scene parts only)."""
    layout = PatchSetLayout(root)
    present = {r.patch_id for r in records}
    eval_scenes = {r.scene for r in records if r.split in EVAL_SPLITS}
    for r in read_manifest(layout.reviewed_ledger) if layout.reviewed_ledger.is_file() else []:
        if r.patch_id in present or not layout.shard(r.shard).is_file():
            continue
        if r.scene in eval_scenes or (r.height, r.width) != (patch_px, patch_px):
            log.warning(
                "reviewed patch %s not restored: scene %s is now in val/test or patches are no longer %d px",
                r.patch_id,
                r.scene,
                patch_px,
            )
            continue
        records.append(r)
        present.add(r.patch_id)
        summary.restored += 1
    if summary.restored:
        log.warning("restored %d reviewed patches that re-tiling dropped from the manifest", summary.restored)


def _plan(
    items: list[HardNegative], records: list[PatchRecord], scenes_dir: Path, summary: ReviewedSummary
) -> dict[str, list[HardNegative]]:
    """The rows to cut, by scene; the others are counted and listed in ``summary``."""
    splits: dict[str, set[str]] = {}
    for r in records:
        splits.setdefault(r.scene, set()).add(r.split)
    present = {r.patch_id for r in records}
    todo: dict[str, list[HardNegative]] = {}
    for item in items:
        pid, where = patch_id_for(item.detection_id), splits.get(item.scene, set())
        if pid in present:
            counter, why = "skipped_existing", "already in the patch set"
        elif where & set(EVAL_SPLITS):
            counter, why = "skipped_val_test", f"scene {item.scene} is in {'/'.join(sorted(where))}"
        elif not scene_file(scenes_dir, item.scene).is_file():
            counter, why = "missing_scene", f"no scene file {item.scene}.* in {scenes_dir}"
        else:
            if not where and item.scene not in summary.new_scenes:
                log.info("scene %s is not in the manifest: a new scene, its patches go to train", item.scene)
                summary.new_scenes.append(item.scene)
            present.add(pid)
            todo.setdefault(item.scene, []).append(item)
            continue
        log.warning("line %d, detection %s skipped: %s", item.line, item.detection_id, why)
        setattr(summary, counter, getattr(summary, counter) + 1)
        summary.skipped.append({"detection_id": item.detection_id, "scene": item.scene, "why": why})
    return todo


def _write_shard(root: Path, cuts: list[_Cut]) -> list[PatchRecord]:
    """Write the patches to ``reviewed/reviewed-<hash of their ids>.tfrecord`` (built as
    ``.partial`` and renamed) and return their manifest records."""
    ids = [patch_id_for(c.item.detection_id) for c in cuts]
    layout, shard = PatchSetLayout(root), reviewed_shard(ids)
    layout.reviewed_dir.mkdir(exist_ok=True)
    records = write_patch_shard(
        layout.shard(shard),
        shard,
        [(pid, c.item.scene, c.patch) for c, pid in zip(cuts, ids, strict=True)],
        KIND,
        [{"score": c.item.score, "model_version": c.item.model_version} for c in cuts],
    )
    for c, pid in zip(cuts, ids, strict=True):
        if c.patch.mask.any():
            log.warning("detection %s: its patch holds mapped impact pixels (kept as the mask says)", pid)
    return records


def append_reviewed(csv_path: Path, scenes_dir: Path, patches_dir: Path) -> ReviewedSummary:
    """Append the rows of a hard-negative list to a patch set as ``reviewed`` train patches.

    Args:
        csv_path: ``hard_negatives.csv`` (see :func:`read_hard_negatives`).
        scenes_dir: Folder of ``NAME.tif`` (+ ``NAME_mask.tif``) scenes the rows refer to.
        patches_dir: An existing patch set (``manifest.csv`` + shards) to extend.

    Returns:
        Counts of rows added, skipped (val/test scene, already present, scene file missing)
        and restored; the same summary is appended to ``patches_dir/reviewed.json``.

    Raises:
        PatchSetError: No patch set at ``patches_dir``, a bad hard-negative list, a box that
            does not fit its scene or a scene of another pixel type; nothing is written then.
        SceneError: A scene file cannot be used (corrupt, several bands, mask off its grid).
    """
    layout = PatchSetLayout(patches_dir)
    manifest_path = layout.manifest
    if not manifest_path.is_file():
        raise PatchSetError(
            f"{patches_dir} is not a patch set (no {MANIFEST_NAME}); tile the scenes first with "
            f"`impacts tile --scenes {scenes_dir} --out {patches_dir}`, then add the reviewed list"
        )
    items = read_hard_negatives(csv_path, scenes_dir)
    records = read_manifest(manifest_path)
    patch_px, dtype = _patch_shape(patches_dir, records)
    summary = ReviewedSummary()
    _restore(patches_dir, records, patch_px, summary)
    cuts: list[_Cut] = []
    for scene, rows in _plan(items, records, scenes_dir, summary).items():
        image = scene_file(scenes_dir, scene)
        mask_raster = scene_file(scenes_dir, scene, MASK_SUFFIX)
        # The mask raster, else a label catalog (tiling/labels.py), drawn on the window.
        mask = scene_labels(scenes_dir, scene, mask_raster if mask_raster.is_file() else None)
        if mask is None:
            log.warning(
                "scene %s has no mask or labels: its reviewed patches get an empty mask (rejected = no impact)",
                scene,
            )
        cuts += _cut(SceneFiles(scene, image, mask), rows, patch_px, dtype, csv_path)
    # Every row checked and every window read: only now is anything written.
    added = _write_shard(patches_dir, cuts) if cuts else []
    summary.added, summary.shard = len(added), added[0].shard if added else ""
    if added or summary.restored:
        records += added
        # Ledger first: a run stopped between the two writes is completed by the next run.
        write_manifest(layout.reviewed_ledger, [r for r in records if r.kind == KIND])
        write_manifest(manifest_path, records)
    _write_summary(patches_dir, csv_path, summary)
    return summary


def _write_summary(patches_dir: Path, csv_path: Path, summary: ReviewedSummary) -> None:
    """Append this run to ``reviewed.json`` (one entry per run, newest last)."""
    path = PatchSetLayout(patches_dir).reviewed_summary
    runs: list[dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []
    runs.append(
        {"file": str(csv_path), "at": datetime.now(UTC).isoformat(timespec="seconds"), **asdict(summary)}
    )
    write_json_atomic(path, runs)
