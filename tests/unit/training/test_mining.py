"""Hard-negative mining: quota arithmetic, scores, candidates, applying a round, and
mining a real pool with a fake model whose worst patches are known."""

from __future__ import annotations

import copy
import os
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from impacts.errors import PatchSetError
from tiling.patchset import PatchRecord, PatchSet
from training.config import MiningConfig
from training.data import iterate_patches
from training.mining import apply_mined, mine_pool, mining_candidates, mining_quota, score_patches

# --- quota -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_base", "n_mined", "top_n", "max_share", "expected"),
    [
        (100, 0, 200, 0.4, 66),  # share binds: 66 / 166 <= 0.4 < 67 / 167
        (100, 0, 10, 0.4, 10),  # top_n binds
        (1000, 100, 500, 0.4, 500),  # room for 566 more, top_n binds
        (100, 60, 200, 0.4, 6),  # already mined count against the share
        (100, 66, 200, 0.4, 0),  # exactly at the share
        (100, 80, 200, 0.4, 0),  # beyond the share (e.g. max_share lowered): never negative
        (60, 0, 500, 0.5, 60),  # the boundary itself is allowed
        (3, 0, 5, 0.4, 2),  # 0.4 * 3 / 0.6 = 2 despite float round-off
        (1, 0, 5, 0.4, 0),
        (0, 0, 10, 0.4, 0),  # nothing to balance against
    ],
)
def test_mining_quota_table(n_base: int, n_mined: int, top_n: int, max_share: float, expected: int) -> None:
    quota = mining_quota(n_base, n_mined, top_n, max_share)
    assert quota == expected
    assert quota <= top_n
    if quota:
        assert (n_mined + quota) / (n_base + n_mined + quota) <= max_share


@given(
    n_base=st.integers(0, 10_000),
    n_mined=st.integers(0, 10_000),
    top_n=st.integers(1, 5_000),
    share_pct=st.integers(1, 99),
)
def test_mining_quota_is_the_largest_allowed(n_base: int, n_mined: int, top_n: int, share_pct: int) -> None:
    share = Fraction(share_pct, 100)

    def within(extra: int) -> bool:
        total = n_base + n_mined + extra
        return total == 0 or Fraction(n_mined + extra, total) <= share

    quota = mining_quota(n_base, n_mined, top_n, share_pct / 100)
    assert 0 <= quota <= top_n
    if quota:
        assert within(quota)
    if quota < top_n and within(0):
        assert not within(quota + 1), "one more patch would still have been allowed"


# --- scores ----------------------------------------------------------------------------


def _blob_and_hot_pixel() -> np.ndarray:
    """Patch 0: a 6x6 blob at 0.8; patch 1: one pixel at 0.99; shape (2, 32, 32, 1)."""
    probs = np.full((2, 32, 32, 1), 0.02, dtype=np.float32)
    probs[0, 10:16, 10:16] = 0.8
    probs[1, 20, 5] = 0.99
    return probs


def test_area_score_ranks_a_large_blob_above_a_hot_pixel() -> None:
    scores = score_patches(_blob_and_hot_pixel(), threshold=0.5, how="area")
    assert scores[0] > scores[1]
    assert scores[0] == pytest.approx(36 / 1024, abs=1e-5), "the share of predicted pixels"


def test_max_score_ranks_the_hot_pixel_above_the_blob() -> None:
    scores = score_patches(_blob_and_hot_pixel(), threshold=0.5, how="max")
    assert scores[1] > scores[0]
    np.testing.assert_allclose(scores, [0.8, 0.99])


def test_area_ties_are_broken_by_the_highest_probability() -> None:
    probs = np.zeros((2, 8, 8), dtype=np.float32)
    probs[0, :2, :2] = 0.6
    probs[1, 4:6, 4:6] = 0.9
    scores = score_patches(probs, threshold=0.5, how="area")
    assert scores[1] > scores[0]


# --- candidates and applying a round ---------------------------------------------------


def _record(patch_id: str, split: str, kind: str) -> PatchRecord:
    return PatchRecord(
        patch_id=patch_id,
        scene=f"scene-{split}",
        row=0,
        col=0,
        height=128,
        width=128,
        split=split,
        kind=kind,
        impact_fraction=0.1 if kind == "positive" else 0.0,
        nodata_fraction=0.0,
        shard=f"parts/scene-{split}/x.tfrecord",
        offset=0,
    )


def _manifest() -> list[PatchRecord]:
    return [
        _record(f"{split}-{kind}", split, kind)
        for split in ("train", "val", "test")
        for kind in ("positive", "negative", "pool", "mined", "reviewed")
    ] + [_record("train-pool-2", "train", "pool")]


def _same(a: list[PatchRecord], b: list[PatchRecord]) -> bool:
    """Equal records (NaN scores compare equal)."""
    return [repr(r) for r in a] == [repr(r) for r in b]


def test_candidates_are_only_train_pool_patches() -> None:
    records = _manifest()
    assert [r.patch_id for r in mining_candidates(records)] == ["train-pool", "train-pool-2"]


def test_apply_mined_marks_round_score_and_model() -> None:
    records = _manifest()
    before = copy.deepcopy(records)
    assert apply_mined(records, [("train-pool-2", 0.25)], 3, "run-r2") == 1
    mined = next(r for r in records if r.patch_id == "train-pool-2")
    assert (mined.kind, mined.round, mined.score, mined.model_version) == ("mined", 3, 0.25, "run-r2")
    others = [r for r in records if r.patch_id != "train-pool-2"]
    assert _same(others, [r for r in before if r.patch_id != "train-pool-2"])
    assert [r.patch_id for r in mining_candidates(records)] == ["train-pool"]


