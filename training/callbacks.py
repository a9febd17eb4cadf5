"""Keras callbacks of a training round: timing, checkpoints and logs (chief only), the
distribution's synchronisation, early stopping and the stop at a target validation loss.

:func:`round_callbacks` returns them as :class:`RoundCallbacks`: the list ``model.fit``
takes, and by name the two whose results the round's report reads (the epoch timer and
the stop at the target loss), so no caller depends on list positions or attribute probes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from training.config import TrainConfig
from training.distribute import Distribution

log = logging.getLogger(__name__)


class EpochTimes(Protocol):
    """What the epoch timer (:func:`epoch_timer`) has measured so far, one value per epoch."""

    seconds: list[float]
    train_seconds: list[float]


class TargetStop(Protocol):
    """The stop at a target ``val_loss`` (:class:`StopAtValLoss`): when it was reached, if it was."""

    reached: dict[str, float] | None


@dataclass(frozen=True)
class RoundCallbacks:
    """One round's callbacks.

    Attributes:
        in_order: Every callback, in the order ``model.fit`` must run them.
        timer: The epoch timer (also in ``in_order``): wall and training-step seconds.
        target_stop: The stop at ``target_val_loss`` (also in ``in_order``), or None when
            the round has no target or no val split.
    """

    in_order: list[Any]
    timer: EpochTimes
    target_stop: TargetStop | None = None

    @property
    def target_reached(self) -> dict[str, float] | None:
        """Epoch, seconds and ``val_loss`` at which the target was reached; None when it was
        not, or when the round has no target."""
        return None if self.target_stop is None else self.target_stop.reached


class StopAtValLoss:
    """Keras callback factory: stop when ``val_loss`` reaches a target (time-to-target)."""

    @staticmethod
    def make(target: float) -> TargetStop:
        import keras

        class _Stop(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.started = time.perf_counter()
                self.reached: dict[str, float] | None = None

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                val = (logs or {}).get("val_loss")
                if val is not None and val <= target and self.reached is None:
                    self.reached = {
                        "epoch": epoch + 1,
                        "seconds": time.perf_counter() - self.started,
                        "val_loss": float(val),
                    }
                    log.info("val_loss %.4f reached the target %.4f at epoch %d", val, target, epoch + 1)
                    self.model.stop_training = True

        return _Stop()


def epoch_timer() -> EpochTimes:
    """Keras callback keeping each epoch's wall time in ``.seconds`` and that of its training
    steps alone (before validation) in ``.train_seconds``, for the report and the scaling
    benchmark (not in the logs, so the loss curves do not plot them)."""
    import keras

    class _Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.train_seconds: list[float] = []
            self._start = 0.0
            self._fitting = False

        def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self._start = time.perf_counter()
            self._fitting = True

        def on_test_begin(self, logs: dict[str, float] | None = None) -> None:
            if self._fitting:  # validation starts: the epoch's training steps are done
                self.train_seconds.append(time.perf_counter() - self._start)
                self._fitting = False

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            self.seconds.append(time.perf_counter() - self._start)
            if self._fitting:
                self.train_seconds.append(self.seconds[-1])
                self._fitting = False

    return _Timer()


def round_callbacks(
    cfg: TrainConfig, out: Path, round_index: int, has_val: bool, dist: Distribution
) -> RoundCallbacks:
    """The round's callbacks, the epoch timer first; those that write files run on the
    chief only, and the distribution's own come right after the restore so the others see
    averaged logs.

    Args:
        cfg: The training config (early stopping, target loss).
        out: The run folder (checkpoints, logs, backups are written under it).
        round_index: The round (names its backup folder and CSV log).
        has_val: Whether the round validates (else the training loss is monitored).
        dist: The distribution (its callbacks; only the chief writes files).

    Returns:
        The callbacks in order, with the timer and the target stop named.
    """
    import keras

    monitor = "val_loss" if has_val else "loss"
    timer = epoch_timer()
    callbacks: list[Any] = [timer]
    if dist.is_chief:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "logs").mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.BackupAndRestore(str(out / "backup" / f"round-{round_index}")))
    callbacks += dist.callbacks()
    if dist.is_chief:
        callbacks += [
            keras.callbacks.ModelCheckpoint(str(out / "checkpoints" / "last.keras")),
            keras.callbacks.ModelCheckpoint(
                str(out / "checkpoints" / "best.keras"), monitor=monitor, save_best_only=True
            ),
            keras.callbacks.CSVLogger(str(out / "logs" / f"round-{round_index}.csv"), append=True),
            keras.callbacks.TensorBoard(
                str(out / "logs" / "tensorboard"), write_graph=False, profile_batch=0
            ),
        ]
    if cfg.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=cfg.early_stopping_patience, restore_best_weights=True
            )
        )
    target_stop = None
    if cfg.target_val_loss is not None and has_val:
        target_stop = StopAtValLoss.make(cfg.target_val_loss)
        callbacks.append(target_stop)
    return RoundCallbacks(callbacks, timer, target_stop)
