"""The tf.data input on a real (tiny) patch set: balanced batches, value ranges,
determinism, augmentation that keeps image and mask aligned, and record selection."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from impacts.errors import PatchSetError
from tiling.patchset import NEGATIVE_KINDS, POSITIVE_KINDS, PatchSet
from training.config import DataConfig
from training.data import Augmenter, class_counts, records_dataset, training_dataset

PATCH_PX = 128


def _batches(patches: PatchSet, cfg: DataConfig, seed: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    ds, _ = training_dataset(
        patches, patches.select("train", POSITIVE_KINDS), patches.select("train", NEGATIVE_KINDS), cfg, seed
    )
    return list(ds.take(n).as_numpy_iterator())


def test_the_patch_set_has_both_classes_and_a_pool(patches: PatchSet) -> None:
    """Guards the fixture: the tests below need each of these to mean something."""
    assert patches.dtype == "uint8"
    assert len(patches.select("train", POSITIVE_KINDS)) >= 16
    assert len(patches.select("train", NEGATIVE_KINDS)) >= 16
    assert len(patches.select("train", ("pool",))) >= 20
    assert patches.select("val", POSITIVE_KINDS) and patches.select("test", POSITIVE_KINDS)


@pytest.mark.parametrize(("batch_size", "positive_fraction"), [(8, 0.5), (8, 0.25), (6, 0.5)])
def test_every_batch_holds_exactly_the_configured_impact_patches(
    patches: PatchSet, batch_size: int, positive_fraction: float
) -> None:
    cfg = DataConfig(batch_size=batch_size, positive_fraction=positive_fraction, shuffle_buffer=64)
    n_pos, _ = class_counts(batch_size, positive_fraction)
    batches = _batches(patches, cfg, seed=1, n=10)
    assert len(batches) == 10
    for images, masks in batches:
        assert images.shape == masks.shape == (batch_size, PATCH_PX, PATCH_PX, 1)
        with_impact = int((masks.reshape(batch_size, -1).max(axis=1) > 0).sum())
        assert with_impact == n_pos


def test_class_counts_keep_one_of_each_class() -> None:
    assert class_counts(8, 0.5) == (4, 4)
    assert class_counts(8, 0.25) == (2, 6)
    assert class_counts(4, 0.01) == (1, 3)
    assert class_counts(4, 0.99) == (3, 1)


def test_images_are_float32_in_unit_range_and_masks_are_binary(patches: PatchSet) -> None:
    for augment in (True, False):
        cfg = DataConfig(batch_size=8, augment=augment, shuffle_buffer=64)
        for images, masks in _batches(patches, cfg, seed=2, n=3):
            assert images.dtype == masks.dtype == np.float32
            assert images.shape == masks.shape == (8, PATCH_PX, PATCH_PX, 1)
            assert images.min() >= 0.0 and images.max() <= 1.0
            assert images.max() > 0.2, "images are not all black"
            assert set(np.unique(masks)) <= {0.0, 1.0}


def test_deterministic_batches_repeat_with_the_seed_and_change_with_another(patches: PatchSet) -> None:
    cfg = DataConfig(batch_size=8, deterministic=True, shuffle_buffer=64)
    first = _batches(patches, cfg, seed=7, n=3)
    again = _batches(patches, cfg, seed=7, n=3)
    other = _batches(patches, cfg, seed=8, n=3)
    for (a_img, a_mask), (b_img, b_mask) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_mask, b_mask)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def _dihedral(mask: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/90-degree rotations of a (H, W, 1) array."""
    out = []
    for k in range(4):
        rotated = np.rot90(mask, k, axes=(0, 1))
        out += [rotated, rotated[:, ::-1]]
    return out


def _l_shape() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """An asymmetric L mask (every flip/rotation looks different), its image, its 8 poses."""
    mask = np.zeros((32, 32, 1), dtype=np.float32)
    mask[3:9, 4:20] = 1.0
    mask[9:25, 4:8] = 1.0
    poses = _dihedral(mask)
    assert len({p.tobytes() for p in poses}) == 8
    return mask, mask * 0.9 + 0.05, poses


def _poses_seen(n: int) -> set[int]:
    mask, image, poses = _l_shape()
    augment = Augmenter(seed=4)
    seen = set()
    for index in range(n):
        _, out_mask = augment(image.copy(), mask.copy(), np.int64(index))
        seen |= {i for i, p in enumerate(poses) if np.array_equal(out_mask, p)}
    return seen


def test_augmentation_moves_image_and_mask_together() -> None:
    mask, image, poses = _l_shape()
    augment = Augmenter(seed=4)
    seen = set()
    intensity_changed = False
    for index in range(40):
        out_image, out_mask = augment(image.copy(), mask.copy(), np.int64(index))
        assert out_image.dtype == out_mask.dtype == np.float32
        assert out_image.shape == out_mask.shape == mask.shape
        pose = [i for i, p in enumerate(poses) if np.array_equal(out_mask, p)]
        assert len(pose) == 1, f"element {index}: the mask is not a flip/rotation of the input"
        seen.add(pose[0])
        # brightness, contrast and noise change intensities, never where the bright pixels sit
        np.testing.assert_array_equal(out_image > 0.5, out_mask > 0.5, err_msg=f"element {index}")
        intensity_changed |= not np.allclose(out_image, poses[pose[0]] * 0.9 + 0.05)
    assert len(seen) >= 4, f"only poses {sorted(seen)} in 40 draws: the geometry hardly changes"
    assert intensity_changed, "no photometric augmentation happened"


def test_augmentation_reaches_all_eight_flips_and_rotations() -> None:
    seen = _poses_seen(64)
    assert seen == set(range(8)), f"poses {sorted(seen)} of 8 in 64 draws"


def test_augmentation_is_reproducible_per_seed_and_index() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((16, 16, 1), dtype=np.float32)
    mask = (image > 0.7).astype(np.float32)
    a = Augmenter(seed=1)(image.copy(), mask.copy(), np.int64(3))
    b = Augmenter(seed=1)(image.copy(), mask.copy(), np.int64(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    outputs = [Augmenter(seed=s)(image.copy(), mask.copy(), np.int64(i))[0] for s, i in [(1, 4), (2, 3)]]
    assert all(not np.array_equal(a[0], o) for o in outputs)


def test_records_dataset_yields_exactly_the_selected_patches(patches: PatchSet) -> None:
    pool = patches.select("train", ("pool",))
    chosen = pool[::40][:5]
    assert len({r.shard for r in chosen}) > 1, "the choice spans several shards"
    elements = list(records_dataset(patches, chosen).as_numpy_iterator())
    ids = [e["patch_id"].decode() for e in elements]
    assert sorted(ids) == sorted(r.patch_id for r in chosen)
    for e in elements:
        assert e["image"].shape == (PATCH_PX, PATCH_PX, 1)
        assert e["mask"].max() == 0.0, "pool patches hold no impact"


def test_records_dataset_refuses_an_empty_selection(patches: PatchSet) -> None:
    with pytest.raises(PatchSetError, match="no patch selected"):
        records_dataset(patches, [])


def test_loading_a_folder_without_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PatchSetError) as info:
        PatchSet.load(tmp_path)
    assert str(tmp_path / "manifest.csv") in str(info.value)


def test_training_needs_both_classes(patches: PatchSet) -> None:
    with pytest.raises(PatchSetError, match="impact and non-impact"):
        training_dataset(patches, patches.select("train", POSITIVE_KINDS), [], DataConfig(), 0)
