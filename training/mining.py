"""Hard-negative mining: the pool patches the current model gets most wrong.

Only train-split ``pool`` patches are candidates; val and test patches can never be mined
(:func:`apply_mined` refuses them). The pool is predicted in batches and only the best
``quota`` scores are kept in a heap, so a pool of any size streams in bounded memory.

Score: the predicted impact area (share of pixels at or above the threshold), ties broken
by the highest probability. Pool patches hold no impact pixel, so every predicted pixel is
a false positive; the area ranks the false detections an analyst would see and have to
reject (crater rims, shadows, borders) above isolated hot pixels, and unlike the maximum
probability it does not saturate at 1 for many patches at once.
"""

from __future__ import annotations

import heapq
import logging
from typing import Any

import numpy as np
from tqdm import tqdm

from impacts.errors import PatchSetError
from tiling.patchset import MINED, MINING_POOL, TRAIN_SPLIT, PatchRecord, PatchSet, select
from training.config import MiningConfig
from training.data import iterate_patches
from training.distribute import Distribution

log = logging.getLogger(__name__)


def mining_quota(n_base: int, n_mined: int, top_n: int, max_share: float) -> int:
    """How many patches a round may add: at most ``top_n``, and mined patches may not
    exceed ``max_share`` of the training set (``mined / (base + mined) <= max_share``)."""
    allowed_total = int(np.floor(max_share * n_base / (1 - max_share) + 1e-9))
    return max(0, min(top_n, allowed_total - n_mined))


def score_patches(probs: np.ndarray, threshold: float, how: str) -> np.ndarray:
    """Score each patch of a batch ``(N, H, W[, 1])`` of impact probabilities."""
    flat = probs.reshape(len(probs), -1)
    peak = flat.max(axis=1)
    if how == "max":
        return peak
    return (flat >= threshold).mean(axis=1) + 1e-6 * peak


def mining_candidates(records: list[PatchRecord]) -> list[PatchRecord]:
    """The pool: unused train negatives (never val or test)."""
    return select(records, TRAIN_SPLIT, (MINING_POOL,))


def mine_pool(
    model: Any, patches: PatchSet, cfg: MiningConfig, quota: int, dist: Distribution | None = None
) -> list[tuple[str, float]]:
    """Predict the pool in batches and return the ``quota`` worst ``(patch_id, score)``,
    worst first. Only false positives qualify (a patch with at least one pixel at or above
    the threshold), so a good model may mine fewer than ``quota``.

    With several processes (``dist``), each predicts its own shard of the pool and the
    ranks' best lists are gathered, so every rank returns the same patches."""
    dist = dist or Distribution()
    pool = dist.shard(mining_candidates(patches.records))
    best: list[tuple[float, str]] = []
    if quota > 0 and pool:
        best = _worst(model, patches, pool, cfg, quota, show=dist.is_chief)
    gathered = [item for part in dist.allgather_object(best) for item in part]
    # Ties broken by patch id, so every rank ranks alike.
    worst = sorted(gathered, key=lambda item: (-item[0], item[1]))[: max(quota, 0)]
    return [(patch_id, score) for score, patch_id in worst]


def _worst(
    model: Any, patches: PatchSet, pool: list[PatchRecord], cfg: MiningConfig, quota: int, show: bool
) -> list[tuple[float, str]]:
    best: list[tuple[float, str]] = []
    with tqdm(total=len(pool), desc="mining pool", unit="patch", disable=None if show else True) as bar:
        for ids, images, _ in iterate_patches(patches, pool, cfg.batch_size):
            probs = np.asarray(model.predict_on_batch(images))
            scores = score_patches(probs, cfg.threshold, cfg.score).tolist()
            wrong = (probs.reshape(len(probs), -1).max(axis=1) >= cfg.threshold).tolist()
            for patch_id, score, is_false_positive in zip(ids, scores, wrong, strict=True):
                if not is_false_positive:
                    continue
                if len(best) < quota:
                    heapq.heappush(best, (score, patch_id))
                elif score > best[0][0]:
                    heapq.heapreplace(best, (score, patch_id))
            bar.update(len(ids))
    return best


def apply_mined(
    records: list[PatchRecord], mined: list[tuple[str, float]], round_index: int, model_version: str
) -> int:
    """Turn the mined pool records into ``mined`` ones with their round, score and model.

    Returns:
        How many records changed.

    Raises:
        PatchSetError: A mined id is not a train pool patch (val and test are never mined).
    """
    by_id = {r.patch_id: r for r in records}
    seen: set[str] = set()
    for patch_id, _ in mined:  # check everything first: a refused id changes nothing
        record = by_id.get(patch_id)
        if record is None or record.split != TRAIN_SPLIT or record.kind != MINING_POOL or patch_id in seen:
            where = (
                "twice"
                if patch_id in seen
                else "unknown"
                if record is None
                else f"{record.split}/{record.kind}"
            )
            raise PatchSetError(
                f"patch {patch_id} ({where}) cannot be mined: only train pool patches can, once"
            )
        seen.add(patch_id)
    for patch_id, score in mined:
        record = by_id[patch_id]
        record.kind = MINED
        record.round = round_index
        record.score = float(score)
        record.model_version = model_version
    return len(mined)
