"""Scene-level train/val/test splits: no scene ever lands in two splits."""

from __future__ import annotations

import logging

from sklearn.model_selection import GroupShuffleSplit

from impacts.errors import ConfigError
from tiling.config import SplitConfig
from tiling.patchset import SPLITS, Split

log = logging.getLogger(__name__)


def _wanted(fraction: float, total: int) -> int:
    """Scenes a split should get: the rounded share, at least one when the share is
    positive and there are enough scenes for three splits."""
    if fraction <= 0:
        return 0
    return max(round(fraction * total), 1 if total >= 3 else 0)


def _take(names: list[str], count: int, seed: int) -> tuple[list[str], list[str]]:
    """Split ``names`` into (rest, taken) with ``count`` scenes drawn by scene group."""
    if count <= 0 or not names:
        return names, []
    count = min(count, len(names) - 1) if len(names) > 1 else 0
    if count == 0:
        return names, []
    splitter = GroupShuffleSplit(n_splits=1, test_size=count, random_state=seed)
    rest_idx, take_idx = next(splitter.split(names, groups=names))
    return sorted(names[i] for i in rest_idx), sorted(names[i] for i in take_idx)


def assign_splits(scenes: list[str], cfg: SplitConfig, seed: int) -> dict[str, Split]:
    """Assign every scene to one split, reproducibly from ``seed``.

    Scenes named in ``cfg.test_scenes``/``cfg.val_scenes`` go there; the rest are drawn with
    scikit-learn's ``GroupShuffleSplit`` (one group per scene) so that test and val get
    about their configured shares of all scenes. The result depends only on the set of
    names, not their order, so every LSF array element computes the same assignment.

    Raises:
        ConfigError: An explicitly named scene is not among ``scenes``.
    """
    names = sorted(set(scenes))
    unknown = sorted(set(cfg.test_scenes + cfg.val_scenes) - set(names))
    if unknown:
        raise ConfigError(
            f"split names scenes that are not in the scene folder: {', '.join(unknown)}; check the names (without .tif)"
        )
    rest = [n for n in names if n not in cfg.test_scenes and n not in cfg.val_scenes]
    rest, test = _take(rest, _wanted(cfg.test_fraction, len(names)) - len(cfg.test_scenes), seed)
    rest, val = _take(rest, _wanted(cfg.val_fraction, len(names)) - len(cfg.val_scenes), seed + 1)
    out: dict[str, Split] = {n: "train" for n in rest}
    out.update({n: "test" for n in [*test, *cfg.test_scenes]})
    out.update({n: "val" for n in [*val, *cfg.val_scenes]})
    for split in SPLITS:
        if not any(s == split for s in out.values()):
            log.warning(
                "split %s has no scene (%d scenes in all); add scenes or name them explicitly",
                split,
                len(names),
            )
    return out
