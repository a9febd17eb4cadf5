"""Hard-negative mining: the patches the current model gets most wrong.

:func:`mine_round` runs one round from ``mining.source``: the pool (this module), the false
candidates of whole train scenes (:mod:`training.scene_mining`), or both. Pool mining: only train-split ``pool`` patches are candidates; val and test patches can never be mined
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
import math
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from impacts.errors import PatchSetError
from tiling.patchset import MINED, MINING_BASE_KINDS, MINING_POOL, TRAIN_SPLIT, PatchRecord, PatchSet, select
from training.config import MiningConfig, TrainConfig
from training.data import iterate_patches
from training.distribute import Distribution
from training.scene_mining import mine_scenes

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


def mine_round(
    model: Any,
    patches: PatchSet,
    cfg: TrainConfig,
    out: Path,
    round_index: int,
    version: str,
    dist: Distribution,
) -> dict[str, Any]:
    """Mine one round's hard negatives into ``patches.records`` (``mining.source``: the pool,
    the whole train scenes, or both) and return the round's report entries: ``mined`` (all),
    ``mined_pool`` and ``mined_scenes`` (:meth:`training.scene_mining.SceneMiningResult.summary`)."""
    base = len(patches.select(TRAIN_SPLIT, MINING_BASE_KINDS))
    already = len(patches.select(TRAIN_SPLIT, (MINED,)))
    quota = mining_quota(base, already, cfg.mining.top_n, cfg.mining.max_share)
    report: dict[str, Any] = {}
    from_scenes = 0
    if cfg.mining.source != "pool":
        scene_quota = quota if cfg.mining.source == "scenes" else math.ceil(quota * cfg.mining.scene_share)
        result = None
        if dist.is_chief:  # one process predicts the train scenes; the others get its records
            result = mine_scenes(model, version, patches, cfg, out, round_index, scene_quota)
        records, summary = dist.broadcast_object(
            (result.records, result.summary()) if result is not None else ([], {})
        )
        patches.records.extend(records)
        from_scenes = len(records)
        quota -= from_scenes
        report["mined_scenes"] = summary
    count = 0
    if cfg.mining.source != "scenes":
        mined = mine_pool(model, patches, cfg.mining, quota, dist)
        count = apply_mined(patches.records, mined, round_index, version)
        log.info(
            "round %d: mined %d of %d pool patches (quota %d; scores %s)",
            round_index,
            count,
            len(mining_candidates(patches.records)) + count,
            quota,
            f"{mined[0][1]:.4f}..{mined[-1][1]:.4f}" if mined else "-",
        )
        report["mined_pool"] = count
    report["mined"] = count + from_scenes
    return report
