"""Patches cut at chosen windows of a scene, outside the tiler's single pass.

Reviewed hard negatives (:mod:`tiling.reviewed`) and scene-wide mining
(:mod:`training.scene_mining`) both cut a patch around a place the model got wrong: only
that window of the image and of its mask is read, the mask is stored 0/1 as the tiler
stores it (any non-zero mask value is an impact, so a window of a densely labelled scene
keeps its true targets), and the patches go to one shard written as ``.partial`` and
renamed, with their manifest records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from impacts.atomic import atomic_path
from tiling.io import SceneFiles, SceneInfo, open_image, open_scene, read_window
from tiling.patchset import TRAIN_SPLIT, PatchRecord
from tiling.shards import encode_patch
from tiling.tfrecord import TFRecordWriter


@dataclass(frozen=True)
class WindowPatch:
    """One cut: top-left scene pixel, pixels, 0/1 mask, no-data share."""

    row: int
    col: int
    image: np.ndarray
    mask: np.ndarray
    nodata_fraction: float


@contextmanager
def open_for_cutting(files: SceneFiles) -> Iterator[tuple[Any, Any, SceneInfo]]:
    """The scene's image and mask datasets (mask None when the scene has none) and its grid.

    Raises:
        SceneError: A file cannot be used (corrupt, several bands, mask off its grid).
    """
    if files.mask is None:
        with open_image(files.image) as (image, info):
            yield image, None, info
    else:
        with open_scene(files) as (image, mask, info):
            yield image, mask, info


def read_patch(image: Any, mask: Any, info: SceneInfo, row: int, col: int, patch_px: int) -> WindowPatch:
    """Read the ``patch_px`` square at ``(row, col)`` of an open scene (only that window).

    A scene without a mask (``mask`` None) gives an all-zero mask.
    """
    pixels = read_window(image, row, col, patch_px, patch_px)
    if mask is None:
        labels = np.zeros((patch_px, patch_px), np.uint8)
    else:
        labels = (read_window(mask, row, col, patch_px, patch_px) != 0).astype(np.uint8)
    nodata = np.array(info.nodata).astype(info.dtype)  # as the tiler compares
    return WindowPatch(row, col, pixels, labels, float(np.mean(pixels == nodata)))


def write_patch_shard(
    path: Path,
    recorded_as: str,
    cuts: Sequence[tuple[str, str, WindowPatch]],
    kind: str,
    extra: Sequence[dict[str, Any]] | None = None,
) -> list[PatchRecord]:
    """Write patches to one shard (built as ``.partial``, then renamed) and return their records.

    Args:
        path: The shard file.
        recorded_as: The shard as the records name it (relative to the patch set).
        cuts: ``(patch_id, scene, patch)`` in the order to write.
        kind: The records' kind (split is always train).
        extra: Per cut, more record fields (``round``, ``score``, ``model_version``).

    Returns:
        One train record per cut, with its shard offset.
    """
    records = []
    with atomic_path(path) as partial, TFRecordWriter(partial) as writer:
        for k, (patch_id, scene, cut) in enumerate(cuts):
            offset = writer.write(encode_patch(patch_id, cut.image, cut.mask))
            side_h, side_w = cut.image.shape
            records.append(
                PatchRecord(
                    patch_id=patch_id,
                    scene=scene,
                    row=cut.row,
                    col=cut.col,
                    height=side_h,
                    width=side_w,
                    split=TRAIN_SPLIT,
                    kind=kind,
                    impact_fraction=float(np.count_nonzero(cut.mask)) / cut.mask.size,
                    nodata_fraction=cut.nodata_fraction,
                    shard=recorded_as,
                    offset=offset,
                    **(extra[k] if extra is not None else {}),
                )
            )
    return records
