"""Writing cut patches to TFRecord shards and manifest records.

Shards are grouped by split, and the mining pool gets shards of its own so mining reads
only the pool. Each record is a ``tf.train.Example`` with ``image`` and ``mask`` (raw
bytes, row-major), ``height``, ``width``, ``dtype`` and ``patch_id``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tiling.manifest import PatchRecord
from tiling.tfrecord import TFRecordWriter, encode_example


def encode_patch(patch_id: str, image: np.ndarray, mask: np.ndarray) -> bytes:
    """One patch as a serialised ``tf.train.Example``."""
    return encode_example(
        {
            "patch_id": patch_id.encode(),
            "image": np.ascontiguousarray(image).tobytes(),
            "mask": np.ascontiguousarray(mask, dtype=np.uint8).tobytes(),
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "dtype": image.dtype.name.encode(),
        }
    )


class ShardSink:
    """Writes patches of one scene into ``folder`` and keeps their manifest records.

    Args:
        folder: Where this scene's shards are written now.
        recorded_as: The folder the records name, relative to the patch set (the scene's
            final folder; ``folder`` is renamed to it when the scene is complete).
        scene: Scene name (prefix of shard files and patch ids).
        max_patches: Most patches per shard.
    """

    def __init__(self, folder: Path, recorded_as: Path, scene: str, max_patches: int) -> None:
        self.folder, self.recorded_as, self.scene, self.max_patches = folder, recorded_as, scene, max_patches
        self.records: list[PatchRecord] = []
        self._writers: dict[str, TFRecordWriter] = {}
        self._shard_index: dict[str, int] = {}

    def _writer(self, group: str) -> TFRecordWriter:
        writer = self._writers.get(group)
        if writer is None or writer.count >= self.max_patches:
            if writer is not None:
                writer.close()
            index = self._shard_index[group] = self._shard_index.get(group, -1) + 1
            writer = self._writers[group] = TFRecordWriter(
                self.folder / f"{self.scene}-{group}-{index:05d}.tfrecord"
            )
        return writer

    def add(
        self,
        row: int,
        col: int,
        split: str,
        kind: str,
        image: np.ndarray,
        mask: np.ndarray,
        nodata_fraction: float,
    ) -> PatchRecord:
        """Write one patch and return its manifest record."""
        group = "pool" if kind == "pool" else split
        writer = self._writer(group)
        patch_id = f"{self.scene}-{len(self.records):06d}"
        offset = writer.write(encode_patch(patch_id, image, mask))
        record = PatchRecord(
            patch_id=patch_id,
            scene=self.scene,
            row=row,
            col=col,
            height=image.shape[0],
            width=image.shape[1],
            split=split,
            kind=kind,
            impact_fraction=float(np.count_nonzero(mask)) / mask.size,
            nodata_fraction=nodata_fraction,
            shard=(self.recorded_as / writer.path.name).as_posix(),
            offset=offset,
        )
        self.records.append(record)
        return record

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
