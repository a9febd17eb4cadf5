"""Distribution strategies: how devices and processes cooperate in one training run.

The trainer has one code path for the model, the data and the callbacks; a
:class:`Distribution` only answers the questions where strategies differ:

- ``single``: one device, one process.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over the GPUs of one node (or
  ``cpu_replicas`` logical CPU devices where there is no GPU, for tests). One process;
  Keras splits every global batch (per-replica batch x replicas) across the replicas and
  sums their gradients.
- ``horovod``: one process per GPU, started by ``mpirun`` or ``horovodrun``. Each rank
  pins its local GPU, reads its own shard of the data (:meth:`Distribution.shard`),
  starts from rank 0's weights, and averages gradients every step (an all-reduce inside
  the optimizer's ``apply``). Only rank 0 writes files. BatchNorm moving statistics and
  the epoch's logs are averaged over the ranks at every epoch end and before validation,
  so early stopping and checkpoints take the same decision on every rank and all ranks
  end with identical weights.

Known Keras 3 pitfalls this module avoids: Horovod's
``horovod.tensorflow.keras.DistributedOptimizer`` does not average Keras 3 gradients
and ``BroadcastGlobalVariablesCallback`` fails; gradients are averaged with
``hvd.grouped_allreduce`` in ``apply()`` and broadcasts use the raw TensorFlow
variables (``v.value``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from impacts.errors import ConfigError
from tiling.patchset import PatchRecord
from training.config import DistributeConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Environment variables by which MPI launchers and horovodrun tell a process the job size.
LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "HOROVOD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")


def lr_factor(rule: str, replicas: int) -> float:
    """Learning-rate multiplier for ``replicas`` replicas: 1 (none), R (linear), sqrt(R)."""
    if rule == "linear":
        return float(replicas)
    if rule == "sqrt":
        return math.sqrt(replicas)
    return 1.0


def launched_processes(environ: dict[str, str] | None = None) -> int:
    """Processes in the job as told by an MPI launcher or horovodrun (1 if none)."""
    env = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE_VARS:
        value = env.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def resolve_strategy(requested: str, gpus: int, processes: int) -> str:
    """The strategy ``auto`` stands for: horovod under a multi-process launcher,
    mirrored on a node with several GPUs, else single."""
    if requested != "auto":
        return requested
    if processes > 1:
        return "horovod"
    return "mirrored" if gpus > 1 else "single"


def rank_shard(records: Sequence[T], rank: int, size: int, key: Any = None) -> list[T]:
    """Rank ``rank``'s share of ``records``: every ``size``-th item in a fixed order
    (``key``), so the shards are disjoint, cover everything and differ in length by at
    most one, and rank r's k-th item is the global order's ``k*size + r``-th."""
    ordered = sorted(records, key=key) if key is not None else list(records)
    return ordered[rank::size]


def _record_order(record: PatchRecord) -> tuple[str, int]:
    return record.shard, record.offset


class Distribution:
    """One device, one process (also the base of the others)."""

    name = "single"

    def __init__(self) -> None:
        self.rank = 0
        self.size = 1
        self.local_rank = 0

    @property
    def replicas(self) -> int:
        """Model replicas taking a step together (global batch = per-replica batch x this)."""
        return self.size

    @property
    def replicas_per_process(self) -> int:
        """Replicas fed by this process's batches (mirrored: the node's devices)."""
        return 1

    @property
    def is_chief(self) -> bool:
        """Only the chief (rank 0) writes checkpoints, logs, figures and bundles."""
        return self.rank == 0

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Context in which models and optimizers are built."""
        return contextlib.nullcontext()

    def shard(self, records: Sequence[PatchRecord]) -> list[PatchRecord]:
        """This rank's own share of ``records`` (all of them with one process)."""
        if self.size == 1:
            return list(records)
        return rank_shard(records, self.rank, self.size, key=_record_order)

    def averaging(self, optimizer: Any) -> Any:
        """The optimizer, averaging gradients over processes where there are several."""
        return optimizer

    def callbacks(self) -> list[Any]:
        """Keras callbacks that keep the processes in step (placed right after
        ``BackupAndRestore``, before every callback that reads the logs)."""
        return []

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (also a barrier)."""
        return obj

    def allgather_object(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order."""
        return [obj]

    def describe(self) -> dict[str, Any]:
        """What ``run.json``/``report.json`` and the log say about the set-up."""
        return {"strategy": self.name, "processes": self.size, "replicas": self.replicas}


class Mirrored(Distribution):
    """``tf.distribute.MirroredStrategy`` in one process."""

    name = "mirrored"

    def __init__(self, strategy: Any, devices: Sequence[str]) -> None:
        super().__init__()
        self.strategy = strategy
        self.devices = list(devices)

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def replicas_per_process(self) -> int:
        return self.replicas

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return self.strategy.scope()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "devices": self.devices}


