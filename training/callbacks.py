"""Keras callbacks of a training round: timing, checkpoints and logs (chief only), the
distribution's synchronisation, early stopping and the stop at a target validation loss."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.distribute import Distribution

log = logging.getLogger(__name__)


class StopAtValLoss:
    """Keras callback factory: stop when ``val_loss`` reaches a target (time-to-target)."""

    @staticmethod
    def make(target: float) -> Any:
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


def epoch_timer() -> Any:
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
) -> list[Any]:
    """The round's callbacks, the epoch timer first; those that write files run on the
    chief only, and the distribution's own come right after the restore so the others see
    averaged logs."""
    import keras

    monitor = "val_loss" if has_val else "loss"
    callbacks: list[Any] = [epoch_timer()]
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
    if cfg.target_val_loss is not None and has_val:
        callbacks.append(StopAtValLoss.make(cfg.target_val_loss))
    return callbacks