@pytest.mark.parametrize(
    "patch_id", ["val-pool", "test-pool", "val-negative", "test-negative", "train-positive", "nope"]
)
def test_apply_mined_refuses_anything_but_a_train_pool_patch(patch_id: str) -> None:
    records = _manifest()
    before = copy.deepcopy(records)
    with pytest.raises(PatchSetError, match=patch_id):
        apply_mined(records, [(patch_id, 0.5)], 1, "v")
    assert _same(records, before)


def test_apply_mined_refuses_a_patch_mined_twice() -> None:
    records = _manifest()
    apply_mined(records, [("train-pool", 0.5)], 1, "v1")
    with pytest.raises(PatchSetError, match="train-pool"):
        apply_mined(records, [("train-pool", 0.7)], 2, "v2")
    mined = next(r for r in records if r.patch_id == "train-pool")
    assert (mined.round, mined.score, mined.model_version) == (1, 0.5, "v1")


def test_apply_mined_changes_nothing_when_any_id_is_refused() -> None:
    records = _manifest()
    before = copy.deepcopy(records)
    with pytest.raises(PatchSetError, match="val-pool"):
        apply_mined(records, [("train-pool", 0.9), ("val-pool", 0.8)], 1, "v")
    assert _same(records, before)


# --- mining a real pool ----------------------------------------------------------------


class HashModel:
    """A fake model that knows each patch by its pixels: it predicts a blob of ``area[id]``
    pixels (0 when the id is not listed) and logs every patch it is asked about."""

    def __init__(self, ids_by_image: dict[bytes, str], area: dict[str, int]) -> None:
        self.ids_by_image = ids_by_image
        self.area = area
        self.seen: list[str] = []

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        probs = np.zeros(images.shape, dtype=np.float32)
        for i, image in enumerate(images):
            patch_id = self.ids_by_image[image.tobytes()]
            self.seen.append(patch_id)
            probs[i].reshape(-1)[: self.area.get(patch_id, 0)] = 0.9
            probs[i, -1, -1] = 0.45  # below the threshold everywhere: never counted
        return probs


@pytest.fixture
def hash_model(patches: PatchSet) -> HashModel:
    """Tempting blobs on val/test patches (must never be mined), and five planted pool
    patches with known areas; every other pool patch predicts nothing."""
    ids_by_image: dict[bytes, str] = {}
    for ids, images, _ in iterate_patches(patches, patches.records, 64):
        for patch_id, image in zip(ids, images, strict=True):
            assert image.tobytes() not in ids_by_image, "two patches with identical pixels"
            ids_by_image[image.tobytes()] = patch_id
    pool = [r.patch_id for r in mining_candidates(patches.records)]
    planted = {pool[5]: 300, pool[150]: 900, pool[77]: 600, pool[-1]: 100, pool[30]: 50}
    tempting = {r.patch_id: 5000 for r in patches.records if r.split in ("val", "test")}
    return HashModel(ids_by_image, {**planted, **tempting})


def test_mine_pool_returns_the_quota_worst_worst_first(patches: PatchSet, hash_model: HashModel) -> None:
    pool = [r.patch_id for r in mining_candidates(patches.records)]
    cfg = MiningConfig(score="area", threshold=0.5, batch_size=16)
    mined = mine_pool(hash_model, patches, cfg, quota=3)
    assert [patch_id for patch_id, _ in mined] == [pool[150], pool[77], pool[5]]
    np.testing.assert_allclose(
        [score for _, score in mined], np.array([900, 600, 300]) / 128**2 + 1e-6 * 0.9, rtol=1e-6
    )
    assert sorted(hash_model.seen) == sorted(pool), "each pool patch predicted once, nothing else"


def test_mine_pool_never_looks_at_val_or_test(patches: PatchSet, hash_model: HashModel) -> None:
    held_out = {r.patch_id for r in patches.records if r.split != "train"}
    mined = mine_pool(hash_model, patches, MiningConfig(batch_size=64), quota=50)
    # Only the five planted pool patches are false positives; the rest predict nothing.
    assert len(mined) == 5
    assert not held_out & {patch_id for patch_id, _ in mined}
    assert not held_out & set(hash_model.seen)
    scores = [score for _, score in mined]
    assert scores == sorted(scores, reverse=True)


def test_patches_without_a_predicted_impact_pixel_are_never_mined(
    patches: PatchSet, hash_model: HashModel
) -> None:
    hash_model.area = {}  # a model that is right everywhere: nothing to mine
    assert mine_pool(hash_model, patches, MiningConfig(batch_size=64), quota=50) == []
    assert len(hash_model.seen) == len(mining_candidates(patches.records))


def test_mine_pool_with_no_quota_predicts_nothing(patches: PatchSet, hash_model: HashModel) -> None:
    assert mine_pool(hash_model, patches, MiningConfig(), quota=0) == []
    assert hash_model.seen == []


def test_mined_round_feeds_the_training_negatives(patches: PatchSet, hash_model: HashModel) -> None:
    from tiling.patchset import NEGATIVE_KINDS

    negatives_before = len(patches.select("train", NEGATIVE_KINDS))
    mined = mine_pool(hash_model, patches, MiningConfig(batch_size=32), quota=4)
    assert apply_mined(patches.records, mined, 1, "run-r0") == 4
    assert len(patches.select("train", NEGATIVE_KINDS)) == negatives_before + 4
    assert {r.patch_id for r in patches.select("train", ("mined",))} == {p for p, _ in mined}
