from __future__ import annotations

import pytest

from impacts.errors import ConfigError
from tiling.config import SplitConfig
from tiling.splits import assign_splits

SCENES = [f"S{i:02d}" for i in range(10)]


def test_every_scene_in_exactly_one_split_with_configured_shares() -> None:
    splits = assign_splits(SCENES, SplitConfig(val_fraction=0.2, test_fraction=0.3), seed=1)
    assert sorted(splits) == SCENES
    counts = {s: list(splits.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 5, "val": 2, "test": 3}


def test_splits_are_reproducible_and_independent_of_listing_order() -> None:
    cfg = SplitConfig()
    assert assign_splits(SCENES, cfg, 3) == assign_splits(list(reversed(SCENES)), cfg, 3)
    assert any(assign_splits(SCENES, cfg, seed) != assign_splits(SCENES, cfg, 3) for seed in range(4, 10))


def test_named_scenes_go_where_asked_and_shares_count_them() -> None:
    cfg = SplitConfig(test_fraction=0.2, val_fraction=0.2, test_scenes=["S03", "S07"], val_scenes=["S00"])
    splits = assign_splits(SCENES, cfg, 0)
    assert splits["S03"] == splits["S07"] == "test" and splits["S00"] == "val"
    assert list(splits.values()).count("test") == 2
    assert list(splits.values()).count("val") == 2


def test_three_scenes_give_one_per_split_and_unknown_names_are_errors() -> None:
    assert sorted(assign_splits(["a", "b", "c"], SplitConfig(), 0).values()) == ["test", "train", "val"]
    with pytest.raises(ConfigError, match="S99"):
        assign_splits(SCENES, SplitConfig(test_scenes=["S99"]), 0)
