"""Distribution strategies: the pure rules (sharding, learning-rate scaling, strategy
choice, batch sizes) and what each strategy changes in the model and the input."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tiling.patchset import NEGATIVE_KINDS, POSITIVE_KINDS, PatchSet
from training.config import DataConfig, DistributeConfig, ModelConfig, TrainConfig
from training.data import epoch_steps, training_dataset, whole_batch_size
from training.distribute import (
    Distribution,
    launched_processes,
    lr_factor,
    rank_shard,
    resolve_strategy,
    setup_distribution,
)


@given(st.lists(st.integers(), max_size=60), st.integers(1, 8))
def test_rank_shards_are_disjoint_cover_everything_and_are_even(items: list[int], size: int) -> None:
    shards = [rank_shard(list(enumerate(items)), rank, size, key=lambda x: x[0]) for rank in range(size)]
    flat = sorted(x for shard in shards for x in shard)
    assert flat == list(enumerate(items))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_rank_shards_interleave_the_global_order() -> None:
    """Rank r's k-th item is the global k*size + r-th: equal per-rank batches of the
    shards together make the one-process batch (the 1-rank vs N-rank comparison)."""
    order = list(range(10))
    assert rank_shard(order, 0, 2) == [0, 2, 4, 6, 8]
    assert rank_shard(order, 1, 2) == [1, 3, 5, 7, 9]


def test_learning_rate_scaling_rules() -> None:
    assert lr_factor("none", 4) == 1.0
    assert lr_factor("linear", 4) == 4.0
    assert lr_factor("sqrt", 4) == 2.0
    assert lr_factor("linear", 1) == 1.0


def test_auto_picks_horovod_under_a_launcher_then_mirrored_on_several_gpus() -> None:
    assert resolve_strategy("auto", gpus=4, processes=8) == "horovod"
    assert resolve_strategy("auto", gpus=4, processes=1) == "mirrored"
    assert resolve_strategy("auto", gpus=1, processes=1) == "single"
    assert resolve_strategy("auto", gpus=0, processes=1) == "single"
    assert resolve_strategy("single", gpus=4, processes=1) == "single"


def test_launcher_job_size_is_read_from_mpi_or_horovodrun_variables() -> None:
    assert launched_processes({}) == 1
    assert launched_processes({"OMPI_COMM_WORLD_SIZE": "8"}) == 8
    assert launched_processes({"HOROVOD_SIZE": "2"}) == 2
    assert launched_processes({"PMI_SIZE": "x"}) == 1


@given(st.integers(1, 500), st.integers(1, 32), st.integers(1, 8))
def test_whole_batches_split_evenly_and_lose_least(n: int, per_replica: int, replicas: int) -> None:
    batch = whole_batch_size(n, per_replica, replicas)
    assert batch % replicas == 0 and batch <= per_replica * replicas
    dropped = n % batch
    assert all(dropped <= n % (k * replicas) for k in range(1, per_replica + 1))


def test_steps_per_epoch_count_the_whole_set_across_replicas() -> None:
    cfg = DataConfig(batch_size=8, positive_fraction=0.5)
    assert epoch_steps(64, 100, cfg) == math.ceil(100 / 4)
    assert epoch_steps(64, 100, cfg, replicas=4) == math.ceil(100 / 16)
    assert epoch_steps(64, 100, DataConfig(batch_size=8, steps_per_epoch=7), replicas=4) == 7


def test_mirrored_global_batches_are_balanced_in_every_replica_slice(patches: PatchSet) -> None:
    cfg = DataConfig(batch_size=8, positive_fraction=0.5, augment=False, deterministic=True)
    ds, _ = training_dataset(
        patches,
        patches.select("train", POSITIVE_KINDS),
        patches.select("train", NEGATIVE_KINDS),
        cfg,
        seed=1,
        replicas=2,
    )
    for _, masks in ds.take(3).as_numpy_iterator():
        assert masks.shape[0] == 16
        for replica in (masks[:8], masks[8:]):  # Keras hands each replica one contiguous slice
            has_impact = replica.reshape(8, -1).max(axis=1) > 0
            assert has_impact[:4].all() and not has_impact[4:].any()


def test_single_distribution_shares_nothing_and_is_chief() -> None:
    dist = setup_distribution(DistributeConfig(strategy="single"))
    assert (dist.rank, dist.size, dist.replicas, dist.is_chief) == (0, 1, 1, True)
    assert dist.shard([1, 2, 3]) == [1, 2, 3]  # type: ignore[list-item]
    assert dist.allgather_object("x") == ["x"] and dist.broadcast_object(5) == 5


def test_horovod_without_horovod_installed_says_how_to_build_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from impacts.errors import ConfigError

    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)
    with pytest.raises(ConfigError, match="make horovod"):
        setup_distribution(DistributeConfig(strategy="horovod"))


def test_mixed_precision_computes_in_float16_with_loss_scaling_and_a_float32_output() -> None:
    import keras

    from training.train import build_compiled_model

    cfg = TrainConfig(model=ModelConfig(depth=2, base_filters=4), precision="mixed_float16")
    model = build_compiled_model(cfg, steps_per_epoch=2, dist=Distribution())
    conv = model.get_layer("down0_conv1")
    assert conv.compute_dtype == "float16" and conv.variable_dtype == "float32"
    assert model.output.dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the global policy is restored
    x = np.random.default_rng(0).random((4, 32, 32, 1), dtype=np.float32)
    y = (x > 0.9).astype(np.float32)
    history = model.fit(x, y, epochs=2, batch_size=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))


def test_learning_rate_is_scaled_for_the_replicas_as_configured() -> None:
    from training.train import build_compiled_model

    class FourReplicas(Distribution):
        @property
        def replicas(self) -> int:
            return 4

    cfg = TrainConfig(
        model=ModelConfig(depth=2, base_filters=4), distribute=DistributeConfig(lr_scaling="linear")
    )
    cfg.optimizer.decay = "none"
    model = build_compiled_model(cfg, steps_per_epoch=2, dist=FourReplicas())
    assert float(model.optimizer.learning_rate) == pytest.approx(4 * cfg.optimizer.learning_rate)