class Horovod(Distribution):
    """One process per device; gradients averaged with Horovod over MPI."""

    name = "horovod"

    def __init__(self, hvd: Any) -> None:
        super().__init__()
        self.hvd = hvd
        self.rank = int(hvd.rank())
        self.size = int(hvd.size())
        self.local_rank = int(hvd.local_rank())

    def averaging(self, optimizer: Any) -> Any:
        hvd = self.hvd
        base = type(optimizer)

        class Averaging(base):  # type: ignore[misc, valid-type]
            def apply(self, grads: Any, trainable_variables: Any = None) -> Any:
                # Wrapping a LossScaleOptimizer, this averages the scaled gradients: every
                # rank then sees the same (in)finite values and takes the same branch.
                grads = hvd.grouped_allreduce(list(grads), op=hvd.Average)
                return super().apply(grads, trainable_variables)

        # Saved checkpoints name the optimizer's own class, so they load without this module.
        Averaging.__name__ = Averaging.__qualname__ = base.__name__
        Averaging.__module__ = base.__module__
        optimizer.__class__ = Averaging
        return optimizer

    def callbacks(self) -> list[Any]:
        return [_horovod_sync_callback(self.hvd)]

    def broadcast_object(self, obj: T) -> T:
        return self.hvd.broadcast_object(obj, root_rank=0)

    def allgather_object(self, obj: T) -> list[T]:
        return list(self.hvd.allgather_object(obj))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "local_rank": self.local_rank}


def _horovod_sync_callback(hvd: Any) -> Any:
    import keras
    import numpy as np
    import tensorflow as tf

    def average_statistics(model: Any) -> None:
        stats = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]
        if stats:
            means = hvd.grouped_allreduce([v.value for v in stats], op=hvd.Average)
            for var, mean in zip(stats, means, strict=True):
                var.assign(mean)

    class SyncRanks(keras.callbacks.Callback):
        """Start from rank 0's state; average BatchNorm statistics and logs every epoch."""

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            model = self.model
            # BackupAndRestore (rank 0 only) may have set the epoch to resume from.
            model._initial_epoch = hvd.broadcast_object(model._initial_epoch, root_rank=0)
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            variables = list(model.variables)
            if model.optimizer is not None:
                variables += list(model.optimizer.variables)
            hvd.broadcast_variables([v.value for v in variables], root_rank=0)

        def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
            average_statistics(self.model)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            average_statistics(self.model)
            if not logs:
                return
            keys = sorted(k for k, v in logs.items() if isinstance(v, int | float | np.floating))
            if keys:
                values = tf.constant([float(logs[k]) for k in keys], tf.float64)
                means = hvd.allreduce(values, op=hvd.Average, name="epoch_logs").numpy()
                logs.update({k: float(m) for k, m in zip(keys, means, strict=True)})

    return SyncRanks()


def _import_horovod() -> Any:
    try:
        import horovod.tensorflow as hvd
    except ImportError as exc:
        raise ConfigError(
            f"distribute.strategy horovod needs Horovod ({exc}); build it into the virtualenv with "
            "`make horovod` (README: Scale-out)"
        ) from exc
    return hvd


def _mirrored_devices(tf: Any, cpu_replicas: int) -> list[str]:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return [f"/gpu:{i}" for i in range(len(gpus))]
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)]
        )
    except RuntimeError as exc:  # TensorFlow already started in this process
        if len(tf.config.list_logical_devices("CPU")) < cpu_replicas:
            raise ConfigError(
                f"mirrored training over {cpu_replicas} CPU devices must be set up before TensorFlow "
                f"starts ({exc}); run `impacts train` in a fresh process"
            ) from exc
    return [f"/cpu:{i}" for i in range(cpu_replicas)]


def setup_distribution(cfg: DistributeConfig) -> Distribution:
    """Start the strategy ``cfg`` asks for (before any model or tensor is made).

    Raises:
        ConfigError: Horovod is asked for but not installed, or CPU devices for mirrored
            training can no longer be configured in this process.
    """
    import tensorflow as tf

    processes = launched_processes()
    gpus = tf.config.list_physical_devices("GPU")
    name = resolve_strategy(cfg.strategy, len(gpus), processes)
    if name == "horovod":
        hvd = _import_horovod()
        hvd.init()
        if gpus:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
            tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")
        dist: Distribution = Horovod(hvd)
    elif name == "mirrored":
        devices = _mirrored_devices(tf, cfg.cpu_replicas)
        dist = Mirrored(tf.distribute.MirroredStrategy(devices), devices)
    else:
        if processes > 1:
            log.warning("%d processes were launched but the strategy is single: each trains alone", processes)
        dist = Distribution()
    log.info("distribution: %s", dist.describe())
    return dist


@contextlib.contextmanager
def chief_only_logging(dist: Distribution) -> Iterator[None]:
    """Quieten INFO logs on ranks other than 0 (each rank would print the same lines)."""
    root = logging.getLogger()
    previous = root.level
    if not dist.is_chief:
        root.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(previous)
