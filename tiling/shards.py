"""Writing cut patches to TFRecord shards and manifest records.

Shards are grouped by split, and the mining pool gets shards of its own so mining reads
only the pool (their names and the records are :mod:`tiling.patchset`'s). Each record is a
``tf.train.Example`` with ``image`` and ``mask`` (raw bytes, row-major), ``height``,
``width``, ``dtype`` and ``patch_id``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from tiling.patchset import PatchRecord, shard_file_name, shard_group, tiled_patch_id
from tiling.tfrecord import TFRecordWriter, example_chunks


@functools.lru_cache(maxsize=64)
def _patch_template(id_len: int, height: int, width: int, dtype: str) -> tuple[bytes, bytes, bytes, bytes]:
    """The constant bytes of a patch Example around its three variable fields.

    Encodes an Example with placeholder payloads of the right lengths and cuts the chunk
    list at them (found by identity), so each patch costs one join, not a protobuf walk.
    """
    pixels = height * width
    image, mask, patch_id = bytearray(pixels * np.dtype(dtype).itemsize), bytearray(pixels), bytearray(id_len)
    chunks = example_chunks(
        {
            "patch_id": patch_id,
            "image": image,
            "mask": mask,
            "height": height,
            "width": width,
            "dtype": dtype.encode(),
        }
    )
    cuts = [
        next(i for i, c in enumerate(chunks) if c is placeholder) for placeholder in (image, mask, patch_id)
    ]
    bounds = [0, *cuts, len(chunks)]
    pieces = [b"".join(chunks[bounds[k] + (k > 0) : bounds[k + 1]]) for k in range(4)]
    return pieces[0], pieces[1], pieces[2], pieces[3]


def encode_patch(patch_id: str, image: np.ndarray, mask: np.ndarray | None) -> bytes:
    """One patch as a serialised ``tf.train.Example`` (``mask`` None = all zero), the same
    bytes as :func:`tiling.tfrecord.encode_example` would give."""
    height, width = image.shape
    before_image, before_mask, before_id, tail = _patch_template(
        len(patch_id), height, width, image.dtype.name
    )
    mask_bytes = (
        bytes(height * width) if mask is None else np.ascontiguousarray(mask, dtype=np.uint8).tobytes()
    )
    image_bytes = np.ascontiguousarray(image).tobytes()
    return b"".join((before_image, image_bytes, before_mask, mask_bytes, before_id, patch_id.encode(), tail))


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
                self.folder / shard_file_name(self.scene, group, index)
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
        group = shard_group(split, kind)
        writer = self._writer(group)
        patch_id = tiled_patch_id(self.scene, len(self.records))
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
            impact_fraction=0.0 if mask is None else float(np.count_nonzero(mask)) / mask.size,
            nodata_fraction=nodata_fraction,
            shard=(self.recorded_as / writer.path.name).as_posix(),
            offset=offset,
        )
        self.records.append(record)
        return record

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
