"""tf.data input: patch sets (shards + manifest) to balanced, augmented batches.

Training batches hold exactly ``round(positive_fraction * batch_size)`` impact patches
each (a fixed choice pattern over two shuffled, repeated class streams), not just on
average. Records are parsed from the TFRecord shards and picked by patch id, so mined
patches are read from the pool shards where they lie. The patch set itself (layout,
manifest, kinds, :class:`tiling.patchset.PatchSet`) is :mod:`tiling.patchset`'s; this
module only streams the records selected from it.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from impacts.errors import PatchSetError
from tiling.patchset import PatchRecord, PatchSet
from training.config import DataConfig

MAX_VALUE = {"uint8": 255.0, "uint16": 65535.0}


def _parse_fn(dtype: str, patch_px: int) -> Any:
    import tensorflow as tf

    tf_dtype = tf.uint8 if dtype == "uint8" else tf.uint16
    spec = {
        "patch_id": tf.io.FixedLenFeature([], tf.string),
        "image": tf.io.FixedLenFeature([], tf.string),
        "mask": tf.io.FixedLenFeature([], tf.string),
    }
    scale = 1.0 / MAX_VALUE[dtype]

    def parse(serialized: Any) -> dict[str, Any]:
        ex = tf.io.parse_single_example(serialized, spec)
        image = tf.reshape(tf.io.decode_raw(ex["image"], tf_dtype), (patch_px, patch_px, 1))
        mask = tf.reshape(tf.io.decode_raw(ex["mask"], tf.uint8), (patch_px, patch_px, 1))
        return {
            "patch_id": ex["patch_id"],
            "image": tf.cast(image, tf.float32) * scale,
            "mask": tf.cast(mask, tf.float32),
        }

    return parse


def records_dataset(
    patches: PatchSet,
    records: Sequence[PatchRecord],
    *,
    shuffle_files: bool = False,
    seed: int = 0,
    deterministic: bool = True,
    sequential: bool = False,
) -> Any:
    """Parsed ``{patch_id, image, mask}`` elements of exactly ``records``, streamed from
    their shards (only the shards that hold them are opened); ``sequential`` reads the
    shards one after the other (records in shard, offset order) instead of interleaved."""
    import tensorflow as tf

    if not records:
        raise PatchSetError(f"{patches.root}: no patch selected; check the manifest's splits and kinds")
    files = sorted({str(patches.layout.shard(r.shard)) for r in records})
    ids = sorted({r.patch_id for r in records})
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.ones(len(ids), tf.int32)), default_value=0
    )
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        files_ds = files_ds.shuffle(len(files), seed=seed)
    ds = files_ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=1 if sequential else 4,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    ds = ds.map(
        _parse_fn(patches.dtype, records[0].height),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    return ds.filter(lambda ex: table.lookup(ex["patch_id"]) > 0)


class Augmenter:
    """Albumentations transforms, seeded per element (one pipeline per thread, so
    tf.data's parallel calls never share random state)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._local = threading.local()

    def _pipeline(self) -> Any:
        pipeline = getattr(self._local, "pipeline", None)
        if pipeline is None:
            import albumentations as alb

            pipeline = alb.Compose(
                [
                    alb.HorizontalFlip(p=0.5),
                    alb.VerticalFlip(p=0.5),
                    alb.RandomRotate90(p=1.0),
                    alb.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
                    alb.GaussNoise(std_range=(0.01, 0.04), p=0.3),
                ]
            )
            self._local.pipeline = pipeline
        return pipeline

    def batch(
        self, images: np.ndarray, masks: np.ndarray, batch_index: np.int64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment a batch ``(B, H, W, 1)``; patch ``j`` gets index ``batch_index * B + j``."""
        out_images, out_masks = np.empty_like(images), np.empty_like(masks)
        first = int(batch_index) * len(images)
        for j in range(len(images)):
            out_images[j], out_masks[j] = self(images[j], masks[j], np.int64(first + j))
        return out_images, out_masks

    def __call__(self, image: np.ndarray, mask: np.ndarray, index: np.int64) -> tuple[np.ndarray, np.ndarray]:
        """Augment one patch; geometric transforms move image and mask together."""
        pipeline = self._pipeline()
        # One generator pair per patch, shared by all transforms so that they draw in turn
        # (seeding each transform alike would make them all fire together).
        generator = np.random.default_rng([self.seed & 0xFFFFFFFF, int(index)])
        py_random = random.Random(int(generator.integers(2**63)))
        pipeline.set_random_state(generator, py_random)
        for transform in pipeline.transforms:
            transform.set_random_state(generator, py_random)
        out = pipeline(image=image, mask=mask)
        return np.clip(out["image"], 0.0, 1.0).astype(np.float32), out["mask"].astype(np.float32)


def class_counts(batch_size: int, positive_fraction: float) -> tuple[int, int]:
    """Positives and negatives in every batch (at least one of each)."""
    positives = min(batch_size - 1, max(1, round(positive_fraction * batch_size)))
    return positives, batch_size - positives


def epoch_steps(n_positive: int, n_negative: int, cfg: DataConfig, replicas: int = 1) -> int:
    """Batches in one epoch: ``cfg.steps_per_epoch``, or one pass over the larger class
    when every step takes ``replicas`` per-replica batches (counts of the whole set)."""
    per_batch_pos, per_batch_neg = class_counts(cfg.batch_size, cfg.positive_fraction)
    return cfg.steps_per_epoch or max(
        1, math.ceil(max(n_positive / per_batch_pos, n_negative / per_batch_neg) / replicas)
    )


def training_dataset(
    patches: PatchSet,
    positives: Sequence[PatchRecord],
    negatives: Sequence[PatchRecord],
    cfg: DataConfig,
    seed: int,
    replicas: int = 1,
) -> tuple[Any, int]:
    """Endless balanced, augmented ``(image, mask)`` batches and the steps of one epoch.

    Each class stream is cached after the first pass, shuffled every pass and repeated; a
    fixed choice pattern takes ``k`` positives then ``batch_size - k`` negatives per batch.
    With ``replicas > 1`` (mirrored) a batch is ``replicas`` such per-replica batches one
    after the other, so each replica's slice of it is balanced too.

    Returns:
        ``(dataset, steps_per_epoch)``; one epoch is one pass over the larger class unless
        ``cfg.steps_per_epoch`` says otherwise.
    """
    import tensorflow as tf

    if not positives or not negatives:
        raise PatchSetError(
            f"{patches.root}: training needs impact and non-impact patches (got {len(positives)} and {len(negatives)}); check the train split"
        )
    n_pos, n_neg = class_counts(cfg.batch_size, cfg.positive_fraction)

    shuffle = cfg.shuffle_buffer > 1

    def stream(records: Sequence[PatchRecord], salt: int) -> Any:
        ds = records_dataset(
            patches,
            records,
            shuffle_files=shuffle,
            seed=seed + salt,
            deterministic=cfg.deterministic,
            sequential=not shuffle,
        )
        ds = ds.map(lambda ex: (ex["image"], ex["mask"])).cache()
        return ds.shuffle(
            min(cfg.shuffle_buffer, len(records)), seed=seed + salt, reshuffle_each_iteration=True
        ).repeat()

    batch_size = cfg.batch_size * replicas
    pattern = tf.data.Dataset.from_tensor_slices(
        tf.constant(([0] * n_pos + [1] * n_neg) * replicas, tf.int64)
    ).repeat()
    ds = tf.data.Dataset.choose_from_datasets([stream(positives, 1), stream(negatives, 2)], pattern)
    ds = ds.batch(batch_size, drop_remainder=True)
    if cfg.augment:
        # One numpy_function call per batch: its fixed cost (about 1 ms) per patch made the
        # pipeline a tenth of a CPU training step. Patch j of batch b gets index b*B + j.
        augment = Augmenter(seed)
        shape = (batch_size, records_px(positives), records_px(positives), 1)

        def apply(batch: tuple[Any, Any], index: Any) -> tuple[Any, Any]:
            images, masks = tf.numpy_function(
                augment.batch, [batch[0], batch[1], index], (tf.float32, tf.float32)
            )
            return tf.ensure_shape(images, shape), tf.ensure_shape(masks, shape)

        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.counter())
        ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=cfg.deterministic)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = cfg.deterministic
    ds = ds.with_options(options)
    steps = epoch_steps(len(positives), len(negatives), cfg, replicas)
    return ds, steps


def records_px(records: Sequence[PatchRecord]) -> int:
    """Patch side of a set of records (all the same)."""
    return records[0].height


def eval_dataset(
    patches: PatchSet, records: Sequence[PatchRecord], batch_size: int, whole_batches: bool = False
) -> Any:
    """``(image, mask)`` batches of ``records`` in shard order, cached (for validation).

    ``whole_batches`` drops the last, partial batch (mirrored replicas need equal slices of
    every batch; :func:`whole_batch_size` picks a size that drops few). The batches repeat
    pass after pass, so give Keras ``validation_steps`` (batches in one pass)."""
    import tensorflow as tf

    ds = records_dataset(patches, records).map(lambda ex: (ex["image"], ex["mask"]))
    ds = ds.cache().batch(batch_size, drop_remainder=whole_batches)
    return ds.repeat().prefetch(tf.data.AUTOTUNE)


def whole_batch_size(n_items: int, per_replica: int, replicas: int) -> int:
    """A batch of ``k * replicas`` items (``k <= per_replica``) that leaves the fewest of
    ``n_items`` in a partial last batch (the largest such batch on ties)."""
    k = min(range(1, per_replica + 1), key=lambda k: (n_items % (k * replicas), -k))
    return k * replicas


def iterate_patches(
    patches: PatchSet, records: Sequence[PatchRecord], batch_size: int
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """Batches of ``(patch_ids, images, masks)`` as numpy, streamed (mining, evaluation)."""
    import tensorflow as tf

    ds = records_dataset(patches, records).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    for batch in ds.as_numpy_iterator():
        yield [p.decode() for p in batch["patch_id"]], batch["image"], batch["mask"]
